"""Biased datasets: one abstraction, one registry."""

from .base import UNKNOWN_BIAS, BiasedDataset, FileSplit, ImageSpec, Split, TensorSplit
from .registry import DATASETS, dataset_names, get_entry, load_dataset, register_dataset

from . import builtin  # noqa: E402, F401  (every built-in dataset registers itself; after the registry)

__all__ = [
    "UNKNOWN_BIAS",
    "BiasedDataset",
    "FileSplit",
    "ImageSpec",
    "Split",
    "TensorSplit",
    "DATASETS",
    "dataset_names",
    "get_entry",
    "load_dataset",
    "register_dataset",
]
