"""How confident are a DDB run's Bias Amplifier's errors? Calibration and a confidence threshold.

A BA that amplifies a bias should be confidently wrong on the bias-conflicting samples; errors
from the domain gap between synthetic and real images should be unconfident. For each DDB run
directory given (its config.json), the run's BA is rebuilt from the cache (the grid's own, when run
in the session that made it; trained again otherwise) and on the real training split, for each
threshold tau, pseudo-conflicting = misclassified with top-class probability >= tau: how many are
flagged, and their precision and recall against the true bias-conflicting samples (bias labels for
this evaluation only). The BA's calibration (ECE, 15 bins) and its error rate on the real
validation split use class labels only; precision and recall are the run's own BA diagnostics
(inference/bias_amplifier.py) applied to each thresholded set.

    python benchmarks/ba_confidence.py runs/bench/cpu/colored_fmnist_r1/ddb/seed2 ... [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from diffdebias.data.base import BiasedDataset
from diffdebias.data.registry import load_dataset
from diffdebias.engine.loop import Engine
from diffdebias.engine.metrics import ECE_BINS
from diffdebias.inference.bias_amplifier import diagnostics, infer_groups
from diffdebias.runtime import resolve_device
from diffdebias.stages.bias_amplifier import ba_training_data, choose_ba_augment, train_bias_amplifier

TAUS = (0.0, 0.5, 0.7, 0.9, 0.95, 0.99)


@dataclass
class RunBA:
    """A DDB run's data, an engine on a scratch folder, its BA's training images and its BA."""

    cfg: dict
    hp: dict
    data: BiasedDataset
    engine: Engine
    ba_data: BiasedDataset
    augment: tuple[float, float]
    model: torch.nn.Module


@contextmanager
def run_ba(run_dir: Path) -> Iterator[RunBA]:
    """The BA of the DDB run in `run_dir` (its config.json), rebuilt as the run's own BA stage: from
    the cache, trained again when the cache lacks it."""
    cfg = json.loads((run_dir / "config.json").read_text())
    hp = cfg["hparams"]
    data = load_dataset(cfg["dataset"], root=cfg["root"], ratio=cfg["ratio"], **cfg["data_options"])
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(data, Path(tmp), cfg["seed"], resolve_device(hp["device"]), quiet=True)
        ba_data = ba_training_data(engine, hp, hp["ba_source"])
        augment, model = choose_ba_augment(engine, hp, ba_data)
        model = model or train_bias_amplifier(engine, hp, hp["ba_source"], ba_data, augment)
        yield RunBA(cfg, hp, data, engine, ba_data, augment, model)


def confidence_table(run_dir: Path) -> dict:
    with run_ba(run_dir) as r:
        cfg, hp, data, engine, model = r.cfg, r.hp, r.data, r.engine, r.model
        train, val = data.split("train"), data.split("val")
        logits = {s.name: engine.logits(model, s, hp["eval_batch_size"]).float() for s in (train, val)}
    inferred = infer_groups(logits["train"], train.y)  # pseudo-conflicting = misclassified (tau 0)
    pmax = torch.softmax(logits["train"], 1).max(1).values
    rows = []
    for tau in TAUS:
        d = diagnostics(replace(inferred, conflicting=inferred.conflicting & (pmax >= tau)), train, data.aligned_bias())
        rows.append({"tau": tau, "flagged": d.num_flagged, "precision": d.precision, "recall": d.recall})
    vp = torch.softmax(logits["val"], 1)
    ece = float(multiclass_calibration_error(vp, val.y, vp.shape[1], n_bins=ECE_BINS, norm="l1"))
    val_wrong = vp.argmax(1) != val.y
    confident = {tau: round(100 * float((vp.max(1).values[val_wrong] >= tau).float().mean()), 2) for tau in TAUS[1:]}
    return {"run": str(run_dir), "dataset": cfg["dataset"], "ratio": cfg["ratio"], "seed": cfg["seed"], "true_conflicting": d.num_conflicting,
            "by_tau": rows, "val_ece": round(100 * ece, 2), "val_error": round(100 * float(val_wrong.float().mean()), 2),
            "val_errors_confident_at": confident}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="DDB run directories (config.json)")
    ap.add_argument("--json", type=Path, default=None, help="also write every table here")
    args = ap.parse_args()
    out = []
    for run in args.runs:
        t = confidence_table(run)
        out.append(t)
        label = f"{t['dataset']} ratio {t['ratio']} seed {t['seed']}"
        print(f"\n{label}: {t['true_conflicting']} truly conflicting; BA on real val: error {t['val_error']}%, ECE {t['val_ece']}%, "
              f"errors with p_max >= tau: {t['val_errors_confident_at']}")  # fmt: skip
        print("| tau | flagged | precision | recall |\n|---|---|---|---|")
        for r in t["by_tau"]:
            print(f"| {r['tau']:g} | {r['flagged']} | {r['precision']:.1f} | {r['recall']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(f"\nmean over runs, precision / recall by tau: "
          + ", ".join(f"{tau:g}: {np.mean([t['by_tau'][i]['precision'] for t in out]):.1f} / {np.mean([t['by_tau'][i]['recall'] for t in out]):.1f}"
                      for i, tau in enumerate(TAUS)))  # fmt: skip


if __name__ == "__main__":
    main()
