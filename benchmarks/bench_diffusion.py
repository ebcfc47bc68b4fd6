"""Diffusion engine speed on this machine, measured side by side in one run.

1. Training throughput of the cpu-tiny model on Colored Fashion-MNIST: the project's loop
   (`train_diffusion`) against a minimal plain diffusers loop written here (same UNet, noise
   schedule, v-prediction MSE, AdamW, EMA, batch), each for the same number of steps after a
   warm-up; prints img/s of both and the ratio (target >= 0.95).
2. Guided sampling throughput (w = 1) with DDIM 25 steps and DPM-Solver++ 10 steps.

    python benchmarks/bench_diffusion.py --steps 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel

from diffdebias.data import load_dataset
from diffdebias.diffusion.models import build_unet
from diffdebias.diffusion.pipeline import ClassConditionalPipeline
from diffdebias.diffusion.schedulers import sampling_scheduler, training_scheduler
from diffdebias.diffusion.train import DiffusionConfig, train_diffusion


def plain_loop(images: torch.Tensor, labels: torch.Tensor, steps: int, batch: int) -> float:
    """A minimal diffusers training loop; returns img/s."""
    torch.manual_seed(0)
    unet = build_unet("cpu-tiny", 10, 3, 28)
    sched = training_scheduler("cosine", "v_prediction")
    opt = torch.optim.AdamW(unet.parameters(), lr=8e-4, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    x_all = images.float() / 127.5 - 1
    t0 = None
    for step in range(steps + 20):
        if step == 20:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(x_all), (batch,))
        x0, y = x_all[idx], labels[idx]
        y = torch.where(torch.rand(batch) < 0.1, torch.full_like(y, 10), y)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        target = sched.get_velocity(x0, noise, t)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t, class_labels=y).sample, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
    return steps * batch / (time.perf_counter() - t0)


def project_loop(data, steps: int, batch: int) -> float:
    """The project's train_diffusion; img/s from its own timer over the last `steps` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DiffusionConfig(max_steps=20, batch_size=batch, checkpoint_every=10_000)
        train_diffusion(data, cfg, Path(tmp) / "warm", quiet=True)
        cfg = DiffusionConfig(max_steps=steps, batch_size=batch, checkpoint_every=10_000)
        t0 = time.perf_counter()
        train_diffusion(data, cfg, Path(tmp) / "run", quiet=True)
        elapsed = time.perf_counter() - t0
    return steps * batch / elapsed


def sampling(n: int, sampler: str, steps: int) -> float:
    unet = build_unet("cpu-tiny", 10, 3, 28).eval()
    pipe = ClassConditionalPipeline(unet, sampling_scheduler(sampler, training_scheduler("cosine", "v_prediction").config), 10)
    labels = torch.arange(n) % 10
    pipe(labels[:8], w=1.0, steps=steps, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    pipe(labels, w=1.0, steps=steps, generator=torch.Generator().manual_seed(0), batch_size=64)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = load_dataset("colored_fmnist", ratio=1.0)
    train = data.split("train")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu-tiny UNet, batch {args.batch}, {args.steps} timed steps")
    plain = plain_loop(train.images, train.y, args.steps, args.batch)
    ours = project_loop(data, args.steps, args.batch)
    print(f"training img/s: project loop {ours:.1f}, plain diffusers loop {plain:.1f}, ratio {ours / plain:.3f} (target >= 0.95)")
    for sampler, steps in (("ddim", 25), ("dpmpp", 10), ("dpmpp", 5)):
        print(f"guided sampling (w=1) {sampler} {steps} steps: {sampling(args.samples, sampler, steps):.1f} img/s")


if __name__ == "__main__":
    main()
