"""Turn run directories into tables: mean +- std over seeds of every metric, per
(dataset, ratio, method, selection policy), with bias-label use shown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .engine.run import COMPLETE

TABLE_METRICS = ("unbiased_acc", "conflicting_acc", "aligned_acc", "avg_acc", "wga", "worst_class_acc")


def find_results(root: Path) -> list[dict]:
    """Every complete run's results.json under `root`."""
    rows = []
    for path in sorted(Path(root).rglob("results.json")):
        if (path.parent / COMPLETE).exists():
            r = json.loads(path.read_text())
            r["run_dir"] = str(path.parent)
            rows.append(r)
    return rows


def runs_frame(results: list[dict], split: str = "test", policy: str | None = None) -> pd.DataFrame:
    """One row per run: identity, bias-label use, wall time and the split's metrics.

    With `policy`, non-oracle runs are reported at the epoch that policy selects (from the run's
    `by_policy` record) instead of the run's own selection; oracle runs keep theirs.
    """
    rows = []
    for r in results:
        oracle = r["bias_labels_used"]["training"]
        chosen = r["by_policy"].get(policy) if policy and not oracle else None
        name = policy if chosen is not None else r["selection"]
        uses_val_b = chosen["uses_val_bias_labels"] if chosen is not None else r["bias_labels_used"]["selection"]
        metrics = (chosen or r)[split]
        row = {
            "dataset": r["dataset"],
            "ratio": r["ratio"],
            "method": r["method"] + (" (oracle)" if oracle else ""),
            "selection": name + (" (val bias labels)" if uses_val_b else ""),
            "seed": r["seed"],
            "wall_time_s": sum(r["wall_time_s"].values()),
        }
        row.update({m: metrics.get(m) for m in TABLE_METRICS})
        diag = r.get("notes", {}).get("ba_diagnostics", {})
        for source, d in diag.items():
            row[f"ba_auroc_{source}"] = d.get("auroc")
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """mean +- std over seeds, as strings, one row per (dataset, ratio, method, selection)."""
    keys = ["dataset", "ratio", "method", "selection"]
    metrics = [c for c in frame.columns if c not in keys + ["seed"]]
    out = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key))
        row["seeds"] = len(group)
        for m in metrics:
            vals = pd.to_numeric(group[m], errors="coerce").dropna()
            row[m] = _pm(vals) if len(vals) else "-"
        out.append(row)
    return pd.DataFrame(out)


def _pm(vals: pd.Series) -> str:
    mean = float(vals.mean())
    std = float(vals.std(ddof=0)) if len(vals) > 1 else 0.0
    digits = 3 if abs(mean) < 2 else 1 if mean > 100 else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not math.isnan(mean) else "-"


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)
