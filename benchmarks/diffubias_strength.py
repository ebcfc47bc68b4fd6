"""How strongly should the local-conditional generator noise a candidate? (DiffuBias, SDEdit strength)

Takes `--per-class` truly bias-conflicting training images per class (bias labels used for this
design measurement only), makes one SDEdit variant of each at every strength with the cached
class-conditional generator (the one DDB and DiffuBias use), and judges the variants with the
diffusion audit's real-data judges:
- keeps_colour: the bias judge gives the variant the source's true colour (the bias attribute);
- conflicting: the bias judge's colour is not the class's majority colour (what DiffuBias wants);
- class_acc: the class judge (colour-blind view) gives the variant its label;
- mean_abs_diff: mean absolute pixel change from the source (0-255): a variant, not a copy.

    DIFFDEBIAS_CACHE=/work/wt/cache PYTHONPATH=src python benchmarks/diffubias_strength.py --json benchmarks/results/diffubias_strength.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffdebias.data.base import TensorSplit
from diffdebias.data.registry import load_dataset
from diffdebias.audit import VIEWS, train_judges
from diffdebias.diffusion.train import DiffusionConfig, train_diffusion
from diffdebias.diffubias.generators import LocalConditionalGenerator, fit_to_spec
from diffdebias.engine.metrics import majority_bias
from diffdebias.runtime import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="colored_fmnist")
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--strengths", default="0.2,0.3,0.4,0.5,0.6,0.8,1.0")
    ap.add_argument("--sampler", default="dpmpp")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--w", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    data = load_dataset(args.dataset, ratio=args.ratio)
    train = data.split("train")
    aligned = torch.as_tensor(majority_bias(data.group_counts("train").to_numpy()[:, : data.num_bias]))
    conflicting = torch.nonzero(train.b != aligned[train.y]).flatten()
    gen = torch.Generator().manual_seed(args.seed)
    picks = torch.cat([c[torch.randperm(len(c), generator=gen)[: args.per_class]] for c in (conflicting[train.y[conflicting] == k] for k in range(data.num_classes))])
    sources = train.subset(picks)
    device = resolve_device("auto")
    run = train_diffusion(data, DiffusionConfig.resolve(data, {"seed": 0, "device": str(device)}), quiet=True)
    judges = train_judges(data)

    def judge(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        split = TensorSplit("v", images, sources.y, sources.b, data.spec)
        view = VIEWS[data.info["bias_invariant_view"]](split) if data.info.get("bias_invariant_view") else split
        return judges.label.predict(view), judges.bias.predict(split)

    y, b = sources.y.numpy(), sources.b.numpy()
    src_images = sources.images
    rows = []
    cls, bias = judge(src_images)
    rows.append({"strength": 0.0, "keeps_colour": 100 * float((bias == b).mean()), "conflicting": 100 * float((bias != aligned.numpy()[y]).mean()),
                 "class_acc": 100 * float((cls == y).mean()), "mean_abs_diff": 0.0, "seconds": 0.0})  # fmt: skip
    for s in [float(v) for v in args.strengths.split(",")]:
        g = LocalConditionalGenerator(run, device, strength=s, sampler=args.sampler, steps=args.steps, w=args.w)
        t0 = time.perf_counter()
        variants = fit_to_spec(g(sources, [None] * len(sources), seed=args.seed), data.spec)
        secs = time.perf_counter() - t0
        cls, bias = judge(variants)
        diff = float((variants.float() - src_images.float()).abs().mean())
        rows.append({"strength": s, "keeps_colour": 100 * float((bias == b).mean()), "conflicting": 100 * float((bias != aligned.numpy()[y]).mean()),
                     "class_acc": 100 * float((cls == y).mean()), "mean_abs_diff": diff, "seconds": secs})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print("\n| strength | SDEdit steps | keeps source colour % | bias-conflicting % | class judge acc % | mean abs pixel change | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        steps = 0 if r["strength"] == 0 else min(args.steps, max(1, round(args.steps * r["strength"])))
        print(f"| {r['strength']:g}{' (sources)' if r['strength'] == 0 else ''} | {steps} | {r['keeps_colour']:.1f} | {r['conflicting']:.1f} | "
              f"{r['class_acc']:.1f} | {r['mean_abs_diff']:.1f} | {r['seconds']:.0f} |")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "num_sources": len(sources), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
