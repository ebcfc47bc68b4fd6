"""Diffusion training speed with each GPU setting against fp32 eager, side by side in one run.

Each variant trains the project's own loop (`train_diffusion`) from scratch on the same data for
`--warmup + --steps` steps; img/s is measured over the last `--steps` steps only, from the loop's
own per-step timer (train_log.jsonl), so torch.compile's compilation and cuDNN's autotuning in the
warm-up are not counted. Variants (DiffusionConfig settings):

    fp32 eager        amp=false channels_last=false compile=false   (the reference)
    bf16              amp=true
    bf16 + cl         amp=true  channels_last=true
    bf16 + cl + comp  amp=true  channels_last=true  compile=true

    python benchmarks/bench_gpu.py                                   # paper UNet, 64 px, batch 128, CUDA
    python benchmarks/bench_gpu.py --preset cpu-tiny --size 28 --batch 32 --device cpu --warmup 50 --steps 50
    accelerate launch --num_processes 8 benchmarks/bench_gpu.py     # per-GPU figures under DDP (main prints)

Synthetic-free: the data is Colored Fashion-MNIST (Debian's package) resized to `--size`.
On a CPU the bf16 and channels-last settings are ignored by design (the loop enables them on CUDA
only), so only compile differs there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from diffdebias.data import load_dataset
from diffdebias.distributed import current
from diffdebias.diffusion.train import DiffusionConfig, train_diffusion

VARIANTS = {
    "fp32 eager": {"amp": False, "channels_last": False, "compile": False},
    "bf16": {"amp": True, "channels_last": False, "compile": False},
    "bf16 + channels_last": {"amp": True, "channels_last": True, "compile": False},
    "bf16 + channels_last + compile": {"amp": True, "channels_last": True, "compile": True},
}
LOG_EVERY = 50  # train_diffusion logs elapsed time every 50 steps


def measure(data, preset: str, size: int, batch: int, warmup: int, steps: int, device: str, settings: dict) -> float:
    """img/s of the last `steps` steps of a fresh run with `settings` (global batch, all processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if current().active:  # one folder for all processes: the main process's
            out = Path(current().gather_object(str(out))[0])
        cfg = DiffusionConfig(preset=preset, image_size=size, batch_size=batch, max_steps=warmup + steps, warmup_steps=10,
                              checkpoint_every=10**9, device=device, **settings)  # fmt: skip
        train_diffusion(data, cfg, out, quiet=True)
        log = {}
        if current().is_main:
            log = {r["step"]: r["elapsed_s"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())}
        current().barrier()
        if not current().is_main:
            return 0.0
        return steps * batch / (log[warmup + steps] - log[warmup])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="colored_fmnist")
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--preset", default="paper", help="UNet preset: paper (DDB's reference UNet) or cpu-tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128, help="global batch (split over processes)")
    ap.add_argument("--warmup", type=int, default=100, help="steps not timed (a multiple of 50)")
    ap.add_argument("--steps", type=int, default=200, help="steps timed (a multiple of 50)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = ap.parse_args()
    if args.warmup % LOG_EVERY or args.steps % LOG_EVERY or args.warmup < LOG_EVERY:
        ap.error(f"--warmup and --steps must be multiples of {LOG_EVERY} (the loop's log interval), warmup >= {LOG_EVERY}")
    data = load_dataset(args.dataset, ratio=args.ratio)
    dist = current()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    rows = []
    for name, settings in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        rows.append((name, measure(data, args.preset, args.size, args.batch, args.warmup, args.steps, args.device, settings)))
        if dist.is_main:
            print(f"{name:<32} {rows[-1][1]:9.1f} img/s", flush=True)
    if not dist.is_main:
        return
    ref = dict(rows).get("fp32 eager")
    print(f"\n{args.preset} UNet, {args.size} px, global batch {args.batch}, {dist.size} process(es), {gpu}, torch {torch.__version__}")
    print("| setting | img/s | vs fp32 eager |\n|---|---|---|")
    for name, ips in rows:
        print(f"| {name} | {ips:.1f} | {'%.2fx' % (ips / ref) if ref else '-'} |")


if __name__ == "__main__":
    main()
