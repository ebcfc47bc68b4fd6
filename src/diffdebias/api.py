"""The Python API (diffusers / SpuCo conventions): plain tensors and datasets in and out, no
Engine or run directory unless the caller wants checkpoints (`out=`).

    data = make_dataset((images, y), (val_images, val_y))
    generator = train_generator(data)                  # cached by data + settings
    synthetic = sample_synthetic(generator, per_class=300)
    Generator(generator).save_pretrained("my-generator")  # shareable; Generator.from_pretrained loads it
    ba = BiasAmplifier().fit(synthetic, spec=data.spec)
    inferred = ba.infer(data)                          # scores, pseudo-groups, error set
    sampler = inferred.sampler(data.split("train").y)  # for the caller's own DataLoader
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .data.base import UNKNOWN_BIAS, BiasedDataset, ImageSpec, Split, TensorSplit
from .data.registry import load_dataset
from .diffusion.export import export_generator, imported_run, load_exported
from .diffusion.synthetic import generate_synthetic
from .diffusion.train import DiffusionConfig, is_trained, train_diffusion
from .engine.loop import Engine, split_logits
from .errors import ConfigError, RunError
from .hparams import resolve_hparams
from .inference.bias_amplifier import GroupInference, infer_groups
from .runtime import resolve_device
from .stages.bias_amplifier import ba_settings
from .stages.generator import generator_config as stages_generator_config
from .trainers import ERM, GCE


def generator_config(data: BiasedDataset, device: str = "auto", **settings: Any) -> DiffusionConfig:
    """The generator's configuration for `data` on `device`: the preset chosen for its image size
    and the device, with `settings` (DiffusionConfig fields) on top."""
    return stages_generator_config(data, settings, device)


def train_generator(data: BiasedDataset, config: DiffusionConfig | None = None, *, out: str | Path | None = None,
                    quiet: bool = True) -> Path:  # fmt: skip
    """Train a class-conditional generator (classifier-free guidance) on `data`'s training split;
    returns its folder (EMA UNet in `unet_ema/`, diffusers format). Without `out` it is cached by
    data identity and settings, and a second call reuses it."""
    return train_diffusion(data, config or generator_config(data), out, quiet=quiet)


def sample_synthetic(generator: str | Path | Generator, per_class: int, *, w: float = 1.0, sampler: str = "dpmpp", steps: int = 10, seed: int = 0,
                     device: str = "auto", quiet: bool = True) -> BiasedDataset:  # fmt: skip
    """`per_class` images of every class from a trained generator (a run folder or a `Generator`)
    with guidance `w` (cached), as a dataset (bias unknown; `.split("train").images` is a uint8 tensor)."""
    folder = generate_synthetic(Path(generator), per_class, sampler=sampler, steps=steps, w=w, seed=seed, device=device, quiet=quiet)
    return load_dataset("synthetic", root=folder)


class Generator(os.PathLike):
    """A trained class-conditional generator (a finished run folder), shareable in the diffusers
    layout: `save_pretrained` exports it, `from_pretrained` loads an exported folder (verified,
    nothing trained). Path-like: pass it wherever a generator's run folder is taken (`sample_synthetic`)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not is_trained(self.run_dir):
            raise RunError(f"{self.run_dir}: not a finished generator run; train one with train_generator(data), "
                           "or load an exported one with Generator.from_pretrained(folder)")  # fmt: skip

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "Generator":
        """The generator exported in `folder` (`save_pretrained`, `diffdebias diffusion export`), after
        checking its files against their recorded sha256; weights from safetensors only."""
        return cls(imported_run(load_exported(folder)))

    def save_pretrained(self, folder: str | Path, *, audit: dict[str, Any] | None = None) -> Path:
        """Export to `folder` (UNet, scheduler, generator.json, model card); `audit`: the figures of
        diffdebias.audit.audit_synthetic for the card."""
        return export_generator(self.run_dir, folder, audit=audit)

    @property
    def info(self) -> dict[str, Any]:
        """What it was trained on and how: dataset, ratio, data identity, classes, image size, settings."""
        return json.loads((self.run_dir / "config.json").read_text())

    def __fspath__(self) -> str:
        return str(self.run_dir)

    def __repr__(self) -> str:
        return f"Generator({str(self.run_dir)!r})"


class BiasAmplifier:
    """Diffusing DeBias's Bias Amplifier as a plug-in: a classifier trained (GCE by default) on
    synthetic images that carry the training bias, then frozen; on real images its per-sample
    loss is a bias score and its errors flag bias-conflicting samples."""

    def __init__(self, model: str = "mlp", *, epochs: int = 20, loss: str = "gce", q: float = 0.7, lr: float = 1e-3, batch_size: int = 256,
                 weight_decay: float = 0.0, augment: tuple[float, float] = (1.0, 0.0), seed: int = 0, device: str = "auto",
                 out: str | Path | None = None, quiet: bool = True):  # fmt: skip
        if loss not in ("gce", "ce"):
            raise ConfigError(f"BiasAmplifier: loss must be 'gce' or 'ce', got {loss!r}")
        hp = resolve_hparams("ddb2", "custom", {"model": model, "ba_epochs": epochs, "ba_q": q, "lr": lr, "batch_size": batch_size,
                                                 "ba_weight_decay": weight_decay, "ba_loss": loss})  # fmt: skip
        self.hp = ba_settings(hp, augment)
        self.loss, self.seed, self.out, self.quiet = loss, seed, out, quiet
        self.device = resolve_device(device)
        self.model: torch.nn.Module | None = None
        self.spec: ImageSpec | None = None

    def fit(self, synthetic: BiasedDataset, spec: ImageSpec | None = None) -> "BiasAmplifier":
        """Train on `synthetic` (e.g. from `sample_synthetic`), its images resized and normalised
        as `spec` (pass the real data's `data.spec` so that real images are read the same way)."""
        data = synthetic.with_spec(spec) if spec is not None else synthetic
        with tempfile.TemporaryDirectory() if self.out is None else contextlib.nullcontext(self.out) as folder:
            engine = Engine(data, Path(folder), self.seed, self.device, quiet=self.quiet, resume=self.out is not None)
            result = engine.train_stage("bias_amplifier", GCE if self.loss == "gce" else ERM, self.hp)
        self.model, self.spec = result.trainer.eval_model().eval().requires_grad_(False), data.spec
        return self

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The BA's logits on uint8 images (N x C x H x W), read with the spec it was trained with."""
        return self.split_logits(TensorSplit("infer", images, torch.zeros(len(images)), torch.full((len(images),), UNKNOWN_BIAS), self.spec))

    def split_logits(self, split: Split) -> torch.Tensor:
        """The BA's logits on every sample of `split`, its images read with the BA's spec."""
        if self.model is None or self.spec is None:
            raise ConfigError("BiasAmplifier: call fit(...) before using it")
        return split_logits(self.model, split.with_spec(self.spec), self.device)

    def infer(self, data: BiasedDataset | Split, split: str = "train", *, threshold: float = 0.0, grouping: str = "pred") -> GroupInference:
        """Bias scores, pseudo-bias labels, pseudo-groups and the error set of the samples of
        `data`'s `split` (or of a Split): pseudo-conflicting = misclassified by the BA (or p(y) <
        `threshold`). Reads class labels only, never bias labels."""
        s = data.split(split) if isinstance(data, BiasedDataset) else data
        return infer_groups(self.split_logits(s), s.y, threshold, grouping)
