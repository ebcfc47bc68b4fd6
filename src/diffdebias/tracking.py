"""Live training curves in TensorBoard, W&B or MLflow, through Accelerate's trackers.

`session(names, run_dir, run_name, config)` opens the trackers of one run (on the main process
only), logs its hyperparameters once and closes the trackers at exit. Inside it, `log_scalars`
and `log_images` send to every open tracker from wherever the code runs (like `energy.stage`, no
parameter is threaded through the loops); outside a session they return at once.

Offline by default, under `run_dir/tracking/`: TensorBoard event files in `tensorboard/<run_name>/`;
W&B in offline mode (unless WANDB_MODE is set) in `wandb/`; MLflow in the file store `mlruns/`
(unless MLFLOW_TRACKING_URI is set). Steps are per section (the first part of a name: a stage,
`diffusion`, ...): TensorBoard and MLflow keep them per name, W&B gets a `SECTION/step` axis per
section, since it drops values logged at a step below its last one.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from PIL import Image

from .distributed import current
from .errors import ConfigError, RunError

TRACKERS = ("tensorboard", "wandb", "mlflow")
EXPERIMENT = "diffdebias"  # W&B project and MLflow experiment (WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME override it)
_UNSAFE = re.compile(r"[^\w\-./ ]")  # characters some trackers refuse in a name (MLflow: ',' of group cells)

_open: list[Any] = []  # the trackers of the open session
_wandb_axes: set[str] = set()  # sections whose W&B step axis is defined


def check(names: Iterable[str] | None) -> tuple[str, ...]:
    """`names` without repeats, after refusing unknown trackers and those not installed."""
    names = tuple(dict.fromkeys(names or ()))
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"unknown tracker {', '.join(map(repr, unknown))} (--log-with); valid: {', '.join(TRACKERS)}")
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:  # origin None: a folder named like it, not the package
            raise ConfigError(f"--log-with {name}: the {name} package is not installed; pip install 'diffdebias[{name}]'")
    return names


def active() -> bool:
    """True inside a session with at least one tracker open (on this process)."""
    return bool(_open)


@contextmanager
def session(names: Iterable[str] | None, run_dir: str | os.PathLike, run_name: str, config: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Open the trackers `names` for one run, log `config` (nested dicts flattened) as its
    hyperparameters, and close them at exit, also on error. A session opened inside another one,
    on another process than the main one, or with no names, logs nothing itself."""
    names = check(names)
    if not names or _open or not current().is_main:
        yield
        return
    folder = Path(run_dir) / "tracking"
    folder.mkdir(parents=True, exist_ok=True)
    trackers: list[Any] = []
    with _mlflow_store(folder / "mlruns" if "mlflow" in names else None):
        try:
            for name in names:
                trackers.append(_start(name, folder, run_name))
            hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in _flatten(config or {}).items()}
            for tracker in trackers if hparams else ():
                tracker.store_init_configuration(hparams)
            _open.extend(trackers)
            yield
        finally:
            _open.clear()
            _wandb_axes.clear()
            for tracker in trackers:
                tracker.finish()


def log_scalars(values: Mapping[str, Any], step: int, prefix: str = "") -> None:
    """Log the finite numbers of `values` (nested dicts as `prefix/key/subkey`) at `step`; other
    values (None, strings, booleans, lists) are left out."""
    if not _open:
        return
    scalars = {_UNSAFE.sub("_", k): float(v) for k, v in _flatten(values, prefix).items() if _is_number(v)}
    if not scalars:
        return
    for tracker in _open:
        if tracker.name == "wandb":
            _wandb_log(tracker, scalars, step)
        else:
            tracker.log(scalars, step=step)


def log_images(images: Mapping[str, np.ndarray | Image.Image], step: int) -> None:
    """Log uint8 images (H x W, H x W x C, C x H x W arrays or PIL images) by name at `step` to the
    trackers that take images (TensorBoard, W&B; MLflow's tracker has none)."""
    if not _open:
        return
    batches = {_UNSAFE.sub("_", k): _rgb(v)[None] for k, v in images.items()}
    for tracker in _open:
        if tracker.name == "tensorboard":
            tracker.log_images(batches, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":  # at W&B's own step: a lower explicit one would be dropped
            tracker.log_images(batches)


class Means:
    """Means over an epoch of per-batch statistics weighted by batch size; collects only while a
    session is open (outside one, `add` returns at once and `means` is empty)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0.0

    def add(self, stats: Mapping[str, Any], weight: float) -> None:
        if not _open:
            return
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * weight
        self.weight += weight

    def means(self) -> dict[str, float]:
        return {k: v / self.weight for k, v in self.sums.items()} if self.weight else {}


def _start(name: str, folder: Path, run_name: str) -> Any:
    """A started Accelerate tracker `name` writing under `folder`."""
    from accelerate import PartialState  # heavy: only when tracking
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    PartialState()  # the trackers log through Accelerate's process state (a launch has made it already)
    if name == "tensorboard":
        tracker = TensorBoardTracker(run_name, folder / "tensorboard")
    elif name == "wandb":
        project = os.environ.get("WANDB_PROJECT", EXPERIMENT)
        tracker = WandBTracker(project, name=run_name, dir=str(folder), mode=os.environ.get("WANDB_MODE", "offline"))
    else:
        tracker = MLflowTracker(EXPERIMENT, run_name=run_name)
    try:
        tracker.start()
    except Exception as exc:  # noqa: BLE001 - each tracker has its own errors (login, store, ...)
        raise RunError(f"--log-with {name}: the tracker did not start ({type(exc).__name__}: {exc}); fix it or leave {name} out") from exc
    return tracker


@contextmanager
def _mlflow_store(store: Path | None) -> Iterator[None]:
    """MLflow's tracking URI = the file store `store` while the session is open, unless the user set
    MLFLOW_TRACKING_URI (MLflow 3 takes a file store only with MLFLOW_ALLOW_FILE_STORE)."""
    if store is None or "MLFLOW_TRACKING_URI" in os.environ:
        yield
        return
    env = {"MLFLOW_TRACKING_URI": store.resolve().as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def _wandb_log(tracker: Any, scalars: dict[str, float], step: int) -> None:
    """Log to W&B with each section's values on that section's own step axis."""
    sections: dict[str, dict[str, float]] = {}
    for k, v in scalars.items():
        sections.setdefault(k.split("/")[0], {})[k] = v
    for section, values in sections.items():
        if section not in _wandb_axes:
            tracker.run.define_metric(f"{section}/*", step_metric=f"{section}/step")
            _wandb_axes.add(section)
        tracker.log({**values, f"{section}/step": step})


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level, their keys joined with '/'."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """A uint8 image as an H x W x 3 array (grey repeated, C x H x W transposed)."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.dtype != np.uint8:
        raise ValueError(f"tracking.log_images takes uint8 images, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[:, :, :3]
