"""How well the Bias Amplifier flags the real bias-conflicting training samples, per level of its
geometric augmentation, trained on the synthetic set and on the real training set (the paper's
ablation). Also the BA's accuracy on the real validation split, the label-free score that
`ba_augment=auto` selects by. Bias labels are read for the diagnostics only.

    python benchmarks/ba_augment_curve.py --out runs/ba_curve --seeds 0 [--sources synthetic,real]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffdebias.data.registry import load_dataset
from diffdebias.stages.bias_amplifier import BA_AUGMENT_GRID, ba_training_data, train_bias_amplifier
from diffdebias.engine.loop import Engine
from diffdebias.engine.metrics import majority_bias
from diffdebias.hparams import resolve_hparams
from diffdebias.inference.bias_amplifier import diagnostics, infer_groups
from diffdebias.runtime import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="colored_fmnist")
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--sources", default="synthetic,real")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = load_dataset(args.dataset, ratio=args.ratio)
    hp = resolve_hparams("ddb2", args.dataset)
    train, val = data.split("train"), data.split("val")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        engine = Engine(data, args.out / f"seed{seed}", seed, resolve_device(hp["device"]), quiet=True, resume=True)
        aligned = majority_bias(engine.train_counts)
        for source in args.sources.split(","):
            ba_data = ba_training_data(engine, hp, source)
            for zoom, rotate in BA_AUGMENT_GRID:
                model = train_bias_amplifier(engine, hp, source, ba_data, (zoom, rotate))
                inf = infer_groups(engine.logits(model, train), train.y)
                val_acc = 100 * float((engine.logits(model, val).argmax(1) == val.y).float().mean())
                d = diagnostics(inf, train, aligned)
                rows.append({"seed": seed, "source": source, "zoom": zoom, "rotate": rotate, "val_acc": round(val_acc, 2),
                             "auroc": d["auroc"], "precision": d["precision"], "recall": d["recall"], "wall_s": round(engine.stage_times[f"ba_{source}"], 1)})  # fmt: skip
                engine.stage_times.clear()
                print(json.dumps(rows[-1]), flush=True)
    print("| source | zoom | rotate | seeds | BA val acc | AUROC | precision | recall |\n|---|---|---|---|---|---|---|---|")
    for source in args.sources.split(","):
        for zoom, rotate in BA_AUGMENT_GRID:
            sel = [r for r in rows if r["source"] == source and r["zoom"] == zoom and r["rotate"] == rotate]
            mean = {k: sum(r[k] for r in sel) / len(sel) for k in ("val_acc", "auroc", "precision", "recall")}
            print(f"| {source} | {zoom:g} | {rotate:g} | {len(sel)} | {mean['val_acc']:.2f} | {mean['auroc']:.4f} | {mean['precision']:.1f} | {mean['recall']:.1f} |")
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
