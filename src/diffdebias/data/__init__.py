"""Biased datasets: one abstraction, one registry."""

from .base import UNKNOWN_BIAS, BiasedDataset, FileSplit, ImageSpec, Split, TensorSplit
from .registry import DATASETS, dataset_names, get_entry, load_dataset, register_dataset

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
