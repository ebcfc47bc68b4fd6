"""Checkpoints as single safetensors files: nested state (tensors, numbers, strings, lists,
dicts) is flattened into named tensors, and its structure is kept as JSON in the file's
metadata. Nothing is ever unpickled; files are written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .errors import RunError
from .io import atomic_path, write_failure

_TENSOR = "__tensor__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError("state keys must be str or int")
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
    return obj


def _packed(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy with its own contiguous storage: safetensors refuses tensors that share memory
    and non-contiguous ones (weights in the channels-last format that CUDA runs use)."""
    return t.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` atomically to a safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    tensors = {k: _packed(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"diffdebias_state": json.dumps(skeleton)})
        except SafetensorError as exc:  # safetensors reports I/O errors (disk full, ...) as its own
            raise write_failure(path, exc) from exc


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_state`; a damaged file raises RunError naming it."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return _unflatten(json.loads(meta["diffdebias_state"]), tensors)
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
        raise RunError(f"{path}: checkpoint cannot be read ({exc}); delete it to start the stage again") from None


def weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's weights, which later training steps cannot change."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def stage_weights(run_dir: str | os.PathLike, stage: str) -> Path:
    """The file of a training stage's selected weights in a run directory (`main`, `base`, ...)."""
    return Path(run_dir) / f"{stage}.model.safetensors"


def save_weights(path: str | os.PathLike, weights: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A state dict of weights only, as a plain safetensors file (loadable by other tools)."""
    tensors = {k: _packed(v) for k, v in weights.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata or {})
        except SafetensorError as exc:
            raise write_failure(path, exc) from exc


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or from a torch file with ``weights_only=True`` (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the user's file's fault
        raise RunError(f"{path}: cannot load weights ({type(exc).__name__}: {exc}); use a safetensors file or a plain state dict") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RunError(f"{path}: expected a state dict of tensors")
    return obj
