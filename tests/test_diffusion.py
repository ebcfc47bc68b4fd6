import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffdebias.data import load_dataset
from diffdebias.diffusion import pipeline as pipeline_mod
from diffdebias.diffusion import train as train_mod
from diffdebias.diffusion.pipeline import ClassConditionalPipeline, guided_output
from diffdebias.diffusion.synthetic import generate_synthetic
from diffdebias.diffusion.train import DiffusionConfig, load_unet, train_diffusion, train_identity
from diffdebias.errors import ConfigError

TINY = {"max_steps": 6, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 3}


def test_train_sample_reload(cfmnist, tmp_path):
    run = train_diffusion(cfmnist, DiffusionConfig.from_overrides(TINY), tmp_path / "gen", quiet=True)
    assert (run / "COMPLETE").exists() and (run / "unet_ema" / "diffusion_pytorch_model.safetensors").exists()
    unet = load_unet(run)
    assert unet.config.num_class_embeds == 11 and unet.config.sample_size == 28
    folder = generate_synthetic(run, 2, sampler="dpmpp", steps=2, out=tmp_path / "syn", quiet=True)
    synth = load_dataset("synthetic", root=folder)
    total = sum(len(synth.split(s)) for s in ("train", "val", "test"))
    assert total == 20 and synth.num_classes == 10 and synth.num_bias == 0
    x, y, b, _ = synth.split("train")[0]
    assert x.shape == (3, 28, 28) and b == -1
    assert (folder / "grid.png").exists() and (folder / "grid_class3.png").exists()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sampler"] == "dpmpp" and meta["w"] == 1.0 and meta["per_class"] == 2


def test_synthetic_set_is_cached(cfmnist, tmp_path, monkeypatch):
    run = train_diffusion(cfmnist, DiffusionConfig.from_overrides(TINY), tmp_path / "gen", quiet=True)
    first = generate_synthetic(run, 1, sampler="ddim", steps=2, quiet=True)
    assert first.parent.name == "synthetic"  # default location: the cache, keyed by configuration

    def refuse(*a, **k):
        raise AssertionError("sampled again instead of reusing the cache")

    monkeypatch.setattr(ClassConditionalPipeline, "__call__", refuse)
    assert generate_synthetic(run, 1, sampler="ddim", steps=2, quiet=True) == first
    with pytest.raises(AssertionError, match="sampled again"):
        generate_synthetic(run, 1, sampler="ddim", steps=2, w=2.0, quiet=True)  # another w: another set
    (first / "labels.npy").write_bytes(b"broken")  # a cache entry that fails to verify is rebuilt
    with pytest.raises(AssertionError, match="sampled again"):
        generate_synthetic(run, 1, sampler="ddim", steps=2, quiet=True)


def test_trained_generator_is_reused(cfmnist, monkeypatch):
    cfg = DiffusionConfig.from_overrides(TINY)
    run = train_diffusion(cfmnist, cfg, quiet=True)
    monkeypatch.setattr(train_mod, "build_unet", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert train_diffusion(cfmnist, DiffusionConfig.from_overrides(TINY), quiet=True) == run


def test_guidance_formula():
    cond, uncond = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.0])
    # DDB convention eps = (1 + w) eps(x, y) - w eps(x, null), w = 1: 2 * cond - uncond
    assert torch.allclose(guided_output(cond, uncond, 1.0), torch.tensor([3.5, -3.0]))
    # diffusers convention with guidance_scale s = 1 + w gives the same
    s = 1.0 + 0.7
    assert torch.allclose(guided_output(cond, uncond, 0.7), uncond + s * (cond - uncond))


def test_pipeline_applies_guidance_with_the_null_class(monkeypatch):
    seen = []

    class FakeUNet(torch.nn.Module):
        config = type("C", (), {"sample_size": 4, "in_channels": 1})()

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t, class_labels):
            seen.append(class_labels.clone())
            return type("O", (), {"sample": torch.zeros_like(x) + class_labels.view(-1, 1, 1, 1).float()})()

    captured = []
    real = pipeline_mod.guided_output
    monkeypatch.setattr(pipeline_mod, "guided_output", lambda c, u, w: captured.append((c.clone(), u.clone(), w)) or real(c, u, w))
    sched = train_mod.training_scheduler("cosine", "epsilon")
    from diffdebias.diffusion.schedulers import sampling_scheduler

    pipe = ClassConditionalPipeline(FakeUNet(), sampling_scheduler("ddim", sched.config), null_class=9)
    pipe(torch.tensor([2, 3]), w=1.0, steps=2, generator=torch.Generator().manual_seed(0))
    assert seen[0].tolist() == [2, 3, 9, 9]
    cond, uncond, w = captured[0]
    assert w == 1.0 and cond[:, 0, 0, 0].tolist() == [2.0, 3.0] and uncond.unique().tolist() == [9.0]


def test_resume_equals_uninterrupted(cfmnist, tmp_path, monkeypatch):
    cfg = {**TINY, "max_steps": 8, "checkpoint_every": 4}
    full = train_diffusion(cfmnist, DiffusionConfig.from_overrides(cfg), tmp_path / "full", quiet=True)
    real_save = train_mod.save_state
    calls = {"n": 0}

    def crash_on_second_checkpoint(path, state):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        real_save(path, state)

    monkeypatch.setattr(train_mod, "save_state", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(cfmnist, DiffusionConfig.from_overrides(cfg), tmp_path / "cut", quiet=True)
    monkeypatch.setattr(train_mod, "save_state", real_save)
    resumed = train_diffusion(cfmnist, DiffusionConfig.from_overrides(cfg), tmp_path / "cut", quiet=True)
    a = load_file(full / "unet_ema" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "unet_ema" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors(tmp_path, cfmnist):
    with pytest.raises(ConfigError, match="valid keys"):
        DiffusionConfig.from_overrides({"learning_rate": 1})
    with pytest.raises(ConfigError, match="unknown sampler"):
        from diffdebias.diffusion.schedulers import sampling_scheduler

        sampling_scheduler("euler", train_mod.training_scheduler("cosine", "epsilon").config)
    assert DiffusionConfig.from_overrides({"snapshot_steps": "2,4"}).snapshot_steps == [2, 4]
    assert np.isclose(DiffusionConfig.from_overrides({"lr": "1e-3"}).lr, 1e-3)


def test_colored_fmnist_cpu_identity_is_pinned(cfmnist):
    """The cache key of the default CPU generator, as computed before `preset=auto` (cached
    generators and archived results are keyed by it)."""
    for overrides in ({}, {"seed": 0, "device": "cpu"}):
        assert train_identity(cfmnist, DiffusionConfig.resolve(cfmnist, overrides, device="cpu")) == "40c44f0313b8d1df48fc"
