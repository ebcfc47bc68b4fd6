"""One run = one method on one dataset with one seed, in one directory.

The directory holds `config.json` (resolved configuration) and the same as a run file,
`config.yaml` (runfile.py: `diffdebias run --config config.yaml` reruns it), per-stage metric logs
(`<stage>.metrics.jsonl`, one JSON line per epoch), checkpoints and weights (safetensors),
`results.json` and the completion marker `COMPLETE`. Every finished run also appends one line
to `runs.jsonl` in the parent directory of its run directory (config + metrics), for `collect`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from . import energy, tracking
from ._version import __version__, source_commit
from .data.base import BiasedDataset
from .data.registry import load_dataset
from .distributed import current
from .engine.loop import Engine
from .engine.selection import POLICIES, get_policy, select_epoch
from .errors import ConfigError, RunError
from .hparams import PERFORMANCE_KEYS, defaults_chosen_with_bias_labels, resolve_hparams
from .io import append_jsonl, exclusive, write_json_atomic, write_text_atomic
from .recipes import get_method
from .records import BiasLabelUse, RunResult
from .recipes.base import Recipe
from .runfile import write_run_file
from .runtime import resolve_device

COMPLETE = "COMPLETE"
RECORD_FILES = ("results.json", "config.json", "config.yaml", COMPLETE)  # all that collect and report read of a run


def default_run_dir(method: str, dataset: str, ratio: float | None, seed: int) -> Path:
    tag = dataset if ratio is None else f"{dataset}_r{ratio:g}"
    return Path("runs") / tag / method / f"seed{seed}"


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / COMPLETE).exists() and (Path(run_dir) / "results.json").exists()


def copy_records(src: Path, dst: Path) -> int:
    """Copy the records (RECORD_FILES) of every complete run under `src` to the same place under
    `dst`, skipping runs complete there already; the number copied. An archive of records is what
    `collect` and `report` need, without weights or checkpoints."""
    n = 0
    for done in sorted(Path(src).rglob(COMPLETE)):
        run = done.parent
        target = Path(dst) / run.relative_to(src)
        if not is_complete(run) or is_complete(target):
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (run / name).exists():
                shutil.copy2(run / name, target / name)
        n += 1
    return n


def run_method(
    method: str,
    dataset: str,
    *,
    root: str | None = None,
    ratio: float | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    data_options: dict[str, Any] | None = None,
    resume: bool = False,
    quiet: bool = False,
    log_with: tuple[str, ...] = (),
) -> RunResult:
    """Run `method` on `dataset` and return its typed result (read back if the run is complete);
    `log_with` names trackers (tracking.py) that get the run's curves, images and settings."""
    recipe = get_method(method)
    log_with = tracking.check(log_with)
    hp = resolve_hparams(method, dataset, overrides)
    get_policy(hp["selection"])
    run_dir = Path(out) if out is not None else default_run_dir(method, dataset, ratio, seed)
    if (done := _finished(run_dir)) is not None:
        return done
    lock = exclusive(run_dir, f"{method} run") if current().is_main else contextlib.nullcontext()
    with lock:  # a second process on this directory stops here (RunBusy) instead of writing it too
        if (done := _finished(run_dir)) is not None:  # finished by another process meanwhile
            return done
        energy.reset()
        t0 = time.perf_counter()
        with energy.stage("data"):
            data = load_dataset(dataset, root=root, ratio=ratio, **(data_options or {}))
        data_time = time.perf_counter() - t0
        config = {
            "method": method,
            "dataset": dataset,
            "ratio": data.info.get("ratio"),
            "seed": seed,
            "root": data.info.get("root"),
            "data_options": data.info.get("options", {}),
            "hparams": hp,
        }
        _check_config(run_dir, config, resume)
        if current().is_main and not (run_dir / "config.yaml").exists():
            write_run_file(run_dir / "config.yaml", config)
        run_name = "-".join(default_run_dir(method, dataset, config["ratio"], seed).parts[1:])
        labelled_defaults = defaults_chosen_with_bias_labels(method, dataset, overrides)
        with tracking.session(log_with, run_dir, run_name, config):
            return _train(recipe, config, data, data_time, run_dir, hp, resume, quiet, labelled_defaults)


def _train(recipe: Recipe, config: dict[str, Any], data: BiasedDataset, data_time: float, run_dir: Path, hp: dict[str, Any], resume: bool,
           quiet: bool, labelled_defaults: list[str]) -> RunResult:  # fmt: skip
    """Train the recipe of a run whose configuration is checked, write its results and return them."""
    method, dataset, seed = config["method"], config["dataset"], config["seed"]
    device = resolve_device(hp["device"])
    engine = Engine(data, run_dir, seed, device, quiet=quiet, resume=resume)
    inputs = recipe.inputs(engine, hp)
    stage_hp = {**hp, **inputs.hparams}  # e.g. the safeguard's fallback to ERM's settings
    main = engine.train_stage("main", recipe.trainer, stage_hp, inputs=inputs)
    policy = get_policy(stage_hp["selection"])
    uses_train_b = recipe.uses_bias_labels(hp)
    result = RunResult(
        method=method, dataset=dataset, ratio=config["ratio"], seed=seed, selection=policy.name,
        selected_epoch=main.selected["epoch"], bias_labels_used=BiasLabelUse(uses_train_b, policy.uses_val_bias_labels, labelled_defaults),
        oracle=uses_train_b, val=main.selected.get("val", {}), test=main.selected.get("test", {}), by_policy=_by_policy(main.history),
        wall_time_s={"data": round(data_time, 3), **{k: round(v, 3) for k, v in engine.stage_times.items()}},
        energy={"stages": energy.summed(current().gather_object(energy.stages())), **energy.describe(), "processes": current().size},
        notes=engine.notes, hparams=hp, data_options=config["data_options"], device=str(device),
        machine={"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "commit": source_commit()}, version=__version__,
    )  # fmt: skip
    if current().is_main:
        record = result.to_dict()
        write_json_atomic(run_dir / "results.json", record)
        write_text_atomic(run_dir / COMPLETE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        append_jsonl(run_dir.parent / "runs.jsonl", {"run_dir": str(run_dir), **record})
    current().barrier()
    result.run_dir = str(run_dir)
    return result


def read_result(run_dir: str | Path) -> RunResult:
    """The typed results.json of a run directory (a RunError names the file if it is not one)."""
    path = Path(run_dir) / "results.json"
    result = RunResult.from_dict(json.loads(path.read_text()), str(path))
    result.run_dir = str(run_dir)
    return result


def _finished(run_dir: Path) -> RunResult | None:
    """The result of a complete run; None when the run is not complete, or when its results do not
    parse (the run is then marked incomplete and rebuilt from its finished stages, never used)."""
    if not is_complete(run_dir):
        return None
    try:
        return read_result(run_dir)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RunError, TypeError):
        (run_dir / COMPLETE).unlink(missing_ok=True)
        return None


def _by_policy(history: list[dict]) -> dict:
    """What each selection policy would pick, with its bias-label use recorded."""
    out = {}
    for name, pol in POLICIES.items():
        try:
            row = select_epoch(history, name)
        except ConfigError:  # a policy this dataset's val split cannot support
            continue
        out[name] = {"epoch": row["epoch"], "uses_val_bias_labels": pol.uses_val_bias_labels, "val": row.get("val", {}), "test": row.get("test", {})}
    return out


def _check_config(run_dir: Path, config: dict, resume: bool) -> None:
    path = run_dir / "config.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{path}: damaged ({exc}); choose another --out") from None
        new = json.loads(json.dumps(config))
        for c in (old, new):  # speed settings may differ on resume
            for k in PERFORMANCE_KEYS:
                c.get("hparams", {}).pop(k, None)
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise RunError(f"{path}: this run directory holds a run with another configuration (differs in {', '.join(changed)}); choose another --out")
        return
    if any(run_dir.glob("*.ckpt.safetensors")) and not resume:
        raise RunError(f"{run_dir}: holds checkpoints but no config.json; choose another --out")
    if current().is_main:
        write_json_atomic(path, config)
