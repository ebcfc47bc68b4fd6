"""Shareable generators: a finished diffusion run exported as a diffusers-style folder, and loaded back.

An exported folder holds `unet/` (config.json and diffusion_pytorch_model.safetensors: the EMA
UNet), `scheduler/scheduler_config.json` (the training noise schedule, for DDPMScheduler),
`generator.json` (the training data's identity, the settings, the training facts and the weights'
sha256) and `README.md` (a model card with YAML front matter). `load_exported` verifies a folder
before using it: no pickle-capable file anywhere inside, every file present, the sha256 recorded
in generator.json and in the card equal to the files', the configurations consistent; the UNet is
read from safetensors only. `imported_run` writes a verified folder as a finished run directory in
the cache (keyed by the weights' sha256), so that sampling (synthetic.py) uses it as a trained one.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from diffusers import UNet2DModel

from .._version import __version__
from ..distributed import current
from ..errors import ConfigError, RunError
from ..io import TMP_SUFFIX, build_lock, check_output_dir, sha256_file, write_failure, write_json_atomic, write_text_atomic
from ..paths import cache_home
from .schedulers import training_scheduler
from .train import DONE, DiffusionConfig, is_trained, mark_finished

FORMAT = "diffdebias-generator"
FORMAT_VERSION = 1
WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_FILES = ("config.json", WEIGHTS)
FILES = ("generator.json", "README.md", "unet/config.json", f"unet/{WEIGHTS}", "scheduler/scheduler_config.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
RUN_FIELDS = ("dataset", "ratio", "data_identity", "num_classes", "class_names", "image_size", "channels", "config")  # of config.json
CARD_FIELDS = ("dataset", "ratio", "data_identity", "num_classes", "null_class", "image_size", "channels", "weights_sha256")
SUMMARY_FIELDS = ("steps", "wall_time_s", "img_per_s", "device", "processes")
SCHEDULER_FIELDS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "clip_sample")
FIX = "get the folder again from its publisher, or export it again with `diffdebias diffusion export RUN DIR`"


@dataclass(frozen=True)
class ExportedGenerator:
    """A verified exported folder: its generator.json (`meta`) and the UNet read from it."""

    folder: Path
    meta: dict[str, Any]
    unet: UNet2DModel

    @property
    def sha256(self) -> str:
        return self.meta["weights_sha256"]

    @property
    def config(self) -> DiffusionConfig:
        return DiffusionConfig.from_overrides(self.meta["config"])


def export_generator(run_dir: str | Path, out_dir: str | Path, *, audit: dict[str, Any] | None = None) -> Path:
    """Export the finished generator run `run_dir` into `out_dir` (new, empty, or an earlier export,
    which is replaced), atomically; `audit` (audit.audit_synthetic's figures, optionally with a
    `sampling` dict) goes into generator.json and the card. Returns `out_dir`."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not is_trained(run_dir):
        raise RunError(f"{run_dir}: not a finished generator run (no {DONE} marker, or unet_ema/ fails to verify against "
                       f"train_summary.json); finish it with `diffdebias diffusion train ... --out {run_dir}` (it resumes), then export it")  # fmt: skip
    _check_target(out_dir)
    check_output_dir(out_dir.parent, 2 * (run_dir / "unet_ema" / WEIGHTS).stat().st_size + 2**20, what="export folder")
    meta, summary = _read_json(run_dir / "config.json"), _read_json(run_dir / "train_summary.json")
    with _replaced_folder(out_dir) as tmp:
        _copy_unet(run_dir / "unet_ema", tmp / "unet")
        cfg = meta["config"]
        training_scheduler(cfg["schedule"], cfg["prediction"], cfg["timesteps"], cfg["beta_start"], cfg["beta_end"]).save_config(tmp / "scheduler")
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "diffdebias_version": __version__,
            **{k: meta.get(k) for k in RUN_FIELDS},
            "null_class": meta["num_classes"],
            "training": {k: summary[k] for k in SUMMARY_FIELDS if k in summary},
            "trained_as": run_dir.name,
            "weights_sha256": sha256_file(tmp / "unet" / WEIGHTS),
            "unet_config_sha256": sha256_file(tmp / "unet" / "config.json"),
            **({"audit": audit} if audit is not None else {}),
        }
        write_json_atomic(tmp / "generator.json", info)
        write_text_atomic(tmp / "README.md", model_card(info))
    return out_dir


def load_exported(folder: str | Path) -> ExportedGenerator:
    """Verify an exported generator's folder and read its UNet (safetensors only); a RunError names
    the offending file and the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"{folder}: not a folder; give the folder written by `diffdebias diffusion export RUN DIR`")
    _refuse_pickles(folder)
    for name in FILES:
        if not (folder / name).is_file():
            raise RunError(f"{folder / name}: missing; an exported generator holds {', '.join(FILES)}: {FIX}")
    meta = _read_meta(folder / "generator.json")
    _check_unet_files(folder / "unet", meta, folder / "generator.json")
    card = _front_matter(folder / "README.md")
    for key in CARD_FIELDS:
        if card.get(key) != meta[key]:
            raise RunError(f"{folder / 'README.md'}: field '{key}' of the card ({card.get(key)!r}) differs from generator.json's ({meta[key]!r}); {FIX}")
    _check_scheduler(folder / "scheduler" / "scheduler_config.json", meta["config"])
    unet = _load_unet(folder / "unet")
    expected = {"num_class_embeds": meta["num_classes"] + 1, "sample_size": meta["image_size"], "in_channels": meta["channels"], "out_channels": meta["channels"]}
    for key, value in expected.items():
        if unet.config.get(key) != value:
            raise RunError(f"{folder / 'unet' / 'config.json'}: field '{key}' is {unet.config.get(key)!r}, generator.json implies {value!r}; {FIX}")
    return ExportedGenerator(folder, meta, unet)


def imported_run(exported: ExportedGenerator) -> Path:
    """A finished run directory holding `exported`'s UNet (in the cache: diffusion/imported-<sha256>),
    written once and reused; sampling (synthetic.generate_synthetic) takes it as a trained run."""
    run_dir = cache_home() / "diffusion" / f"imported-{exported.sha256[:20]}"
    dist = current()
    with build_lock(run_dir, "generator import", dist.size):
        if dist.is_main and not _holds(run_dir, exported):
            _write_run(exported, run_dir)
        dist.barrier()  # written before any process samples from it
    return run_dir


def model_card(info: dict[str, Any]) -> str:
    """README.md of an exported generator: YAML front matter (identity, weights' sha256) and a body."""
    front = {"library_name": "diffusers", "tags": ["diffdebias", "class-conditional", "classifier-free-guidance", "ddpm", "dataset-bias"],
             **{k: info[k] for k in CARD_FIELDS}, "class_names": info["class_names"], "diffdebias_version": info["diffdebias_version"]}  # fmt: skip
    ratio = "" if info["ratio"] is None else f", ratio {info['ratio']}"
    body = [
        f"# Class-conditional diffusion generator: {info['dataset']}{ratio}",
        "",
        "A class-conditional UNet (diffusers `UNet2DModel`, classifier-free guidance) trained by diffdebias on the biased training",
        f"split of `{info['dataset']}`. It reproduces the training data's bias on purpose: Diffusing DeBias trains its Bias Amplifier on its images.",
        "",
        "## Data",
        "",
        f"- dataset: `{info['dataset']}`, ratio: {info['ratio']}, data identity: `{info['data_identity']}`",
        f"- {info['num_classes']} classes ({', '.join(map(str, info['class_names'] or [])) or 'unnamed'}); null (unconditional) class: {info['null_class']}",
        f"- images: {info['channels']} x {info['image_size']} x {info['image_size']}, in [-1, 1]",
        "",
        "## Training",
        "",
        *_training_lines(info),
        "",
        *_audit_lines(info.get("audit")),
        "## Files",
        "",
        f"- `unet/diffusion_pytorch_model.safetensors` (sha256 `{info['weights_sha256']}`) and `unet/config.json`: the EMA UNet",
        "- `scheduler/scheduler_config.json`: the training noise schedule (`DDPMScheduler`)",
        "- `generator.json`: what this card shows, read by diffdebias (which refuses a folder whose files do not match it)",
        "",
        "## How to use",
        "",
        "```bash",
        f"diffdebias run ddb2 --dataset {info['dataset']}{'' if info['ratio'] is None else ' --ratio ' + str(info['ratio'])} --set gen.from=DIR",
        "```",
        "",
        "(with the `--root` and data options of the data it was trained on; another dataset is warned about and recorded)",
        "",
        "```python",
        "from diffdebias import Generator, sample_synthetic",
        'generator = Generator.from_pretrained("DIR")  # verified; nothing is trained',
        "synthetic = sample_synthetic(generator, per_class=300, w=1.0)",
        "```",
        "",
        "With diffusers alone: `UNet2DModel.from_pretrained(DIR, subfolder=\"unet\", use_safetensors=True)`, `DDPMScheduler.from_pretrained(DIR,",
        f"subfolder=\"scheduler\")`; class labels 0..{info['num_classes'] - 1}, {info['null_class']} for the unconditional pass; guidance",
        "`out = (1 + w) * out(x, y) - w * out(x, null)` on the model's output.",
        "",
    ]
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + "\n".join(body)


def _training_lines(info: dict[str, Any]) -> list[str]:
    cfg, facts = info["config"], info["training"]
    default = DiffusionConfig().to_dict()
    changed = {k: v for k, v in cfg.items() if default.get(k) != v}
    return [
        (f"- preset `{cfg['preset']}`, {cfg['prediction']} prediction, {cfg['schedule']} schedule over {cfg['timesteps']} timesteps, "
         f"p_uncond {cfg['p_uncond']}, batch {cfg['batch_size']}, lr {cfg['lr']}, seed {cfg['seed']}"),
        f"- {facts.get('steps', '?')} steps in {facts.get('wall_time_s', '?')} s on {facts.get('device', '?')} ({facts.get('img_per_s', '?')} img/s)",
        f"- settings that differ from DiffusionConfig's defaults: {json.dumps(changed, sort_keys=True) if changed else 'none'} (all in generator.json)",
    ]


def _audit_lines(audit: dict[str, Any] | None) -> list[str]:
    if not audit:
        return []
    sampling = audit.get("sampling")
    lines = ["## Audit", "", "Measured on a synthetic set against judges trained on the real data (its bias labels used for evaluation only):", ""]
    if sampling:
        lines.append(f"- sampled with {json.dumps(sampling, sort_keys=True)}")
    lines.append(f"- conditional accuracy: {audit.get('conditional_acc')}%, bias alignment rate: {audit.get('bias_alignment_rate')}% "
                 f"({audit.get('num_images')} images)")  # fmt: skip
    judges = {k: audit[k].get("real_test_acc") for k in ("class_judge", "bias_judge") if isinstance(audit.get(k), dict)}
    if judges:
        lines.append("- judges' accuracy on the real test split: " + ", ".join(f"{k.replace('_', ' ')} {v}%" for k, v in judges.items()))
    div = audit.get("diversity")
    if isinstance(div, dict):
        lines.append(f"- diversity against the real training images (no judge): spread {div.get('spread')} (mean pairwise pixel distance "
                     f"within a class, synthetic / real), k-NN precision {div.get('precision')}%, recall {div.get('recall')}% (k = {div.get('k')})")  # fmt: skip
    return [*lines, ""]


@contextlib.contextmanager
def _replaced_folder(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `path` that replaces `path` when the block succeeds (train._save_ema's pattern)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except OSError as exc:
        raise write_failure(path, exc) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "generator.json").is_file())):
        raise RunError(f"{out_dir}: exists and is not an exported generator; choose a new or empty export folder")


def _copy_unet(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in UNET_FILES:
        shutil.copyfile(src / name, dst / name)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: cannot be read ({exc}); {FIX}") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: holds no JSON object; {FIX}")
    return value


def _read_meta(path: Path) -> dict[str, Any]:
    """generator.json, its format and fields checked."""
    meta = _read_json(path)
    if meta.get("format") != FORMAT:
        raise RunError(f"{path}: field 'format' is {meta.get('format')!r}, not {FORMAT!r}: not an exported generator; {FIX}")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise RunError(f"{path}: field 'format_version' is {meta.get('format_version')!r}; this diffdebias reads up to {FORMAT_VERSION}: upgrade diffdebias")
    missing = [k for k in (*RUN_FIELDS, *CARD_FIELDS, "unet_config_sha256", "training") if k not in meta]
    if missing:
        raise RunError(f"{path}: field '{missing[0]}' is missing; {FIX}")
    try:
        DiffusionConfig.from_overrides(meta["config"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise RunError(f"{path}: field 'config': {exc}; {FIX}") from None
    return meta


def _check_unet_files(unet_dir: Path, meta: dict[str, Any], source: Path) -> None:
    """The UNet's files have the sha256 that `source` (generator.json) recorded in `meta`."""
    for name, key in ((WEIGHTS, "weights_sha256"), ("config.json", "unet_config_sha256")):
        actual = sha256_file(unet_dir / name)
        if actual != meta[key]:
            raise RunError(f"{unet_dir / name}: its sha256 {actual} differs from field '{key}' of {source} ({meta[key]}): "
                           f"the file was changed or damaged; {FIX}")  # fmt: skip


def _refuse_pickles(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise RunError(f"{path}: a pickle-capable weight file, which diffdebias never loads (unpickling runs code); an exported "
                           f"generator holds safetensors only: remove the file if you trust the rest of the folder, or {FIX}")  # fmt: skip


def _front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a model card (safe_load: plain data only)."""
    text = path.read_text(errors="replace")
    head, sep, _ = text.removeprefix("---\n").partition("\n---\n")
    try:
        card = yaml.safe_load(head) if text.startswith("---\n") and sep else None
    except yaml.YAMLError as exc:
        raise RunError(f"{path}: its YAML front matter cannot be read ({exc}); {FIX}") from None
    if not isinstance(card, dict):
        raise RunError(f"{path}: no YAML front matter (between '---' lines) with the generator's identity; {FIX}")
    return card


def _check_scheduler(path: Path, cfg: dict[str, Any]) -> None:
    expected = training_scheduler(cfg["schedule"], cfg["prediction"], cfg["timesteps"], cfg["beta_start"], cfg["beta_end"]).config
    found = _read_json(path)
    for key in SCHEDULER_FIELDS:
        if found.get(key) != expected[key]:
            raise RunError(f"{path}: field '{key}' is {found.get(key)!r}, the training settings in generator.json give {expected[key]!r}; {FIX}")


def _load_unet(path: Path) -> UNet2DModel:
    try:
        return UNet2DModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file of a folder from elsewhere
        raise RunError(f"{path}: cannot load the UNet ({type(exc).__name__}: {exc}); {FIX}") from None


def _holds(run_dir: Path, exported: ExportedGenerator) -> bool:
    """`run_dir` is a finished run (its files verified) written from `exported`: the weights are
    the folder's key; the UNet config and the run fields are compared."""
    if not is_trained(run_dir):
        return False
    try:
        run = json.loads((run_dir / "config.json").read_text())
        unet_config = sha256_file(run_dir / "unet_ema" / "config.json")
    except (OSError, ValueError):
        return False
    return unet_config == exported.meta["unet_config_sha256"] and all(run.get(k) == exported.meta[k] for k in RUN_FIELDS)


def _write_run(exported: ExportedGenerator, run_dir: Path) -> None:
    """config.json, unet_ema/ (the files verified again after the copy), train_summary.json, COMPLETE."""
    meta = exported.meta
    check_output_dir(run_dir, 2 * (exported.folder / "unet" / WEIGHTS).stat().st_size + 2**20)
    (run_dir / DONE).unlink(missing_ok=True)
    write_json_atomic(run_dir / "config.json", {**{k: meta[k] for k in RUN_FIELDS}, "version": __version__,
                                                "imported": {"weights_sha256": exported.sha256, "trained_as": meta.get("trained_as")}})  # fmt: skip
    with _replaced_folder(run_dir / "unet_ema") as tmp:
        _copy_unet(exported.folder / "unet", tmp)
        _check_unet_files(tmp, meta, exported.folder / "generator.json")
    mark_finished(run_dir, dict(meta["training"]))
