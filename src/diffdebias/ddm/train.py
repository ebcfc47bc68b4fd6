"""DDM on the project's pixel-space diffusion engine (class-conditional UNet, preset as resolved).

Every setting of :class:`DiffusionConfig` applies, plus DDM's own (:class:`DDMConfig`). With
`init` set to a finished `diffdebias diffusion train` run, the UNet starts from that run's EMA
weights (DDM fine-tunes a pretrained generator, as the official code does); the indicator always
starts fresh. Training is the diffusion engine's loop (`train_diffusion` with a :class:`DDMHook`),
with its exact resume, damaged-checkpoint recovery, finite-weight checks and duration estimate.
A run directory has the layout of a diffusion run (`config.json`, `unet_ema/`, `train_log.jsonl`,
`COMPLETE`), so `diffdebias diffusion sample --run DIR` samples from it, plus
`indicator.safetensors`, `groups.npy` and `groups.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import BiasedDataset
from ..diffusion.models import build_unet
from ..diffusion.synthetic import checkpoint_digest
from ..diffusion.train import DiffusionConfig, LossHook, Parts, Step, is_trained, load_unet, train_diffusion, train_identity
from ..errors import ConfigError
from ..io import atomic_path, write_json_atomic
from ..paths import cache_home
from ..state import save_weights
from .groups import resolve_groups
from .indicator import SIGNS, Indicator, ddm_loss, predicted_noise


@dataclass
class DDMConfig(DiffusionConfig):
    """DDM's settings on top of the diffusion engine's."""

    what: ClassVar[str] = "DDM setting"

    alpha: float = 0.05  # weight of the indicator's cross-entropy (official examples: 0.005, 0.01, 0.05)
    groups: str = "given"  # given (the dataset's attribute b) | inferred (groups.py)
    num_groups: int = 0  # 0: the dataset's attribute values (given) or 2 (inferred)
    sign: str = "faithful"  # faithful (the paper) | adversarial (this project's: gradient reversal)
    balanced: bool = False  # this project's variant: draw training samples uniformly over (class, group)
    init: str = ""  # a finished diffusion run directory to fine-tune from ("" = train from scratch)

    def check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"DDM setting 'alpha' must be in [0, 1], got {self.alpha}")
        if self.sign not in SIGNS:
            raise ConfigError(f"DDM setting 'sign' must be one of {', '.join(SIGNS)}, got {self.sign!r}")


def ddm_identity(data: BiasedDataset, cfg: DDMConfig) -> str:
    """The DDM generator's cache key: `train_identity`, its `init` run identified by its weights."""
    return train_identity(data, cfg, **({"init": checkpoint_digest(Path(cfg.init) / "unet_ema")} if cfg.init else {}))


class DDMHook(LossHook):
    """The DDM objective on the diffusion loop: groups, the UNet (fresh or from `init`), the
    indicator trained with it by the same AdamW, optional balanced sampling, indicator.safetensors.
    `setup` fills `cfg`, `groups` (of every training sample) and `report` (groups.json)."""

    kind = "DDM"
    meta = {"method": "ddm"}
    log_every = 25
    cfg: DDMConfig
    groups: torch.Tensor
    report: dict[str, Any]

    def cache_dir(self, data: BiasedDataset, cfg: DDMConfig) -> Path:
        return cache_home() / "ddm" / f"{data.name}-{ddm_identity(data, cfg)}"

    def setup(self, data: BiasedDataset, cfg: DDMConfig, size: int, run_dir: Path, write: bool) -> Parts:
        self.cfg, channels = cfg, data.spec.channels
        self.groups, self.report = resolve_groups(data, cfg.groups, cfg.num_groups, cfg.seed)
        k = self.report["num_groups"]
        if write:
            with atomic_path(run_dir / "groups.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, self.groups.numpy())
            write_json_atomic(run_dir / "groups.json", self.report)
        if cfg.init:
            unet = load_unet(Path(cfg.init))
            if (unet.config.sample_size, unet.config.in_channels, unet.config.num_class_embeds) != (size, channels, data.num_classes + 1):
                raise ConfigError(f"DDM setting 'init': {cfg.init} holds a UNet for other images or classes than {data.name} at {size} px")
        else:
            unet = build_unet(cfg.preset, data.num_classes, channels, size)
        weights = _balanced_weights(data.split("train").y, self.groups, data.num_classes, k) if cfg.balanced else None
        return Parts(unet, {"indicator": Indicator(channels * size * size, k)}, weights)

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse = F.mse_loss(s.pred, s.target)
        eps = predicted_noise(s.pred, s.xt, s.alphas, s.t, self.cfg.prediction)
        return ddm_loss(mse, eps, self.groups[s.idx].to(s.pred.device), s.modules["indicator"], self.cfg.alpha, self.cfg.sign)

    def finish(self, run_dir: Path, modules: dict[str, nn.Module]) -> dict[str, Any]:
        ind = modules["indicator"]
        save_weights(run_dir / "indicator.safetensors", ind.state_dict(), {"in_features": str(ind.net[1].in_features), "num_groups": str(self.report["num_groups"])})
        return {"groups": self.report}


def train_ddm(data: BiasedDataset, cfg: DDMConfig, run_dir: Path | None = None, *, resume: bool = True, quiet: bool = False) -> Path:
    """Train (or resume, or reuse) a class-conditional generator with the DDM objective."""
    cfg.check()
    if cfg.init and not is_trained(Path(cfg.init)) and not (run_dir is not None and is_trained(Path(run_dir))):
        raise ConfigError(f"DDM setting 'init': {cfg.init} is not a finished diffusion run (no COMPLETE / unet_ema); run `diffdebias diffusion train` first")
    return train_diffusion(data, cfg, run_dir, resume=resume, quiet=quiet, hook=DDMHook())


def _balanced_weights(y: torch.Tensor, groups: torch.Tensor, num_classes: int, num_groups: int) -> torch.Tensor:
    """Sampling weights 1 / n(class, group): every non-empty (class, group) cell equally likely."""
    cell = y.long() * num_groups + groups.long()
    counts = torch.bincount(cell, minlength=num_classes * num_groups).double()
    return (1.0 / counts[cell]).double()
