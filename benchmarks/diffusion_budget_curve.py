"""Bias alignment and conditional accuracy of DDB's generator against training budget and w.

For each budget (minutes of CPU training, converted to optimiser steps with the measured CPU
throughput of the project's loop, `--cpu-img-per-s`), a separate cpu-tiny model is trained with
its own warm-up + cosine schedule over exactly those steps; then for each guidance weight w a
synthetic set is sampled and audited against judges trained on the real data. A sampler sweep
(DDIM / DPM-Solver++ at several step counts) runs on the models of `--sweep-budgets`.
The training can run on any device: the curve is a function of steps, and the CPU minutes are
steps x batch / CPU img/s. Prints a markdown table and writes curve.json under --out.

    python benchmarks/diffusion_budget_curve.py --budgets 5,10,20,40 --ws 0,0.5,1,2,3 --per-class 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffdebias.data import load_dataset
from diffdebias.audit import audit_synthetic, train_judges
from diffdebias.diffusion.synthetic import generate_synthetic
from diffdebias.diffusion.train import DiffusionConfig, train_diffusion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="colored_fmnist")
    ap.add_argument("--root", default=None)
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--budgets", default="5,10,20,40", help="CPU minutes")
    ap.add_argument("--cpu-img-per-s", type=float, required=True, help="measured training img/s of the project's loop on the CPU (benchmarks/bench_diffusion.py)")
    ap.add_argument("--ws", default="0,0.5,1,2,3")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sweep-budgets", default="", help="comma list of budgets whose models get the sampler sweep")
    ap.add_argument("--sweep", default="ddim:20,ddim:10,dpmpp:10,dpmpp:5")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], help="extra DiffusionConfig key=value")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    data = load_dataset(args.dataset, root=args.root, ratio=args.ratio)
    judges = train_judges(data)
    base = dict(s.split("=", 1) for s in args.set)
    rows = []
    for minutes in [float(b) for b in args.budgets.split(",")]:
        cfg = DiffusionConfig.from_overrides({**base, "device": args.device})
        cfg.max_steps = int(round(minutes * 60 * args.cpu_img_per_s / cfg.batch_size))
        t0 = time.perf_counter()
        run = train_diffusion(data, cfg, args.out / f"gen_{minutes:g}min", quiet=True)
        train_s = time.perf_counter() - t0
        plan = [(args.sampler, args.steps, float(w)) for w in args.ws.split(",")]
        if minutes in [float(b) for b in args.sweep_budgets.split(",") if b]:
            plan += [(s.split(":")[0], int(s.split(":")[1]), 1.0) for s in args.sweep.split(",")]
        for sampler, steps, w in dict.fromkeys(plan):
            t1 = time.perf_counter()
            folder = generate_synthetic(run, args.per_class, sampler=sampler, steps=steps, w=w, device=args.device, quiet=True,
                                        out=args.out / f"syn_{minutes:g}min_{sampler}{steps}_w{w:g}")  # fmt: skip
            sample_s = time.perf_counter() - t1
            report = audit_synthetic(load_dataset("synthetic", root=folder), data, judges)
            row = {"cpu_minutes": minutes, "steps": cfg.max_steps, "sampler": sampler, "sampler_steps": steps, "w": w,
                   "conditional_acc": report["conditional_acc"], "bias_alignment_rate": report["bias_alignment_rate"],
                   "train_wall_s": round(train_s, 1), "sample_wall_s": round(sample_s, 1),
                   "class_judge_test_acc": report["class_judge"]["real_test_acc"], "bias_judge_test_acc": report["bias_judge"]["real_test_acc"]}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1))
    print("\n| CPU minutes | steps | sampler | w | bias alignment % | conditional acc % |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cpu_minutes']:g} | {r['steps']} | {r['sampler']}-{r['sampler_steps']} | {r['w']:g} | {r['bias_alignment_rate']:.1f} | {r['conditional_acc']:.1f} |")


if __name__ == "__main__":
    main()
