"""The DiffuBias pipeline up to the synthetic training images (METHODS.md s. 2).

Every product is written atomically under `<run>/diffubias/` and reused when it exists (the run
directory's configuration is fixed, run.py): `candidates.json` (+ PNG grids in `candidates/`),
`captions.json`, `filtered_captions.json`, and `generated/` (images.npy, labels.npy,
sources.npy, prompts.json, meta.json and PNG grids: the layout of a synthetic set, so
`--dataset synthetic --root <run>/diffubias/generated` loads it). The true bias labels are read
only to measure the candidates and the generated images, and results.json says so.

Under several processes the classifiers and the local generator train on all of them; captioning
and generation run on the main process, which writes their products, and the others read them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data.base import UNKNOWN_BIAS, TensorSplit
from ..data.registry import load_dataset
from ..audit import audit_synthetic
from ..data.synthetic import is_complete, write_grids, write_synthetic_set
from ..engine.loop import Engine
from ..errors import ConfigError, DatasetError
from ..io import atomic_path, write_json_atomic
from ..records import CandidatesNote, CaptionsNote, DiffuBiasNote, GeneratedAuditNote, GeneratedNote
from ..runtime import derived_seed
from ..stages.generator import trained_generator
from ..trainers import GCE
from ..trainers.losses import per_sample_ce
from .candidates import default_k, top_k_per_class
from .captioners import CAPTIONER_MODEL, CAPTIONERS, build_captioner, to_pil
from .generators import GENERATORS, T2I_MODEL, DiffusersT2IGenerator, LocalConditionalGenerator, fit_to_spec
from .hub import resolve_local_model
from .text_filter import filter_captions

EVAL_ONLY = "evaluation only (never used for training or selection)"


def resolve_backends(hp: dict) -> tuple[str, str]:
    """(captioner, generator) after `auto`, refusing unknown or incompatible choices."""
    generator = hp["generator"]
    if generator not in GENERATORS:
        raise ConfigError(f"hyperparameter 'generator': unknown generator '{generator}'; valid: {', '.join(GENERATORS)}")
    captioner = hp["captioner"]
    needs_captions = GENERATORS[generator].needs_captions
    if captioner == "auto":
        captioner = "transformers" if needs_captions else "none"
    if captioner not in CAPTIONERS:
        raise ConfigError(f"hyperparameter 'captioner': unknown captioner '{captioner}'; valid: auto, {', '.join(CAPTIONERS)}")
    if needs_captions and captioner == "none":
        raise ConfigError(f"generator '{generator}' makes one image per caption and needs a captioner: use --captioner transformers")
    return captioner, generator


def synthetic_split(engine: Engine, hp: dict) -> TensorSplit:
    """Run (or reuse) every stage; the generated images at the dataset's spec, bias unknown."""
    captioner_name, generator_name = resolve_backends(hp)
    _check_settings(hp, captioner_name, generator_name)
    data, train = engine.data, engine.data.split("train")
    out = engine.run_dir / "diffubias"

    biased = engine.train_stage("biased", GCE, {**hp, "epochs": hp["bias_epochs"], "selection": "last", "augment": False})
    t0 = time.perf_counter()
    cand = _candidates(engine, biased.trainer.eval_model(), hp, out / "candidates.json")
    engine.stage_times["candidates"] = time.perf_counter() - t0
    idx = torch.as_tensor(cand["indices"], dtype=torch.long)
    candidates = _candidate_stats(engine, idx, cand["k"])

    prompts: list[str | None]
    captions_note = None
    if captioner_name == "none":
        sources = idx.repeat_interleave(hp["num_captions"])
        prompts = [None] * len(sources)
    else:
        t0 = time.perf_counter()
        with engine.dist.main_first():
            captions = _captions(engine, idx, hp, captioner_name, out / "captions.json")
        engine.stage_times["captioning"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with engine.dist.main_first():
            kept = _filtered(captions, hp["top_words"] or 2 * data.num_classes, out / "filtered_captions.json")
        engine.stage_times["text_filter"] = time.perf_counter() - t0
        sources = torch.as_tensor([k["index"] for k in kept], dtype=torch.long)
        prompts = [k["caption"] for k in kept]
        captions_note = CaptionsNote(sum(len(c["captions"]) for c in captions), len(kept), hp["captioner_model"],
                                     json.loads((out / "filtered_captions.json").read_text())["top_words"])  # fmt: skip
    if len(sources) == 0:
        raise ConfigError(f"{out / 'filtered_captions.json'}: the text filter kept no caption; raise --set top_words=N or check the captions")

    gen_dir = out / "generated"
    images = _generate(engine, hp, generator_name, train.subset(sources), prompts, sources, gen_dir)
    generated = _generated_note(hp, generator_name, len(images), gen_dir)
    if hp["audit"]:
        t0 = time.perf_counter()
        generated.audit = _audit(engine, gen_dir)
        engine.stage_times["audit"] = time.perf_counter() - t0
    engine.notes.diffubias = DiffuBiasNote(captioner_name, generator_name, candidates, generated, captions_note)
    engine.notes.diffubias_bias_labels = EVAL_ONLY
    labels = train.y[sources]
    return TensorSplit("synthetic", images, labels, torch.full_like(labels, UNKNOWN_BIAS), data.spec)


def _check_settings(hp: dict, captioner: str, generator: str) -> None:
    """Fail before any training on a bad setting or a pretrained model that is not available offline."""
    if not 0.0 < hp["strength"] <= 1.0:
        raise ConfigError(f"hyperparameter 'strength': must be in (0, 1], got {hp['strength']}")
    if hp["num_captions"] < 1:
        raise ConfigError(f"hyperparameter 'num_captions': must be >= 1, got {hp['num_captions']}")
    if generator == "diffusers-t2i":
        resolve_local_model(hp["t2i_model"], **T2I_MODEL)
    if captioner == "transformers":
        resolve_local_model(hp["captioner_model"], **CAPTIONER_MODEL)


def _candidates(engine: Engine, model: torch.nn.Module, hp: dict, path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    data, train = engine.data, engine.data.split("train")
    k = hp["num_candidates"] or default_k(data.info.get("ratio"))
    # the biased classifier's cross-entropy: GCE's loss (1 - p_y^q) / q is monotone in p_y, as CE is, so both rank samples alike
    losses = per_sample_ce(engine.logits(model, train, hp["eval_batch_size"], hp["num_workers"]), train.y)
    idx = top_k_per_class(losses, train.y, data.num_classes, k)
    record = {"k": k, "loss": "cross-entropy of the GCE biased classifier", "indices": idx.tolist(),
              "labels": train.y[idx].tolist(), "losses": [round(float(v), 6) for v in losses[idx]]}  # fmt: skip
    if not engine.dist.is_main:
        return record
    write_json_atomic(path, record)
    shown = torch.cat([idx[train.y[idx] == c][:64] for c in range(data.num_classes)])  # up to 8 x 8 per class
    path.with_name("candidates").mkdir(exist_ok=True)
    write_grids(path.with_name("candidates"), torch.stack([train.load_uint8(int(i)) for i in shown]).numpy(), train.y[shown].numpy(), data.num_classes)
    return record


def _candidate_stats(engine: Engine, idx: torch.Tensor, k: int) -> CandidatesNote:
    """How many candidates are truly bias-conflicting (bias labels: evaluation only)."""
    conflicting = engine.data.conflicting("train")
    if conflicting is None:
        return CandidatesNote(k, len(idx), "none: the dataset has no bias labels")
    found, total = int(conflicting[idx].sum()), int(conflicting.sum())
    return CandidatesNote(k, len(idx), EVAL_ONLY, found, total, round(100 * found / max(len(idx), 1), 2), round(100 * found / max(total, 1), 2))


def _captions(engine: Engine, idx: torch.Tensor, hp: dict, name: str, path: Path) -> list[dict]:
    if path.exists():
        return json.loads(path.read_text())
    train = engine.data.split("train")
    captioner = build_captioner(name, hp, engine.device)
    images = [to_pil(train.load_uint8(int(i))) for i in idx]
    texts = captioner(images, seed=derived_seed(engine.seed, "captions"))
    record = [{"index": int(i), "label": int(train.y[i]), "captions": t} for i, t in zip(idx.tolist(), texts)]
    write_json_atomic(path, record)
    return record


def _filtered(captions: list[dict], top_n: int, path: Path) -> list[dict]:
    if path.exists():
        return json.loads(path.read_text())["kept"]
    flat = [(c["index"], c["label"], text) for c in captions for text in c["captions"]]
    result = filter_captions([t for _, _, t in flat], top_n)
    kept = [{"index": i, "label": y, "caption": t} for (i, y, t), keep in zip(flat, result.keep) if keep]
    top_counts = {w: result.counts[w] for w in result.top_words}
    write_json_atomic(path, {"top_n": top_n, "top_words": result.top_words, "top_word_counts": top_counts,
                             "num_captions": len(flat), "num_kept": len(kept), "kept": kept})  # fmt: skip
    return kept


def _generated_note(hp: dict, name: str, num_images: int, gen_dir: Path) -> GeneratedNote:
    note = GeneratedNote(num_images, str(gen_dir), json.loads((gen_dir / "meta.json").read_text()).get("generator_run"))
    if name == "diffusers-t2i":
        note.model, note.steps, note.guidance, note.size = hp["t2i_model"], hp["t2i_steps"], hp["t2i_guidance"], hp["t2i_size"]
    else:
        note.strength, note.sampler, note.sampler_steps, note.w = hp["strength"], hp["sampler"], hp["sampler_steps"], hp["w"]
        note.adaptation = "this project's offline adaptation (SDEdit with its own class-conditional generator), not the paper's text-to-image model"
    return note


def _generate(engine: Engine, hp: dict, name: str, sources_split, prompts, sources: torch.Tensor, gen_dir: Path) -> torch.Tensor:
    run = None
    if not is_complete(gen_dir) and name == "local-conditional":
        run, _ = trained_generator(engine, hp)  # every process trains it (or finds it cached)
    with engine.dist.main_first():  # the main process generates; the others find the images written
        _generate_once(engine, hp, name, run, sources_split, prompts, sources, gen_dir)
    images = torch.from_numpy(np.load(gen_dir / "images.npy", allow_pickle=False))
    if len(images) != len(sources):
        raise DatasetError(f"{gen_dir}: holds {len(images)} images for {len(sources)} requests; delete the folder to generate again")
    return images


def _generate_once(engine: Engine, hp: dict, name: str, run: Path | None, sources_split, prompts, sources: torch.Tensor, gen_dir: Path) -> None:
    """Generate and write the images unless `gen_dir` holds them; `run` is the local generator's run."""
    data = engine.data
    if not is_complete(gen_dir):
        if name == "local-conditional":
            extra = {"generator_run": str(run)}
            generator = LocalConditionalGenerator(run, engine.device, strength=hp["strength"], sampler=hp["sampler"],
                                                  steps=hp["sampler_steps"], w=hp["w"])  # fmt: skip
        else:
            extra = {"generator_run": None}
            generator = DiffusersT2IGenerator(hp["t2i_model"], engine.device, steps=hp["t2i_steps"], guidance=hp["t2i_guidance"],
                                              size=hp["t2i_size"], batch_size=hp["gen_batch_size"])  # fmt: skip
        t0 = time.perf_counter()
        native = generator(sources_split, prompts, seed=derived_seed(engine.seed, "generation"))
        engine.stage_times["generation"] = time.perf_counter() - t0
        _write_generated(gen_dir, native, fit_to_spec(native, data.spec), sources_split.y, sources, prompts, data, {"generator": name, **extra})


def _write_generated(gen_dir: Path, native: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor,
                     prompts: list, data, extra: dict) -> None:  # fmt: skip
    """The generated images as a synthetic set (data/synthetic.py), with their sources and prompts."""
    if native.shape[-1] != images.shape[-1]:  # keep the generator's own resolution too
        for i, img in enumerate(native):
            with atomic_path(gen_dir / "png" / f"{i:05d}_class{int(labels[i])}.png") as tmp:
                to_pil(img).save(tmp, format="PNG")
    write_json_atomic(gen_dir / "prompts.json", prompts)
    meta = {"class_names": data.class_names, "source_dataset": data.name, "source_ratio": data.info.get("ratio"), **extra,
            "made_by": "diffubias (labels = the source candidate's class; sources.npy = its training index)"}  # fmt: skip
    write_synthetic_set(gen_dir, images.numpy(), labels.numpy(), meta, data.num_classes, {"sources": sources.numpy()})


def _audit(engine: Engine, gen_dir: Path) -> GeneratedAuditNote:
    """The diffusion audit's judges on the generated images: share that is bias-conflicting."""
    try:
        report = audit_synthetic(load_dataset("synthetic", root=gen_dir), engine.data)
    except DatasetError as exc:
        return GeneratedAuditNote(skipped=str(exc))
    return GeneratedAuditNote(round(100 - report["bias_alignment_rate"], 2), report["conditional_acc"], report["num_images"],
                              report["bias_judge"]["real_test_acc"], report["class_judge"]["real_test_acc"], EVAL_ONLY)  # fmt: skip
