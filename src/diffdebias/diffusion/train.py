"""Training a class-conditional diffusion model on a biased training split.

Settings live in :class:`DiffusionConfig` (one place, with defaults); `DiffusionConfig.resolve`
picks the preset by device and image size (presets.py). The loop checkpoints its whole state
(UNet, EMA, optimiser, schedule, random generators) every `checkpoint_every` steps into one
safetensors file, so `resume` continues exactly; the EMA UNet is saved with diffusers'
`save_pretrained` (safetensors) in `unet_ema/`, and optional snapshots in `snapshots/stepN/`.
Before training starts, a measured estimate of its duration is printed and recorded (estimate.py).
A variant objective (DDM) runs in the same loop through a :class:`LossHook`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm import tqdm

from .. import tracking
from .._version import __version__
from ..data.base import BiasedDataset, ImageSpec, Split
from ..data.injected import IDENTITY_NEUTRAL_OPTIONS
from ..distributed import current
from ..runtime import all_finite, channels_last_input, resolve_device, seed_everything, speed_settings
from ..errors import RunError
from ..config import Settings
from ..io import append_jsonl, build_lock, check_output_dir, file_digest, remove_stale_temps, write_failure, write_json_atomic, write_text_atomic
from ..paths import cache_home
from ..state import load_state, save_state
from .estimate import check_budget, describe, make_estimate, read_estimate, seconds_per_step, write_estimate
from .models import build_unet, check_image_size
from .presets import AUTO, MAX_AUTO_SIZE, resolved_settings
from .schedulers import training_scheduler

DONE = "COMPLETE"
# settings that do not change what is trained: left out of the cache key and of the resume check
SPEED_SETTINGS = ("device", "channels_last", "compile")
GUARD_SETTINGS = ("max_cpu_hours", "allow_long")
NOT_IDENTITY = (*SPEED_SETTINGS, *GUARD_SETTINGS, "checkpoint_every", "snapshot_steps")


@dataclass
class DiffusionConfig(Settings):
    """Every diffusion-training setting with its default (the cpu-tiny preset's: METHODS.md s. 7).
    `from_overrides` (config.Settings) leaves preset=auto as given: `resolve` or training resolves it."""

    what: ClassVar[str] = "diffusion setting"

    preset: str = AUTO  # auto (cpu-tiny on a CPU, paper on a GPU) | cpu-tiny | paper
    image_size: int = 0  # 0: the images' own size, at most 64 px (presets.py)
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
    amp: bool = True  # bf16 autocast, CUDA only (ignored on CPU, where bf16 slows small batches)
    channels_last: bool = False  # channels-last memory format, CUDA only: 0.71x bf16 alone on an H200 (BENCHMARKS.md)
    compile: bool = False  # torch.compile of the UNet (the first steps compile)
    max_cpu_hours: float = 2.0  # a CPU run estimated longer stops before training (estimate.py)
    allow_long: bool = False  # train even when the estimate is over max_cpu_hours

    @classmethod
    def resolve(cls, data: BiasedDataset | ImageSpec, overrides: dict[str, Any] | None = None, device: str | torch.device | None = None) -> Self:
        """The settings for training on `data`'s images on `device` (default: the `device` setting,
        "auto" meaning CUDA when available): the preset's, then `overrides`.

        preset=auto (the default) takes cpu-tiny with its CPU budget on a CPU and DDB's reference
        settings (`paper`) on a GPU; an explicit preset is kept on any device. Without image_size,
        images of at most 64 px keep their size and larger ones (e.g. 224 px) are trained at 64 px,
        on a CPU too (cpu-tiny at 64 px: about 5x the cost of 28 px); the duration estimate before
        training guards the rest. A size the preset's UNet cannot take is a ConfigError naming
        image_size.
        """
        spec = data.spec if isinstance(data, BiasedDataset) else data
        cfg = cls.from_overrides(resolved_settings(spec.size, dict(overrides or {}), device))
        resolve_image_size(cfg, spec)
        return cfg

    def changed(self) -> dict[str, Any]:
        """The settings that differ from the defaults."""
        default = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != default[k]}


def resolve_image_size(cfg: DiffusionConfig, data: BiasedDataset | ImageSpec) -> int:
    """The side of the images the generator trains on: image_size, or the data's own (at most 64 px)."""
    spec = data.spec if isinstance(data, BiasedDataset) else data
    size = cfg.image_size or min(spec.size, MAX_AUTO_SIZE)
    check_image_size(cfg.preset, size)
    return size


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


def train_identity(data: BiasedDataset, cfg: DiffusionConfig, **identified_by: Any) -> str:
    """THE identity of a generator (plain or DDM): hash of (training data, configuration), where a
    matching trained one is cached. `identified_by` replaces a setting's value by what identifies
    it (DDM's `init` run by its weights' digest)."""
    cfg_d = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IDENTITY} | identified_by
    return hashlib.sha256(json.dumps({"data": data_identity(data), "cfg": cfg_d}, sort_keys=True).encode()).hexdigest()[:20]


def default_diffusion_dir(data: BiasedDataset, cfg: DiffusionConfig) -> Path:
    return cache_home() / "diffusion" / f"{data.name}-{train_identity(data, cfg)}"


def is_trained(run_dir: Path) -> bool:
    """Finished, and the exported EMA weights still match the digest recorded when they were written."""
    run_dir = Path(run_dir)
    if not (run_dir / DONE).exists():
        return False
    try:
        recorded = json.loads((run_dir / "train_summary.json").read_text())["unet_ema_digest"]
        return recorded == _ema_digest(run_dir / "unet_ema")
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return False


def _ema_digest(folder: Path) -> str:
    files = sorted(folder.glob("*.safetensors")) + [folder / "config.json"]
    return file_digest(*files)


def load_unet(run_dir: Path, snapshot: int | None = None) -> UNet2DModel:
    """The EMA UNet of a finished run (or one of its snapshots), from safetensors only (never a pickle)."""
    path = Path(run_dir) / ("unet_ema" if snapshot is None else f"snapshots/step{snapshot}")
    if not path.is_dir():
        raise RunError(f"{path}: no trained diffusion model here; run `diffdebias diffusion train` first")
    try:
        return UNet2DModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a missing / damaged file of the user's folder
        raise RunError(f"{path}: cannot load the UNet ({type(exc).__name__}: {exc}); it needs config.json and "
                       "diffusion_pytorch_model.safetensors: train it again") from None


class Step(NamedTuple):
    """One training step's tensors, as a LossHook sees them."""

    pred: torch.Tensor  # the denoiser's output (float32)
    target: torch.Tensor  # what it should predict (noise or velocity)
    xt: torch.Tensor
    t: torch.Tensor
    idx: torch.Tensor  # this process's training-set indices
    alphas: torch.Tensor  # alphas_cumprod, on the device
    modules: dict[str, nn.Module]  # the hook's modules as the step runs them (DDP-wrapped when launched)


class Parts(NamedTuple):
    """What a LossHook's `setup` hands the loop."""

    unet: UNet2DModel
    modules: dict[str, nn.Module] = {}  # extra trainable modules: in the same AdamW, checkpointed
    weights: torch.Tensor | None = None  # per-sample sampling weights (None: shuffled epochs)


class LossHook:
    """The diffusion objective (MSE on the target) and what a variant overrides to run in the same
    loop (DDM: ddm/train.py): the cache folder, the models, the loss and the files written at the end."""

    kind = "diffusion"  # names the run in messages, the progress bar and the build lock
    meta: dict[str, Any] = {}  # extra config.json fields
    log_every = 50  # steps between train_log.jsonl lines

    def cache_dir(self, data: BiasedDataset, cfg: DiffusionConfig) -> Path:
        return default_diffusion_dir(data, cfg)

    def setup(self, data: BiasedDataset, cfg: DiffusionConfig, size: int, run_dir: Path, write: bool) -> Parts:
        """The models (built after seeding; `write`: this process writes run files)."""
        return Parts(build_unet(cfg.preset, data.num_classes, data.spec.channels, size))

    def loss(self, s: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and detached statistics to log next to it."""
        return F.mse_loss(s.pred, s.target), {}

    def finish(self, run_dir: Path, modules: dict[str, nn.Module]) -> dict[str, Any]:
        """Write the extra files of a finished run; returns extra train_summary.json fields."""
        return {}


def train_diffusion(
    data: BiasedDataset,
    cfg: DiffusionConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = True,
    quiet: bool = False,
    hook: LossHook | None = None,
) -> Path:
    """Train (or resume, or reuse) a class-conditional diffusion model; returns its run directory.
    `hook` changes the objective (default: the diffusion MSE). A config with preset=auto is
    resolved here, its settings that differ from the defaults acting as overrides."""
    hook = hook or LossHook()
    if cfg.preset == AUTO:
        cfg = type(cfg).resolve(data, cfg.changed())
    cached = run_dir is None
    run_dir = Path(run_dir) if run_dir is not None else hook.cache_dir(data, cfg)
    dist = current()
    if is_trained(run_dir):
        return run_dir
    with build_lock(run_dir, f"{hook.kind} training", dist.size):  # another process building it: wait, then reuse it
        if is_trained(run_dir):
            return run_dir
        dist.barrier()  # every process has looked before the main one touches the folder
        if (run_dir / DONE).exists() and dist.is_main:  # finished, but its exported weights fail to verify: export them again
            (run_dir / DONE).unlink()
        check_output_dir(run_dir)
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
            **hook.meta,
        }
        if dist.is_main:
            check_run_config(run_dir, meta, hook.kind)

        device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        unet, modules, weights = hook.setup(data, cfg, size, run_dir, dist.is_main)
        unet = unet.to(device)
        modules = {k: m.to(device) for k, m in modules.items()}
        params = [p for m in (unet, *modules.values()) for p in m.parameters()]  # what AdamW and gradient clipping see, listed once
        ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
        noise_sched = training_scheduler(cfg.schedule, cfg.prediction, cfg.timesteps, cfg.beta_start, cfg.beta_end)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.max_steps)
        stateful = {"unet": unet, **modules, "ema": ema, "opt": opt, "lr_sched": lr_sched}  # what a checkpoint holds
        gen = torch.Generator().manual_seed(cfg.seed)
        ckpt = run_dir / "train_state.safetensors"
        step, elapsed = 0, 0.0
        order, cursor = torch.randperm(len(data.split("train")), generator=gen), 0
        check_output_dir(run_dir, _expected_bytes(params, cfg))
        if ckpt.exists():
            if not resume:
                raise RunError(f"{ckpt}: an unfinished {hook.kind} run exists here; pass --resume or choose another --out")
            try:
                st = load_state(ckpt)
            except RunError as exc:
                if not cached:
                    raise
                print(f"warning: {exc}; training this cached generator again", flush=True)  # rebuilt, never used
                dist.barrier()
                if dist.is_main:
                    ckpt.unlink()
                st = None
            if st is not None:
                restore_state(st, stateful, gen)
                step, elapsed, order, cursor = st["step"], st["elapsed"], st["order"], st["cursor"]
        if dist.is_main:
            remove_stale_temps(run_dir)  # left by an interrupted write
            _truncate_log(run_dir / "train_log.jsonl", step)  # lines logged after the checkpoint we restart from

        train = data.split("train").with_spec(ImageSpec(size, channels, (0.5,) * channels, (0.5,) * channels))
        alphas = noise_sched.alphas_cumprod.to(device)
        null = data.num_classes
        if step < cfg.max_steps:
            est = dist.gather_object(_estimate(hook, cfg, train, unet, modules, noise_sched, alphas, null, device, size, cfg.max_steps - step))[0]
            if dist.is_main:
                write_estimate(run_dir, est)
                if not quiet:
                    print(describe(est, hook.kind), flush=True)
            check_budget(est, cfg.max_cpu_hours, cfg.allow_long, hook.kind)
        log_path = run_dir / "train_log.jsonl"
        bar = tqdm(total=cfg.max_steps, initial=step, desc=hook.kind, unit="step", disable=quiet or not dist.is_main)
        for m in (unet, *modules.values()):
            m.train()
        cl = speed_settings([unet], device, channels_last=cfg.channels_last, compile=cfg.compile)
        model = dist.wrap(unet)  # DDP under several processes: each takes its block of the global batch
        wrapped = {k: dist.wrap(m) for k, m in modules.items()}
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
            loss, stats = _batch_loss(hook, model, wrapped, cfg, train, local, len(idx), noise_sched, alphas, null, gen, device, cl)
            if not torch.isfinite(loss):
                raise RunError(f"{hook.kind} step {step + 1}: the loss became {float(loss.detach())}; {_numerical_advice(ckpt)}")
            optimiser_step(dist.weighted(loss, len(local), len(idx)), params, opt, lr_sched, ema, unet, cfg.grad_clip)
            step += 1
            elapsed += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", img_s=f"{step * cfg.batch_size / max(elapsed, 1e-9):.0f}", refresh=False)
            if step % hook.log_every == 0 or step == cfg.max_steps:
                logged = dist.batch_mean({"loss": loss.detach(), **stats}, len(local), len(idx))
                if dist.is_main:
                    scalars = {**{k: float(v) for k, v in logged.items()}, "lr": lr_sched.get_last_lr()[0]}
                    append_jsonl(log_path, {"step": step, **scalars, "elapsed_s": round(elapsed, 3)})
                    tracking.log_scalars(scalars, step, prefix=hook.kind.lower())
            if step in cfg.snapshot_steps and dist.is_main:
                _save_ema(unet, ema, run_dir / "snapshots" / f"step{step}")
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                if not all_finite(params):
                    raise RunError(f"{hook.kind} step {step}: the model holds non-finite weights; {_numerical_advice(ckpt)}")
                if dist.is_main:
                    save_state(ckpt, checkpoint_state(stateful, gen, step=step, elapsed=elapsed, order=order, cursor=cursor))
        bar.close()
        if dist.is_main:
            summary = {"steps": step, "wall_time_s": round(elapsed, 3), "img_per_s": round(step * cfg.batch_size / max(elapsed, 1e-9), 2),
                       "device": str(device), "processes": dist.size, **hook.finish(run_dir, modules), "estimate": read_estimate(run_dir)}  # fmt: skip
            finish_run(run_dir, unet, ema, summary)
        dist.barrier()  # the exported model exists before any process samples from it
        return run_dir


def _estimate(hook: LossHook, cfg: DiffusionConfig, train: Split, unet: UNet2DModel, modules: dict[str, nn.Module], noise_sched: Any,
              alphas: torch.Tensor, null: int, device: torch.device, size: int, steps: int) -> dict[str, Any]:  # fmt: skip
    """The measured duration of `steps` training steps: optimiser steps of throw-away copies of the
    models (no DDP, no compilation), drawing from their own generator (estimate.py)."""
    dist = current()
    unet_c, modules_c = copy.deepcopy(unet), {k: copy.deepcopy(m) for k, m in modules.items()}
    params = [p for m in (unet_c, *modules_c.values()) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.max_steps)
    ema = EMAModel(unet_c.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    cl = speed_settings([unet_c], device, channels_last=cfg.channels_last, compile=False)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = min(cfg.batch_size, len(train))
    local = dist.block(torch.arange(n))

    def one_step() -> None:
        loss, _ = _batch_loss(hook, unet_c, modules_c, cfg, train, local, n, noise_sched, alphas, null, gen, device, cl)
        optimiser_step(loss, params, opt, lr_sched, ema, unet_c, cfg.grad_clip)

    s_per_step, timed = seconds_per_step(one_step, device)
    return make_estimate(s_per_step, timed, steps, device, cfg.preset, size, cfg.batch_size)


def _batch_loss(hook: LossHook, model: nn.Module, modules: dict[str, nn.Module], cfg: DiffusionConfig, train: Split, local: torch.Tensor,
                total: int, noise_sched: Any, alphas: torch.Tensor, null: int, gen: torch.Generator, device: torch.device,
                cl: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """The hook's loss on this process's block `local` of a global batch of `total` samples: noise,
    timesteps and label drops from `gen` (noisy_batch), the denoiser's forward pass, the objective."""
    x0, y, _, _ = train.batch(local)
    xt, t, y, target = noisy_batch(x0.to(device), y.to(device), cfg, noise_sched, alphas, null, gen, total, current().block_slice(total))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        pred = model(channels_last_input(xt, cl), t, class_labels=y).sample
    return hook.loss(Step(pred.float(), target, xt, t, local, alphas, modules))


def _expected_bytes(params: list[nn.Parameter], cfg: DiffusionConfig) -> int:
    """The checkpoint (models, EMA, two AdamW moments) twice while it is replaced, EMA exports, a margin."""
    weights = sum(p.numel() * p.element_size() for p in params)
    return weights * (8 + 2 * (1 + len(cfg.snapshot_steps))) + 16 * 2**20


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines written after the checkpoint a resumed run restarts from."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and _log_step(ln) <= step]
        write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut by the interruption
        return 1 << 62


def _numerical_advice(ckpt: Path) -> str:
    last = f"the last good checkpoint {ckpt} is intact" if ckpt.exists() else "no checkpoint was written yet"
    return f"{last}. A non-finite value usually means too high a learning rate: train again into another --out with a lower --set lr=..."


def check_run_config(run_dir: Path, meta: dict, kind: str) -> None:
    """Write `meta` as the run's config.json, or refuse a directory that holds another configuration."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        write_json_atomic(cfg_path, meta)
        return
    try:
        old = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{cfg_path}: damaged ({exc}); choose another --out") from None
    def comparable(m: dict) -> dict:
        out = {k: v for k, v in m.items() if k != "version"}
        if isinstance(out.get("config"), dict):
            out["config"] = {k: v for k, v in out["config"].items() if k not in (*SPEED_SETTINGS, *GUARD_SETTINGS)}
        return out

    if comparable(old) != comparable(json.loads(json.dumps(meta))):
        raise RunError(f"{cfg_path}: this directory holds a {kind} run with another configuration; choose another --out")


def noisy_batch(x0: torch.Tensor, y: torch.Tensor, cfg, noise_sched, alphas: torch.Tensor, null: int, gen: torch.Generator,
                total: int | None = None, rows: slice = slice(None)):  # fmt: skip
    """One training batch of the denoiser: (x_t, t, labels with p_uncond of them nulled, target).
    Noise, timesteps and label drops are drawn from `gen` on the CPU, in that order (resumable),
    for a global batch of `total` samples of which this process holds `rows` (distributed.py)."""
    device = x0.device
    total = len(y) if total is None else total
    noise = torch.randn((total, *x0.shape[1:]), generator=gen)[rows].to(device)
    t = torch.randint(0, cfg.timesteps, (total,), generator=gen)[rows].to(device)
    drop = (torch.rand(total, generator=gen) < cfg.p_uncond)[rows].to(device)
    y = torch.where(drop, torch.full_like(y, null), y)
    xt = noise_sched.add_noise(x0, noise, t)
    target = noise if cfg.prediction == "epsilon" else _velocity(alphas, x0, noise, t)
    return xt, t, y, target


def _velocity(alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a_t) * eps - sqrt(1 - a_t) * x0 (Salimans & Ho), as diffusers' get_velocity."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def checkpoint_state(parts: dict[str, Any], gen: torch.Generator, **progress: Any) -> dict[str, Any]:
    """What a training loop checkpoints: the state of each of `parts` (models, EMA, optimiser,
    schedule), both random generators and the loop's `progress` (step, data order, ...)."""
    return {**{name: part.state_dict() for name, part in parts.items()}, "gen": gen.get_state(), "rng": torch.get_rng_state(), **progress}


def restore_state(state: dict[str, Any], parts: dict[str, Any], gen: torch.Generator) -> None:
    """Load a `checkpoint_state` back into `parts` and the random generators."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["rng"])


def optimiser_step(loss: torch.Tensor, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, lr_sched: Any, ema: EMAModel, unet: UNet2DModel, grad_clip: float) -> None:
    """One update: back-propagate `loss`, clip the gradient norm of `params` (when `grad_clip` > 0),
    step the optimiser and the learning-rate schedule, then move the EMA of `unet`."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    lr_sched.step()
    ema.step(unet.parameters())


def finish_run(run_dir: Path, unet: UNet2DModel, ema: EMAModel, summary: dict[str, Any]) -> None:
    """Export the EMA UNet to `unet_ema/`, write `train_summary.json` (with the export's digest)
    and then the COMPLETE marker, each atomically."""
    _save_ema(unet, ema, run_dir / "unet_ema")
    mark_finished(run_dir, summary)


def mark_finished(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write `train_summary.json` with the digest of the `unet_ema/` already written, then the
    COMPLETE marker, each atomically (finish_run; an imported generator: diffusion/export.py)."""
    write_json_atomic(run_dir / "train_summary.json", {**summary, "unet_ema_digest": _ema_digest(run_dir / "unet_ema")})
    write_text_atomic(run_dir / DONE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


def _save_ema(unet: UNet2DModel, ema: EMAModel, path: Path) -> None:
    """Write the EMA weights with save_pretrained into `path`, atomically (tmp dir + rename)."""
    backup = [p.detach().clone() for p in unet.parameters()]
    ema.copy_to(unet.parameters())
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        unet.save_pretrained(tmp, safe_serialization=True)
    except Exception as exc:  # noqa: BLE001 - OSError, or safetensors' own error for I/O failures
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(path, exc) from exc
    finally:
        with torch.no_grad():
            for p, b in zip(unet.parameters(), backup):
                p.copy_(b)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)

