"""Does an ensemble of Bias Amplifiers rank the bias-conflicting samples better than one BA?

For each DDB run directory given (its config.json), the run's BA is rebuilt as in ba_confidence.py,
and next to it two ensembles, each scoring a sample by the cross-entropy of the members' mean
probability (pseudo-conflicting: misclassified by that mean):
- `augment`: the BAs that `ba_augment=auto` trains, one per augmentation level (already in the
  cache when the run's own session made it), of which the run keeps one (the row marked "the run's");
- `seeds`: the run's BA and `--seeds K` more at its augmentation level, with training seeds
  seed + 100 k (trained here, cached).
Reported for each: the AUROC of the score against the true bias-conflicting training samples, and
the precision and recall of the flagged set (bias labels for this evaluation only), and the
accuracy on the real validation split (class labels only: what a label-free choice could use).

    python benchmarks/ba_ensemble.py runs/bench/cpu/corrupted_fmnist_r0.5/ddb/seed2 ... [--seeds 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ba_confidence import run_ba
from diffdebias.engine.loop import Engine
from diffdebias.inference.bias_amplifier import diagnostics, infer_groups
from diffdebias.stages.bias_amplifier import BA_AUGMENT_GRID, train_bias_amplifier


def probabilities(engine: Engine, model: torch.nn.Module, split, batch_size: int) -> torch.Tensor:
    return torch.softmax(engine.logits(model, split, batch_size).float(), 1)


def augment_label(level: tuple[float, float]) -> str:
    """A member's name for the BA trained at augmentation `level` (zoom, rotation)."""
    return f"augment zoom {level[0]:g} rot {level[1]:g}"


def ensemble_rows(run_dir: Path, extra_seeds: int) -> dict:
    with run_ba(run_dir) as r:
        hp, source = r.hp, r.hp["ba_source"]
        train, val = r.data.split("train"), r.data.split("val")
        chosen = f"{augment_label(r.augment)} (the run's)"
        members: dict[str, torch.nn.Module] = {chosen: r.model}
        if hp["ba_augment"] == "auto":  # the other levels; the run's own BA is already loaded
            for level in BA_AUGMENT_GRID:
                if level != r.augment:
                    members[augment_label(level)] = train_bias_amplifier(r.engine, hp, source, r.ba_data, level)
        for k in range(1, extra_seeds + 1):
            with tempfile.TemporaryDirectory() as tmp:
                engine_k = Engine(r.data, Path(tmp), r.cfg["seed"] + 100 * k, r.engine.device, quiet=True)
                members[f"seed +{100 * k}"] = train_bias_amplifier(engine_k, hp, source, r.ba_data, r.augment)
        probs = {name: (probabilities(r.engine, m, train, hp["eval_batch_size"]), probabilities(r.engine, m, val, hp["eval_batch_size"]))
                 for name, m in members.items()}  # fmt: skip
    groups = {"augment": [n for n in probs if n.startswith("augment")], "seeds": [chosen] + [n for n in probs if n.startswith("seed")]}
    scored = dict(probs)
    for name, names in groups.items():
        if len(names) > 1:
            scored[f"ensemble: {name} ({len(names)})"] = tuple(torch.stack([probs[n][i] for n in names]).mean(0) for i in (0, 1))
    rows = []
    for name, (p_train, p_val) in scored.items():
        d = diagnostics(infer_groups(p_train.clamp_min(1e-12).log(), train.y), train, r.data.aligned_bias())
        rows.append({"ba": name, "auroc": d.auroc, "flagged": d.num_flagged, "precision": d.precision, "recall": d.recall,
                     "val_acc": round(100 * float((p_val.argmax(1) == val.y).float().mean()), 2)})  # fmt: skip
    cfg = r.cfg
    return {"run": str(run_dir), "dataset": cfg["dataset"], "ratio": cfg["ratio"], "seed": cfg["seed"], "augment": list(r.augment),
            "true_conflicting": d.num_conflicting, "rows": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="DDB run directories (config.json)")
    ap.add_argument("--seeds", type=int, default=4, help="BAs trained with other seeds for the seed ensemble")
    ap.add_argument("--json", type=Path, default=None, help="also write every table here")
    args = ap.parse_args()
    out = []
    for run in args.runs:
        t = ensemble_rows(run, args.seeds)
        out.append(t)
        print(f"\n{t['dataset']} ratio {t['ratio']} seed {t['seed']}: {t['true_conflicting']} truly conflicting; the run's BA: "
              f"augmentation zoom {t['augment'][0]:g}, rotation {t['augment'][1]:g}")  # fmt: skip
        print("| BA | AUROC | flagged | precision | recall | val acc |\n|---|---|---|---|---|---|")
        for row in t["rows"]:
            print(f"| {row['ba']} | {row['auroc']:.3f} | {row['flagged']} | {row['precision']:.1f} | {row['recall']:.1f} | {row['val_acc']:.2f} |")
        if args.json:  # after each run, so a long list keeps what it measured
            args.json.write_text(json.dumps(out, indent=1))
    names = [row["ba"] for row in out[0]["rows"]]
    print("\nmean over runs, AUROC / precision / recall: " + "; ".join(
        f"{n}: {np.mean([t['rows'][i]['auroc'] for t in out]):.3f} / {np.mean([t['rows'][i]['precision'] for t in out]):.1f} / "
        f"{np.mean([t['rows'][i]['recall'] for t in out]):.1f}" for i, n in enumerate(names)))  # fmt: skip


if __name__ == "__main__":
    main()
