"""diffdebias: diffusion models against dataset bias.

The public API is importable from the top level (`from diffdebias import BiasAmplifier`); names
are loaded on first use, as diffusers does, so that `import diffdebias` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "make_dataset": "data.wrap",
    "BiasedDataset": "data.base",
    "ImageSpec": "data.base",
    "load_dataset": "data.registry",
    "DiffusionConfig": "diffusion.train",
    "generator_config": "api",
    "train_generator": "api",
    "sample_synthetic": "api",
    "Generator": "api",
    "BiasAmplifier": "api",
    "GroupInference": "inference.bias_amplifier",
    "infer_groups": "inference.bias_amplifier",
    "run_method": "run",
    "read_result": "run",
    "RunResult": "records",
    "METHODS": "recipes",
    "TrainerInputs": "trainers",
}

if TYPE_CHECKING:
    from .api import BiasAmplifier, Generator, generator_config, sample_synthetic, train_generator
    from .data.base import BiasedDataset, ImageSpec
    from .data.registry import load_dataset
    from .data.wrap import make_dataset
    from .diffusion.train import DiffusionConfig
    from .inference.bias_amplifier import GroupInference, infer_groups
    from .recipes import METHODS
    from .records import RunResult
    from .run import read_result, run_method
    from .trainers import TrainerInputs

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'diffdebias' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
