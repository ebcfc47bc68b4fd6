"""Training a class-conditional diffusion model on a biased training split.

Settings live in :class:`DiffusionConfig` (one place, with defaults). The loop checkpoints its
whole state (UNet, EMA, optimiser, schedule, random generators) every `checkpoint_every` steps
into one safetensors file, so `resume` continues exactly; the EMA UNet is saved with diffusers'
`save_pretrained` (safetensors) in `unet_ema/`, and optional snapshots in `snapshots/stepN/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .. import __version__
from ..data.base import BiasedDataset, ImageSpec
from ..data.injected import IDENTITY_NEUTRAL_OPTIONS
from ..runtime import resolve_device, seed_everything
from ..errors import ConfigError, RunError
from ..hparams import coerce
from ..io import append_jsonl, write_json_atomic
from ..paths import cache_home
from ..state import load_state, save_state
from .models import PRESET_IMAGE_SIZE, build_unet
from .schedulers import training_scheduler

DONE = "COMPLETE"
CPU_DATASETS = ("colored_fmnist", "colored_mnist", "corrupted_fmnist", "cmnist", "synthetic")
# DDB's reference code: UNet ch 128 (1,2,2,2), linear betas 1e-4..0.028, eps-prediction, AdamW
# 1e-4, warm-up then cosine, 64 px, 100k iterations at batch 32 (Waterbirds).
PAPER_SETTINGS: dict[str, Any] = {
    "preset": "paper", "image_size": 64, "prediction": "epsilon", "schedule": "linear", "beta_end": 0.028,
    "lr": 1e-4, "warmup_steps": 5000, "max_steps": 100_000, "ema_max_decay": 0.9999, "checkpoint_every": 2000,
}  # fmt: skip


@dataclass
class DiffusionConfig:
    """Every diffusion-training setting with its default (CPU defaults from METHODS.md s. 7)."""

    preset: str = "cpu-tiny"
    image_size: int = 0  # 0: the preset's size, or the dataset's own for cpu-tiny
    prediction: str = "v_prediction"  # epsilon | v_prediction
    schedule: str = "cosine"  # cosine | linear
    beta_start: float = 1e-4
    beta_end: float = 0.02  # DDB's reference code uses 0.028 with the linear schedule
    timesteps: int = 1000
    p_uncond: float = 0.1
    lr: float = 8e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    batch_size: int = 32
    max_steps: int = 470  # ~2 CPU minutes: the cheapest budget with >90% bias alignment (BENCHMARKS.md)
    grad_clip: float = 1.0
    ema_max_decay: float = 0.999
    checkpoint_every: int = 250
    snapshot_steps: list[int] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast, CUDA only

    @classmethod
    def for_dataset(cls, dataset: str, overrides: dict[str, Any] | None = None) -> "DiffusionConfig":
        """Defaults for `dataset` (cpu-tiny for 28 px sets, DDB's reference settings otherwise) + overrides."""
        layer = {} if dataset in CPU_DATASETS else PAPER_SETTINGS
        return cls.from_overrides({**layer, **(overrides or {})})

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None) -> "DiffusionConfig":
        cfg = cls()
        valid = {f.name for f in dataclasses.fields(cls)}
        for key, value in (overrides or {}).items():
            if key not in valid:
                raise ConfigError(f"unknown diffusion setting '{key}'; valid keys: {', '.join(sorted(valid))}")
            default = getattr(cfg, key)
            if isinstance(default, list):
                value = [int(v) for v in str(value).replace(",", " ").split()] if isinstance(value, str) else list(value)
            else:
                value = coerce(value, default, key)
            setattr(cfg, key, value)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_image_size(cfg: DiffusionConfig, data: BiasedDataset) -> int:
    return cfg.image_size or PRESET_IMAGE_SIZE.get(cfg.preset) or data.spec.size


def data_identity(data: BiasedDataset) -> str:
    """A short hash identifying the training data (dataset, ratio, options, labels, size)."""
    train = data.split("train")
    h = hashlib.blake2b(digest_size=12)
    info = {k: v for k, v in data.info.items() if k not in ("root", "cache_file")}
    if "options" in info:
        info["options"] = {k: v for k, v in info["options"].items() if IDENTITY_NEUTRAL_OPTIONS.get(k, object()) != v}
    h.update(json.dumps({"name": data.name, "info": info, "n": len(train)}, sort_keys=True, default=str).encode())
    h.update(train.y.numpy().tobytes())
    h.update(train.b.numpy().tobytes())
    return h.hexdigest()


def train_identity(data: BiasedDataset, cfg: DiffusionConfig) -> str:
    """Hash of (training data, configuration): where a matching trained generator is cached."""
    cfg_d = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "checkpoint_every", "snapshot_steps")}
    return hashlib.sha256(json.dumps({"data": data_identity(data), "cfg": cfg_d}, sort_keys=True).encode()).hexdigest()[:20]


def default_diffusion_dir(data: BiasedDataset, cfg: DiffusionConfig) -> Path:
    return cache_home() / "diffusion" / f"{data.name}-{train_identity(data, cfg)}"


def is_trained(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).exists() and (Path(run_dir) / "unet_ema").is_dir()


def load_unet(run_dir: Path, snapshot: int | None = None) -> UNet2DModel:
    """The EMA UNet of a finished run (or one of its snapshots), from safetensors."""
    path = Path(run_dir) / ("unet_ema" if snapshot is None else f"snapshots/step{snapshot}")
    if not path.is_dir():
        raise RunError(f"{path}: no trained diffusion model here; run `diffdebias diffusion train` first")
    return UNet2DModel.from_pretrained(path, use_safetensors=True, local_files_only=True)


def train_diffusion(
    data: BiasedDataset,
    cfg: DiffusionConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = True,
    quiet: bool = False,
) -> Path:
    """Train (or resume, or reuse) a class-conditional diffusion model; returns its run directory."""
    run_dir = Path(run_dir) if run_dir is not None else default_diffusion_dir(data, cfg)
    if is_trained(run_dir):
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    size = resolve_image_size(cfg, data)
    channels = data.spec.channels
    meta = {
        "dataset": data.name,
        "ratio": data.info.get("ratio"),
        "data_identity": data_identity(data),
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "image_size": size,
        "channels": channels,
        "config": cfg.to_dict(),
        "version": __version__,
    }
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if {k: v for k, v in old.items() if k != "version"} != {k: v for k, v in json.loads(json.dumps(meta)).items() if k != "version"}:
            raise RunError(f"{cfg_path}: this directory holds a diffusion run with another configuration; choose another --out")
    else:
        write_json_atomic(cfg_path, meta)

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    unet = build_unet(cfg.preset, data.num_classes, channels, size).to(device)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    noise_sched = training_scheduler(cfg.schedule, cfg.prediction, cfg.timesteps, cfg.beta_start, cfg.beta_end)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = run_dir / "train_state.safetensors"
    step, elapsed = 0, 0.0
    order, cursor = torch.randperm(len(data.split("train")), generator=gen), 0
    if ckpt.exists():
        if not resume:
            raise RunError(f"{ckpt}: an unfinished diffusion run exists here; pass --resume or choose another --out")
        st = load_state(ckpt)
        unet.load_state_dict(st["unet"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        lr_sched.load_state_dict(st["lr_sched"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        step, elapsed = st["step"], st["elapsed"]
        order, cursor = st["order"], st["cursor"]

    train = data.split("train").with_spec(ImageSpec(size, channels, (0.5,) * channels, (0.5,) * channels))
    alphas = noise_sched.alphas_cumprod.to(device)
    null = data.num_classes
    log_path = run_dir / "train_log.jsonl"
    bar = tqdm(total=cfg.max_steps, initial=step, desc="diffusion", unit="step", disable=quiet)
    unet.train()
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(train), generator=gen), 0
        idx = order[cursor : cursor + cfg.batch_size]
        cursor += cfg.batch_size
        x0, y, _, _ = train.batch(idx)
        x0, y = x0.to(device), y.to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, cfg.timesteps, (len(y),), generator=gen).to(device)
        drop = (torch.rand(len(y), generator=gen) < cfg.p_uncond).to(device)
        y = torch.where(drop, torch.full_like(y, null), y)
        xt = noise_sched.add_noise(x0, noise, t)
        target = noise if cfg.prediction == "epsilon" else _velocity(alphas, x0, noise, t)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            pred = unet(xt, t, class_labels=y).sample
        loss = F.mse_loss(pred.float(), target)
        if not torch.isfinite(loss):
            raise RunError(f"diffusion step {step + 1}: the loss became {float(loss.detach())}; the last good checkpoint is {ckpt} (lower --set lr=...)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        step += 1
        elapsed += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{step * cfg.batch_size / max(elapsed, 1e-9):.0f}", refresh=False)
        if step % 50 == 0 or step == cfg.max_steps:
            append_jsonl(log_path, {"step": step, "loss": float(loss.detach()), "elapsed_s": round(elapsed, 3), "lr": lr_sched.get_last_lr()[0]})
        if step in cfg.snapshot_steps:
            _save_ema(unet, ema, run_dir / "snapshots" / f"step{step}")
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            save_state(ckpt, {
                "unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "lr_sched": lr_sched.state_dict(), "gen": gen.get_state(), "rng": torch.get_rng_state(),
                "step": step, "elapsed": elapsed, "order": order, "cursor": cursor,
            })  # fmt: skip
    bar.close()
    _save_ema(unet, ema, run_dir / "unet_ema")
    write_json_atomic(run_dir / "train_summary.json", {"steps": step, "wall_time_s": round(elapsed, 3), "img_per_s": round(step * cfg.batch_size / max(elapsed, 1e-9), 2), "device": str(device)})
    (run_dir / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return run_dir


def _velocity(alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a_t) * eps - sqrt(1 - a_t) * x0 (Salimans & Ho), as diffusers' get_velocity."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def _save_ema(unet: UNet2DModel, ema: EMAModel, path: Path) -> None:
    """Write the EMA weights with save_pretrained into `path`, atomically (tmp dir + rename)."""
    backup = [p.detach().clone() for p in unet.parameters()]
    ema.copy_to(unet.parameters())
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp, safe_serialization=True)
    with torch.no_grad():
        for p, b in zip(unet.parameters(), backup):
            p.copy_(b)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)

