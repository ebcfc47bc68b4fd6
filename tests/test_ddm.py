"""DDM: metrics with hand-computed values, the indicator loss, group inference, training (resume,
CLI), evaluation of sample folders, FID plumbing and the LoRA path on a tiny random model."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from diffdebias.audit import Judge, Judges
from diffdebias.cli import main
from diffdebias.data import load_dataset
from diffdebias.ddm import train as ddm_train_mod
from diffdebias.ddm.evaluate import evaluate_samples, inception_fid, load_samples
from diffdebias.ddm.groups import agreement, infer_groups, resolve_groups
from diffdebias.ddm.indicator import Indicator, ddm_loss, predicted_noise
from diffdebias.ddm.metrics import bootstrap_proportions, fairness_discrepancy, frechet_distance, statistical_parity_difference
from diffdebias.ddm.train import DDMConfig, train_ddm
from diffdebias.diffusion import train as diffusion_train_mod
from diffdebias.diffusion.schedulers import training_scheduler
from diffdebias.engine.loop import Engine
from diffdebias.errors import ConfigError, DatasetError, RunError

RED, GREEN = (255, 0, 0), (0, 255, 0)
TINY = {"max_steps": 4, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 2, "device": "cpu"}


# --- metrics, hand-computed --------------------------------------------------------------------
def test_fairness_discrepancy_hand_values():
    assert fairness_discrepancy([0, 0, 0, 1], 2) == pytest.approx(math.sqrt(0.25**2 + 0.25**2))  # p = (.75, .25)
    assert fairness_discrepancy([0, 0], 2) == pytest.approx(math.sqrt(2) / 2)
    assert fairness_discrepancy([0, 1, 2], 3) == pytest.approx(0.0)
    assert fairness_discrepancy([2, 2, 2, 2], 3) == pytest.approx(math.sqrt(2 * (1 / 3) ** 2 + (2 / 3) ** 2))


def test_bootstrap_intervals():
    r = bootstrap_proportions(np.zeros(50, dtype=int), 2, n_boot=100)
    assert r["proportions"] == [1.0, 0.0] and r["proportions_ci"] == [[1.0, 1.0], [0.0, 0.0]]
    assert r["fd"] == r["fd_ci"][0] == r["fd_ci"][1] == pytest.approx(0.7071, abs=1e-4)
    pred = np.array([0] * 90 + [1] * 10)
    a, b = bootstrap_proportions(pred, 2, seed=3), bootstrap_proportions(pred, 2, seed=3)
    assert a == b and a["proportions_ci"][1][0] < 0.1 < a["proportions_ci"][1][1]


def test_spd_hand_values():
    pred = [0, 0, 0, 1, 1, 1, 1, 0]
    cond = [0, 0, 0, 0, 1, 1, 1, 1]
    assert statistical_parity_difference(pred, cond, 2) == pytest.approx(0.5)  # |0.25 - 0.75|
    # three conditions, P(1 | c) = 0, 0.5, 1 -> the widest pair gives 1
    assert statistical_parity_difference([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2], 2) == pytest.approx(1.0)
    assert statistical_parity_difference([0, 1, 0, 1], [0, 0, 1, 1], 2) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="two conditions"):
        statistical_parity_difference([0, 1], [0, 0], 2)


def test_frechet_distance_hand_values():
    # 1-D: means 1 and 2, unbiased variances 2 and 8: 1 + 2 + 8 - 2 * sqrt(16) = 3
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[0.0], [4.0]])) == pytest.approx(3.0)
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])  # mean (1, 1), cov diag(4/3, 4/3)
    # y = 2x + 1: mean (3, 3), cov diag(16/3, 16/3) -> 8 + 2 * (4/3 + 16/3 - 2 * 8/3) = 8 + 8/3
    assert frechet_distance(x, 2 * x + 1) == pytest.approx(8 + 8 / 3)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="feature sets"):
        frechet_distance(x[:1], x)


# --- indicator and loss ----------------------------------------------------------------------
def test_v_prediction_is_converted_to_the_true_noise():
    sched = training_scheduler("cosine", "v_prediction")
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    xt = sched.add_noise(x0, eps, t)
    v = sched.get_velocity(x0, eps, t)
    assert torch.allclose(predicted_noise(v, xt, sched.alphas_cumprod, t, "v_prediction"), eps, atol=1e-4)
    assert predicted_noise(eps, xt, sched.alphas_cumprod, t, "epsilon") is eps


def test_indicator_architecture_and_loss_signs():
    ind = Indicator(12, 3)
    assert [m.out_features for m in ind.modules() if isinstance(m, nn.Linear)] == [1024, 512, 3]
    g = torch.tensor([0, 1, 2, 1])
    grads = {}
    for sign in ("faithful", "adversarial"):
        torch.manual_seed(0)
        ind = Indicator(12, 3)
        eps = torch.randn(4, 3, 2, 2, requires_grad=True)
        mse = eps.pow(2).mean()
        loss, parts = ddm_loss(mse, eps, g, ind, 0.25, sign)
        assert loss.item() == pytest.approx(0.75 * mse.item() + 0.25 * parts["ce"].item(), rel=1e-6)
        loss.backward()
        grads[sign] = (eps.grad - 0.75 * 2 * eps.detach() / eps.numel(), ind.net[1].weight.grad.clone())
    # the denoiser side (eps) gets the CE gradient reversed; the indicator's own gradient is unchanged
    assert torch.allclose(grads["faithful"][0], -grads["adversarial"][0], atol=1e-6)
    assert torch.allclose(grads["faithful"][1], grads["adversarial"][1])
    with pytest.raises(ConfigError, match="sign"):
        ddm_loss(mse, eps, g, ind, 0.1, "reversed")


# --- groups ----------------------------------------------------------------------------------
def test_group_inference_and_agreement():
    rng = np.random.default_rng(0)
    cond = np.repeat([0, 1], 50)
    truth = np.concatenate([np.r_[np.zeros(45), np.ones(5)], np.r_[np.ones(45), np.zeros(5)]]).astype(int)
    feats = rng.normal(0, 0.1, (100, 4)) + truth[:, None] * 5.0
    g = infer_groups(feats, cond, 2, seed=0)
    assert np.bincount(g[cond == 0]).tolist() == [45, 5] and np.bincount(g[cond == 1]).tolist() == [45, 5]  # largest = 0
    assert agreement(g, truth, cond) == {"agreement": 1.0, "per_condition": {"0": 1.0, "1": 1.0}}
    # hand example: condition 0 clusters swapped w.r.t. the truth still match perfectly; one miss in 4
    assert agreement(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 0]), np.zeros(4, int))["agreement"] == 0.75


# --- a tiny colour dataset in the folder_csv format ----------------------------------------------
def _shape(y: int, colour, size: int = 8) -> Image.Image:
    a = np.zeros((size, size, 3), np.uint8)
    if y == 0:
        a[:, 2:6] = colour
    else:
        a[2:6, :] = colour
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    """Class 0: vertical bar, class 1: horizontal bar; attribute = colour, 90/10 with opposite majorities."""
    root = tmp_path_factory.mktemp("colour")
    rows, i = ["id,filename,split,y,a"], 0
    plan = {0: [(0, 0, 18), (0, 1, 2), (1, 1, 18), (1, 0, 2)], 1: [(y, a, 3) for y in (0, 1) for a in (0, 1)], 2: [(y, a, 5) for y in (0, 1) for a in (0, 1)]}
    for split, cells in plan.items():
        for y, a, n in cells:
            for _ in range(n):
                _shape(y, (RED, GREEN)[a]).save(root / f"{i}.png")
                rows.append(f"{i},{i}.png,{split},{y},{a}")
                i += 1
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def colour_data(colour_root):
    return load_dataset("folder_csv", root=colour_root, image_size=8)


def test_resolve_groups(colour_data):
    g, rep = resolve_groups(colour_data, "given", 0, 0)
    assert torch.equal(g, colour_data.split("train").b) and rep["sizes"] == [20, 20]
    g, rep = resolve_groups(colour_data, "inferred", 0, 0)
    assert rep["agreement"] == 1.0 and rep["sizes"] == [36, 4]
    unlabelled = colour_data.split("train").with_labels(colour_data.split("train").y, torch.full((40,), -1))
    from dataclasses import replace

    with pytest.raises(DatasetError, match="groups=inferred"):
        resolve_groups(replace(colour_data, splits={**colour_data.splits, "train": unlabelled}), "given", 0, 0)


# --- training -------------------------------------------------------------------------------
def test_train_writes_a_sampleable_run_and_resumes_exactly(colour_data, tmp_path, monkeypatch):
    cfg = {**TINY, "groups": "inferred", "alpha": 0.1}
    full = train_ddm(colour_data, DDMConfig.from_overrides(cfg), tmp_path / "full", quiet=True)
    for f in ("COMPLETE", "config.json", "groups.json", "groups.npy", "indicator.safetensors", "unet_ema", "train_log.jsonl"):
        assert (full / f).exists(), f
    assert load_file(full / "indicator.safetensors")["net.5.weight"].shape == (2, 512)
    real_save = diffusion_train_mod.save_state

    def crash_on_second_checkpoint(path, state):
        if state["step"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        real_save(path, state)

    monkeypatch.setattr(diffusion_train_mod, "save_state", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_ddm(colour_data, DDMConfig.from_overrides(cfg), tmp_path / "cut", quiet=True)
    assert [json.loads(ln)["step"] for ln in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()] == [4]  # logged past the checkpoint (2)
    monkeypatch.setattr(diffusion_train_mod, "save_state", real_save)
    resumed = train_ddm(colour_data, DDMConfig.from_overrides(cfg), tmp_path / "cut", quiet=True)
    a = load_file(full / "unet_ema" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "unet_ema" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(load_file(full / "indicator.safetensors")["net.1.weight"], load_file(resumed / "indicator.safetensors")["net.1.weight"])
    logs = [(d / "train_log.jsonl").read_text().splitlines() for d in (full, resumed)]
    assert [json.loads(ln)["step"] for ln in logs[1]] == [4]  # the line logged after the last checkpoint was dropped on resume
    assert [{k: v for k, v in json.loads(ln).items() if k != "elapsed_s"} for ln in logs[1]] == [{k: v for k, v in json.loads(ln).items() if k != "elapsed_s"} for ln in logs[0]]
    assert {"mse", "ce", "indicator_acc", "lr"} <= json.loads(logs[0][0]).keys()


def test_damaged_cached_ddm_checkpoint_is_trained_again(colour_data):
    cfg = {**TINY, "groups": "inferred"}
    run = train_ddm(colour_data, DDMConfig.from_overrides(cfg), quiet=True)  # the cache (isolated by conftest)
    assert run.parent.name == "ddm" and (run / "groups.json").exists()
    good = (run / "unet_ema" / "diffusion_pytorch_model.safetensors").read_bytes()
    (run / "COMPLETE").unlink()
    (run / "train_state.safetensors").write_bytes(b"damaged")
    assert train_ddm(colour_data, DDMConfig.from_overrides(cfg), quiet=True) == run
    assert (run / "unet_ema" / "diffusion_pytorch_model.safetensors").read_bytes() == good
    (run / "COMPLETE").unlink()
    (run / "train_state.safetensors").write_bytes(b"damaged")
    with pytest.raises(RunError, match="train_state.safetensors"):  # an explicit --out is never trained over silently
        train_ddm(colour_data, DDMConfig.from_overrides(cfg), run, quiet=True)


def test_nonfinite_ddm_weights_stop_at_the_checkpoint(colour_data, tmp_path, monkeypatch):
    real_step = diffusion_train_mod.optimiser_step

    def poison_the_indicator_at_step_2(loss, params, opt, *rest):  # the warm-up's copies get it too, unchecked
        real_step(loss, params, opt, *rest)
        if opt.state[params[0]]["step"] == 2:
            with torch.no_grad():
                params[-1].fill_(float("nan"))

    monkeypatch.setattr(diffusion_train_mod, "optimiser_step", poison_the_indicator_at_step_2)
    with pytest.raises(RunError, match="DDM step 2: the model holds non-finite weights"):
        train_ddm(colour_data, DDMConfig.from_overrides(TINY), tmp_path / "nan", quiet=True)
    assert not (tmp_path / "nan" / "train_state.safetensors").exists()


def test_balanced_sampling_and_fine_tuning_from_a_run(colour_data, tmp_path):
    base = train_ddm(colour_data, DDMConfig.from_overrides({**TINY, "alpha": 0.0}), tmp_path / "base", quiet=True)
    with pytest.raises(ConfigError, match="not a finished diffusion run"):
        train_ddm(colour_data, DDMConfig.from_overrides({**TINY, "init": str(tmp_path / "nothing")}), tmp_path / "x", quiet=True)
    run = train_ddm(colour_data, DDMConfig.from_overrides({**TINY, "init": str(base), "balanced": True}), tmp_path / "ft", quiet=True)
    assert json.loads((run / "config.json").read_text())["config"]["init"] == str(base)
    w = ddm_train_mod._balanced_weights(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 0]), 2, 2)
    assert w.tolist() == [0.5, 0.5, 1.0, 1.0]
    with pytest.raises(ConfigError, match="alpha"):
        train_ddm(colour_data, DDMConfig.from_overrides({**TINY, "alpha": 2}), tmp_path / "bad", quiet=True)


# --- evaluation -------------------------------------------------------------------------------
class _ColourJudge(nn.Module):
    """A fixed attribute classifier: red (0) vs green (1) from the channel means."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_evaluate_samples_hand_values(colour_data, tmp_path):
    engine = Engine(colour_data, tmp_path, 0, torch.device("cpu"), quiet=True)
    judges = Judges(label=Judge(_ColourJudge(), engine, "erm", 100.0), bias=Judge(_ColourJudge(), engine, "erm", 100.0))
    folder = tmp_path / "samples"
    for c, colours in ((0, [RED, RED, RED, GREEN]), (1, [RED, GREEN, GREEN, GREEN])):
        (folder / str(c)).mkdir(parents=True)
        for i, col in enumerate(colours):
            _shape(c, col).save(folder / str(c) / f"{i}.png")
    images, conds = load_samples(folder, 3, 8)
    r = evaluate_samples(images, conds, colour_data, judges=judges, n_boot=50)
    assert r["overall"]["proportions"] == [0.5, 0.5] and r["overall"]["fd"] == 0.0
    assert r["per_condition"]["0"]["fd"] == pytest.approx(0.3536, abs=1e-4)  # p = (.75, .25)
    assert r["fd_cond_mean"] == pytest.approx(0.3536, abs=1e-4) and r["spd"] == pytest.approx(0.5)
    assert r["attribute_classifier_test_acc"] == 100.0 and np.isfinite(r["fd_inclf"])
    np.save(tmp_path / "images.npy", images.numpy())
    imgs2, conds2 = load_samples(tmp_path, 3, 8)
    assert torch.equal(imgs2, images) and conds2 is None
    with pytest.raises(ConfigError, match="no downloads"):
        evaluate_samples(images, conds, colour_data, judges=judges, fid_weights=tmp_path / "missing.pth")
    (folder / "x").mkdir()
    with pytest.raises(DatasetError, match="integer condition"):
        load_samples(folder, 3, 8)


def test_cli_train_sample_eval(colour_root, tmp_path):
    runner = CliRunner()
    common = ["--dataset", "folder_csv", "--root", str(colour_root), "--set", "data.image_size=8"]
    tiny = {**TINY, "groups": "inferred", "preset": "cpu-tiny", "image_size": 8}
    res = runner.invoke(main, ["ddm", "train", *common, "--out", str(tmp_path / "run"), "-q", *sum((["--set", f"{k}={v}"] for k, v in tiny.items()), [])])
    assert res.exit_code == 0, res.output
    # its config.yaml names the same configuration: the finished run is reused (another one is refused)
    res = runner.invoke(main, ["ddm", "train", "--config", str(tmp_path / "run" / "config.yaml"), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0 and "DDM generator" in res.output, res.output
    res = runner.invoke(main, ["diffusion", "sample", "--run", str(tmp_path / "run"), "--per-class", "6", "--steps", "2", "--out", str(tmp_path / "s"), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["ddm", "eval", "--samples", str(tmp_path / "s"), *common, "--n-boot", "20", "--json-out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "e.json").read_text())
    assert "SPD" in res.output and "fd_inclf" in res.output and "attribute classifier test acc" in res.output
    per = [np.array(p["proportions"]) for p in r["per_condition"].values()]
    assert r["spd"] == pytest.approx(float(np.abs(per[0] - per[1]).max()), abs=1e-3)
    assert r["overall"]["fd"] == pytest.approx(float(np.linalg.norm(np.array(r["overall"]["proportions"]) - 0.5)), abs=1e-3)
    res = runner.invoke(main, ["ddm", "train", *common, "--set", "alpha=0.1", "--set", "lr_typo=1"])
    assert res.exit_code == 2 and "valid keys" in res.output


# --- FID plumbing with random Inception weights (never downloaded) ---------------------------------
def test_inception_fid_from_a_local_weights_file(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tf
    from safetensors.torch import save_file

    monkeypatch.setattr(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    monkeypatch.setattr(tf, "load_state_dict_from_url", lambda *a, **k: {})
    state = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "inception.safetensors"))
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8, generator=gen)
    assert inception_fid(real, real, tmp_path / "inception.safetensors") == pytest.approx(0.0, abs=1e-2)
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(Exception, match="bad.safetensors"):
        inception_fid(real, real, tmp_path / "bad.safetensors")


# --- LoRA path on a tiny random Stable-Diffusion-style model built from configs ----------------------
def _tiny_sd(folder):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4,
    ).save_pretrained(folder / "unet")  # fmt: skip
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    ).save_pretrained(folder / "vae")  # fmt: skip
    CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=64, max_position_embeddings=16)).save_pretrained(folder / "text_encoder")  # fmt: skip
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)])}
    (folder / "tok").mkdir()
    (folder / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tok" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "tok" / "vocab.json"), str(folder / "tok" / "merges.txt"), model_max_length=16).save_pretrained(folder / "tokenizer")
    DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction").save_pretrained(folder / "scheduler")


def test_lora_ddm_on_a_tiny_text_to_image_model(colour_data, tmp_path):
    from diffusers import UNet2DConditionModel

    from diffdebias.ddm.lora import LoraDDMConfig, train_ddm_lora

    model = tmp_path / "sd"
    _tiny_sd(model)
    cfg = LoraDDMConfig.from_overrides({"max_steps": 2, "batch_size": 2, "lr": "1e-2", "device": "cpu", "groups": "inferred", "alpha": "0.05"})
    out = train_ddm_lora(model, colour_data, cfg, tmp_path / "lora", quiet=True)
    assert (out / "COMPLETE").exists() and json.loads((out / "config.json").read_text())["latent_shape"] == [4, 4, 4]
    assert load_file(out / "indicator.safetensors")["net.1.weight"].shape == (1024, 64)  # d = 4 x 4 x 4 latent noise
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["ce"]) for r in log)
    # the saved LoRA loads back into the base UNet with diffusers and changes its output
    base = UNet2DConditionModel.from_pretrained(model, subfolder="unet", local_files_only=True).eval()
    x, t, h = torch.randn(1, 4, 4, 4), torch.tensor([10]), torch.randn(1, 16, 16)
    before = base(x, t, encoder_hidden_states=h).sample
    base.load_lora_adapter(str(out), weight_name="pytorch_lora_weights.safetensors", prefix="unet")
    assert not torch.allclose(before, base(x, t, encoder_hidden_states=h).sample)
    res = CliRunner().invoke(main, ["ddm", "lora", "--model", str(tmp_path), "--dataset", "folder_csv", "--root", str(colour_data.info["root"]),
                                    "--set", "data.image_size=8", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert res.exit_code == 2 and "missing sub-folder" in res.output
    with pytest.raises(ConfigError, match="valid keys"):
        LoraDDMConfig.from_overrides({"rnak": 2})
