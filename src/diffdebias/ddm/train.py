"""DDM on the project's pixel-space diffusion engine (class-conditional UNet, cpu-tiny preset).

Every setting of :class:`DiffusionConfig` applies, plus DDM's own (:class:`DDMConfig`). With
`init` set to a finished `diffdebias diffusion train` run, the UNet starts from that run's EMA
weights (DDM fine-tunes a pretrained generator, as the official code does); the indicator always
starts fresh. A run directory has the layout of a diffusion run (`config.json`, `unet_ema/`,
`train_log.jsonl`, `COMPLETE`), so `diffdebias diffusion sample --run DIR` samples from it, plus
`indicator.safetensors`, `groups.npy` and `groups.json`. The whole state is checkpointed every
`checkpoint_every` steps into one safetensors file (atomic), so an interrupted run resumes exactly.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .. import __version__
from ..data.base import BiasedDataset, ImageSpec
from ..diffusion.models import build_unet
from ..diffusion.synthetic import checkpoint_digest
from ..diffusion.train import NOT_IDENTITY, DiffusionConfig, _save_ema, check_run_config, checkpoint_state, data_identity, finish_run, is_trained, load_unet, noisy_batch, optimiser_step, resolve_image_size, restore_state
from ..diffusion.schedulers import training_scheduler
from ..errors import ConfigError, RunError
from ..io import append_jsonl, atomic_path, build_lock, write_json_atomic
from ..paths import cache_home
from ..distributed import current
from ..runtime import channels_last_input, resolve_device, seed_everything, speed_settings
from ..state import load_state, save_state, save_weights
from .groups import resolve_groups
from .indicator import SIGNS, Indicator, ddm_loss, predicted_noise


@dataclass
class DDMConfig(DiffusionConfig):
    """DDM's settings on top of the diffusion engine's."""

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
    cfg_d = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IDENTITY}
    if cfg.init:
        cfg_d["init"] = checkpoint_digest(Path(cfg.init) / "unet_ema")
    return hashlib.sha256(json.dumps({"data": data_identity(data), "cfg": cfg_d}, sort_keys=True).encode()).hexdigest()[:20]


def train_ddm(data: BiasedDataset, cfg: DDMConfig, run_dir: Path | None = None, *, resume: bool = True, quiet: bool = False) -> Path:
    """Train (or resume, or reuse) a class-conditional generator with the DDM objective."""
    cfg.check()
    run_dir = Path(run_dir) if run_dir is not None else cache_home() / "ddm" / f"{data.name}-{ddm_identity(data, cfg)}"
    dist = current()
    if is_trained(run_dir):
        return run_dir
    with build_lock(run_dir, "DDM training", dist.size):  # another process building it: wait, then reuse it
        if is_trained(run_dir):
            return run_dir
        size, channels = resolve_image_size(cfg, data), data.spec.channels
        if cfg.init and not is_trained(Path(cfg.init)):
            raise ConfigError(f"DDM setting 'init': {cfg.init} is not a finished diffusion run (no COMPLETE / unet_ema); run `diffdebias diffusion train` first")
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "dataset": data.name, "ratio": data.info.get("ratio"), "data_identity": data_identity(data),
            "num_classes": data.num_classes, "class_names": data.class_names, "image_size": size, "channels": channels,
            "config": cfg.to_dict(), "version": __version__, "method": "ddm",
        }  # fmt: skip
        groups, report = resolve_groups(data, cfg.groups, cfg.num_groups, cfg.seed)
        k = report["num_groups"]
        if dist.is_main:
            check_run_config(run_dir, meta, "DDM")
            with atomic_path(run_dir / "groups.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, groups.numpy())
            write_json_atomic(run_dir / "groups.json", report)

        device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        if cfg.init:
            unet = load_unet(Path(cfg.init))
            if (unet.config.sample_size, unet.config.in_channels, unet.config.num_class_embeds) != (size, channels, data.num_classes + 1):
                raise ConfigError(f"DDM setting 'init': {cfg.init} holds a UNet for other images or classes than {data.name} at {size} px")
        else:
            unet = build_unet(cfg.preset, data.num_classes, channels, size)
        unet = unet.to(device)
        indicator = Indicator(channels * size * size, k).to(device)
        params = list(unet.parameters()) + list(indicator.parameters())
        ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
        noise_sched = training_scheduler(cfg.schedule, cfg.prediction, cfg.timesteps, cfg.beta_start, cfg.beta_end)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)  # one optimiser for both
        lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.max_steps)
        stateful = {"unet": unet, "indicator": indicator, "ema": ema, "opt": opt, "lr_sched": lr_sched}  # what a checkpoint holds
        train = data.split("train").with_spec(ImageSpec(size, channels, (0.5,) * channels, (0.5,) * channels))
        gen = torch.Generator().manual_seed(cfg.seed)
        weights = _balanced_weights(train.y, groups, data.num_classes, k) if cfg.balanced else None
        ckpt = run_dir / "train_state.safetensors"
        step, elapsed = 0, 0.0
        order, cursor = torch.randperm(len(train), generator=gen), 0
        if ckpt.exists():
            if not resume:
                raise RunError(f"{ckpt}: an unfinished DDM run exists here; pass --resume or choose another --out")
            st = load_state(ckpt)
            restore_state(st, stateful, gen)
            step, elapsed, order, cursor = st["step"], st["elapsed"], st["order"], st["cursor"]

        alphas = noise_sched.alphas_cumprod.to(device)
        null = data.num_classes
        bar = tqdm(total=cfg.max_steps, initial=step, desc="ddm", unit="step", disable=quiet or not dist.is_main)
        unet.train()
        indicator.train()
        cl = speed_settings([unet], device, channels_last=cfg.channels_last, compile=cfg.compile)
        model, indicator_model = dist.wrap(unet), dist.wrap(indicator)  # DDP under several processes
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            if weights is not None:
                idx = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)
            else:
                if cursor + cfg.batch_size > len(order):
                    order, cursor = torch.randperm(len(train), generator=gen), 0
                idx = order[cursor : cursor + cfg.batch_size]
                cursor += cfg.batch_size
            local = dist.block(idx)  # this process's block of the global batch
            x0, y, _, _ = train.batch(local)
            g = groups[local].to(device)
            xt, t, y, target = noisy_batch(x0.to(device), y.to(device), cfg, noise_sched, alphas, null, gen, len(idx), dist.block_slice(len(idx)))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                pred = model(channels_last_input(xt, cl), t, class_labels=y).sample
            pred = pred.float()
            loss, parts = ddm_loss(F.mse_loss(pred, target), predicted_noise(pred, xt, alphas, t, cfg.prediction), g, indicator_model, cfg.alpha, cfg.sign)
            if not torch.isfinite(loss):
                raise RunError(f"DDM step {step + 1}: the loss became {float(loss.detach())}; the last good checkpoint is {ckpt} (lower --set lr=...)")
            optimiser_step(dist.weighted(loss, len(local), len(idx)), params, opt, lr_sched, ema, unet, cfg.grad_clip)
            step += 1
            elapsed += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(mse=f"{float(parts['mse']):.4f}", ce=f"{float(parts['ce']):.3f}", refresh=False)
            if step % 25 == 0 or step == cfg.max_steps:
                logged = dist.batch_mean({"loss": loss.detach(), **parts}, len(local), len(idx))
                if dist.is_main:
                    append_jsonl(run_dir / "train_log.jsonl", {"step": step, **{k: float(v) for k, v in logged.items()}, "elapsed_s": round(elapsed, 3)})
            if step in cfg.snapshot_steps and dist.is_main:
                _save_ema(unet, ema, run_dir / "snapshots" / f"step{step}")
            if (step % cfg.checkpoint_every == 0 or step == cfg.max_steps) and dist.is_main:
                save_state(ckpt, checkpoint_state(stateful, gen, step=step, elapsed=elapsed, order=order, cursor=cursor))
        bar.close()
        if dist.is_main:
            save_weights(run_dir / "indicator.safetensors", indicator.state_dict(), {"in_features": str(channels * size * size), "num_groups": str(k)})
            finish_run(run_dir, unet, ema, {"steps": step, "wall_time_s": round(elapsed, 3), "device": str(device), "groups": report, "processes": dist.size})
        dist.barrier()
        return run_dir


def _balanced_weights(y: torch.Tensor, groups: torch.Tensor, num_classes: int, num_groups: int) -> torch.Tensor:
    """Sampling weights 1 / n(class, group): every non-empty (class, group) cell equally likely."""
    cell = y.long() * num_groups + groups.long()
    counts = torch.bincount(cell, minlength=num_classes * num_groups).double()
    return (1.0 / counts[cell]).double()
