"""DiffuBias: text filter, candidates, the concatenated training split, and each backend end to end
(tiny randomly initialised BLIP and Stable Diffusion models built from configs: no weights, no network)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from diffdebias.cli import main
from diffdebias.data.base import ImageSpec, TensorSplit
from diffdebias.data.concat import ConcatSplit
from diffdebias.diffubias.candidates import default_k, top_k_per_class
from diffdebias.diffubias.text_filter import content_words, filter_captions
from diffdebias import audit as audit_mod
from diffdebias.engine import loop as loop_mod
from diffdebias.records import RunResult
from diffdebias import run as run_mod

TINY = {"bias_epochs": 1, "epochs": 1, "batch_size": 512, "num_candidates": 2}


def test_text_filter_known_answer():
    captions = ["a red shirt on a table", "a shirt with long sleeves", "a pair of shoes", "the shoes are black", "a bag", "an ankle boot"]
    assert content_words("The shirt is on the table") == ["shirt", "table"]
    two = filter_captions(captions, 2)
    assert two.top_words == ["shirt", "shoes"] and two.counts["shirt"] == 2 and "the" not in two.counts
    assert two.keep == [True, True, True, True, False, False]
    three = filter_captions(captions, 3)  # ties at count 1 are broken alphabetically: "ankle"
    assert three.top_words == ["shirt", "shoes", "ankle"] and three.keep == [True, True, True, True, False, True]


def test_top_k_per_class_and_default_k():
    losses = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.3])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    assert top_k_per_class(losses, y, 3, 2).tolist() == [1, 2, 5, 3, 6]
    assert (default_k(1.0), default_k(5.0), default_k(None)) == (100, 200, 100)


def test_concat_split_batches_subsets_and_labels():
    spec = ImageSpec(4, 3, (0.5,) * 3, (0.5,) * 3)
    a = TensorSplit("a", torch.zeros(3, 3, 4, 4, dtype=torch.uint8), [0, 1, 2], [0, 1, 2], spec)
    b = TensorSplit("b", torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), [2, 0], [-1, -1], spec)
    both = ConcatSplit("train", [a, b])
    assert len(both) == 5 and both.y.tolist() == [0, 1, 2, 2, 0] and both.b.tolist() == [0, 1, 2, -1, -1]
    x, y, _, _ = both.batch(torch.tensor([4, 0, 3]))
    assert y.tolist() == [0, 0, 2] and x[0].min() == 1.0 and x[1].max() == -1.0 and x[2].min() == 1.0
    sub = both.subset([3, 1, 4])
    assert sub.y.tolist() == [2, 1, 0] and torch.equal(sub.load_uint8(1), a.images[1])


@pytest.fixture
def tiny(cfmnist, monkeypatch):
    """A small slice of Colored Fashion-MNIST (rho = 1%) that every `run` below loads instead:
    40 bias-aligned + 3 bias-conflicting training images per class, 100 val, 200 test."""
    train = cfmnist.split("train")
    conflicting = train.b != train.y
    pick = torch.cat([torch.cat([torch.nonzero((train.y == c) & ~conflicting).flatten()[:40], torch.nonzero((train.y == c) & conflicting).flatten()[:3]])
                      for c in range(10)])  # fmt: skip
    data = replace(cfmnist, splits={"train": train.subset(pick), "val": cfmnist.split("val").subset(range(100)),
                                    "test": cfmnist.split("test").subset(range(200))})  # fmt: skip
    monkeypatch.setattr(run_mod, "load_dataset", lambda *a, **k: data)
    return data


def _run(tmp_path: Path, name: str, *extra: str, sets: dict | None = None):
    args = ["run", "diffubias", "--dataset", "colored_fmnist", "--ratio", "1", "--out", str(tmp_path / name), "-q", *extra]
    for k, v in {**TINY, **(sets or {})}.items():
        args += ["--set", f"{k}={v}"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _spy_main_split(monkeypatch) -> dict:
    """Capture the split the engine trains the final classifier on."""
    seen = {}
    real_fit = loop_mod.Engine._fit

    def spy(self, stage, method, *a, **kw):
        if stage == "main":
            seen["split"] = method.train_split()
        return real_fit(self, stage, method, *a, **kw)

    monkeypatch.setattr(loop_mod.Engine, "_fit", spy)
    return seen


def test_local_conditional_trains_on_real_plus_synthetic(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(audit_mod, "cache_home", lambda: tmp_path / "judges")  # 1-epoch judges stay out of the shared cache
    real_judges = audit_mod.train_judges
    monkeypatch.setattr(audit_mod, "train_judges", lambda data: real_judges(data, epochs=1))
    seen = _spy_main_split(monkeypatch)
    res = _run(tmp_path, "lc", sets={"num_captions": 2, "gen.max_steps": 2, "sampler_steps": 4})
    assert res.exit_code == 0, res.output
    run = tmp_path / "lc"
    r = json.loads((run / "results.json").read_text())
    info = r["notes"]["diffubias"]
    assert info["captioner"] == "none" and info["generator"] == "local-conditional"
    assert info["candidates"]["num_candidates"] == 20 and 0 <= info["candidates"]["truly_conflicting"] <= 20
    assert r["bias_labels_used"] == {"training": False, "selection": False, "defaults": []} and "evaluation only" in info["candidates"]["bias_labels"]
    audit = info["generated"]["audit"]
    assert audit["num_images"] == 40 and 0 <= audit["bias_conflicting_pct"] <= 100 and "evaluation only" in audit["bias_labels"]
    note = RunResult.from_dict(r).notes.diffubias  # read back as typed records, and written back unchanged
    assert note.generated.audit.num_images == 40 and note.generated.sampler_steps == 4 and note.generated.model is None and note.captions is None
    assert note.candidates.precision == round(100 * note.candidates.truly_conflicting / 20, 2)
    assert RunResult.from_dict(r).to_dict()["notes"] == r["notes"]
    assert {"biased", "candidates", "generation", "audit", "main"} <= set(r["wall_time_s"])
    cand = json.loads((run / "diffubias" / "candidates.json").read_text())
    gen = run / "diffubias" / "generated"
    sources = np.load(gen / "sources.npy")
    assert sources.tolist() == np.repeat(cand["indices"], 2).tolist()  # two variants per candidate, in order
    assert (gen / "grid.png").exists() and (run / "diffubias" / "candidates" / "grid.png").exists()
    # the final training set: the real images, then the generated ones labelled with their candidate's class
    split, train = seen["split"], tiny.split("train")
    assert len(split) == len(train) + 40 and r["notes"]["final_training_set"] == {"real": len(train), "synthetic": 40}
    assert torch.equal(split.y[: len(train)], train.y) and torch.equal(split.b[: len(train)], train.b)
    assert split.y[len(train) :].tolist() == train.y[sources].tolist() == np.load(gen / "labels.npy").tolist()
    assert (split.b[len(train) :] == -1).all()  # no bias label is attached to a generated image
    x, _, _, _ = split.batch(torch.arange(len(train), len(train) + 40))
    assert torch.allclose(x, TensorSplit("g", torch.from_numpy(np.load(gen / "images.npy")), sources, sources, train.spec).batch(torch.arange(40))[0])


def _tiny_blip(dest: Path) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "shirt", "shoe", "bag", "red", "green", "photo", "of", "the", "boot"]
    dest.mkdir(parents=True)
    (dest / "vocab.txt").write_text("\n".join(words) + "\n")
    cfg = BlipConfig(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        text_config={"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "encoder_hidden_size": 16, "bos_token_id": 5, "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3, "max_position_embeddings": 64},
    )  # fmt: skip
    BlipForConditionalGeneration(cfg).save_pretrained(dest)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), BertTokenizer(str(dest / "vocab.txt"))).save_pretrained(dest)
    return dest


def _tiny_stable_diffusion(dest: Path) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dest.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    (dest / "vocab.json").write_text(json.dumps(vocab))
    (dest / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(dest / "vocab.json"), str(dest / "merges.txt"), model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))  # fmt: skip
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4)  # fmt: skip
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=8, sample_size=32)  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(dest)  # fmt: skip
    return dest


def test_transformers_captioner_and_diffusers_t2i_end_to_end(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    blip, sd = _tiny_blip(tmp_path / "blip"), _tiny_stable_diffusion(tmp_path / "sd")
    seen = _spy_main_split(monkeypatch)
    res = _run(tmp_path, "t2i", "--captioner", "transformers", "--captioner-model", str(blip), "--generator", "diffusers-t2i", "--t2i-model", str(sd),
               sets={"caption_max_tokens": 5, "t2i_steps": 2, "t2i_size": 32, "audit": "false"})  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "t2i" / "diffubias"
    captions = json.loads((out / "captions.json").read_text())
    assert len(captions) == 20 and all(len(c["captions"]) == 3 and all(isinstance(t, str) for t in c["captions"]) for c in captions)
    filtered = json.loads((out / "filtered_captions.json").read_text())
    assert filtered["top_n"] == 20 and filtered["num_captions"] == 60 and filtered["num_kept"] == len(filtered["kept"]) >= 1
    words = set(filtered["top_words"])
    assert all(words & set(content_words(k["caption"])) for k in filtered["kept"])
    prompts = json.loads((out / "generated" / "prompts.json").read_text())
    assert prompts == [k["caption"] for k in filtered["kept"]]
    n = len(prompts)
    assert np.load(out / "generated" / "images.npy").shape == (n, 3, 28, 28)  # brought to the dataset's spec
    assert len(list((out / "generated" / "png").glob("*.png"))) == n  # and kept at the generator's 32 px
    assert np.load(out / "generated" / "labels.npy").tolist() == [k["label"] for k in filtered["kept"]]
    assert len(seen["split"]) == len(tiny.split("train")) + n
    r = json.loads((tmp_path / "t2i" / "results.json").read_text())
    assert r["notes"]["diffubias"]["captions"]["num_kept"] == n and r["notes"]["diffubias"]["generator"] == "diffusers-t2i"
    note = RunResult.from_dict(r).notes.diffubias
    assert note.captions.num_kept == n and note.generated.model == str(sd) and note.generated.strength is None and note.generated.audit is None


def test_missing_models_and_bad_backends_are_refused_before_training(tmp_path, tiny):
    res = _run(tmp_path, "a", "--generator", "diffusers-t2i", "--t2i-model", str(tmp_path / "no-such-sd"))
    assert res.exit_code == 2 and "text-to-image model" in res.output and "no-such-sd" in res.output and "Hugging Face cache" in res.output
    assert "--t2i-model" in res.output
    res = _run(tmp_path, "b", "--captioner", "transformers", "--captioner-model", "nobody/no-such-captioner")
    assert res.exit_code == 2 and "captioner model 'nobody/no-such-captioner' not found" in res.output and "--captioner-model" in res.output
    res = _run(tmp_path, "c", "--generator", "diffusers-t2i", "--captioner", "none")
    assert res.exit_code == 2 and "needs a captioner" in res.output
    res = _run(tmp_path, "d", sets={"strength": "1.5"})
    assert res.exit_code == 2 and "strength" in res.output
    assert not (tmp_path / "a" / "biased.done.json").exists()


def test_sdedit_noises_to_strength_and_denoises_with_the_label():
    from diffdebias.diffusion.pipeline import ClassConditionalImg2ImgPipeline
    from diffdebias.diffusion.schedulers import sampling_scheduler, training_scheduler

    calls = []

    class ZeroEps(torch.nn.Module):  # predicts no noise: DDIM then returns x_t / sqrt(alpha_bar_t)
        config = type("C", (), {"sample_size": 8, "in_channels": 3})()

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t, class_labels):
            calls.append((int(t), class_labels.tolist()))
            return type("O", (), {"sample": torch.zeros_like(x)})()

    base = training_scheduler("cosine", "epsilon")
    pipe = ClassConditionalImg2ImgPipeline(ZeroEps(), sampling_scheduler("ddim", base.config), null_class=10)
    src = torch.zeros(16, 3, 8, 8)  # mid-grey in [-1, 1]
    change = {}
    for s in (0.1, 0.5, 1.0):
        calls.clear()
        out = pipe(src, torch.full((16,), 4), strength=s, w=0.0, steps=10, generator=torch.Generator().manual_seed(0))
        assert out.dtype == torch.uint8 and out.shape == (16, 3, 8, 8)
        assert len(calls) == round(10 * s) and all(labels == [4] * 16 for _, labels in calls)
        change[s] = float((out.float() - 127.5).abs().mean())
    assert calls[0][0] == 999  # strength 1 starts at the top of the (trailing) schedule
    assert change[0.1] < 25 < change[0.5] < change[1.0]


def test_generated_images_are_a_complete_synthetic_set(tmp_path):
    """DiffuBias's generated/ goes through the one synthetic-set writer: it verifies as complete (so a
    resumed run or another process reuses it instead of generating again) and loads as `synthetic`."""
    from diffdebias.data.registry import load_dataset
    from diffdebias.data.synthetic import is_complete
    from diffdebias.diffubias.stages import _write_generated

    spec = ImageSpec(8, 3, (0.5,) * 3, (0.5,) * 3)
    data = type("D", (), {"num_classes": 2, "class_names": ["a", "b"], "name": "toy", "info": {"ratio": 1.0}, "spec": spec})()
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    labels, sources = torch.tensor([0, 0, 0, 1, 1, 1]), torch.arange(6) * 7
    _write_generated(tmp_path / "generated", images, images, labels, sources, [None] * 6, data, {"generator": "local-conditional"})
    assert is_complete(tmp_path / "generated")
    assert np.load(tmp_path / "generated" / "sources.npy").tolist() == sources.tolist()
    assert len(load_dataset("synthetic", root=tmp_path / "generated").split("train")) == 4
    np.save(tmp_path / "generated" / "sources.npy", np.zeros(6, dtype=np.int64))  # a changed array: no longer complete
    assert not is_complete(tmp_path / "generated")
