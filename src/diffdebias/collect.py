"""Turn run directories into tables: mean +- std over seeds of every metric, per
(dataset, ratio, method, configured selection policy), with bias-label use shown."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .data.registry import get_entry
from .recipes import METHODS
from .records import RunResult
from .run import COMPLETE, read_result
from .errors import ConfigError

TABLE_METRICS = ("unbiased_acc", "conflicting_acc", "aligned_acc", "avg_acc", "wga", "worst_class_acc", "balanced_acc", "macro_f1", "ece")
SUMMARY_PIVOTS = ("unbiased_acc", "conflicting_acc")  # the methods x ratios tables of a benchmark's summary.md


def find_results(root: Path) -> list[RunResult]:
    """Every complete run's result under `root`."""
    return [read_result(path.parent) for path in sorted(Path(root).rglob("results.json")) if (path.parent / COMPLETE).exists()]


def runs_frame(results: list[RunResult], split: str = "test", policy: str | None = None) -> pd.DataFrame:
    """One row per run: identity, bias-label use, wall time and the split's metrics.

    With `policy`, non-oracle runs are reported at the epoch that policy selects (from the run's
    `by_policy` record) instead of the run's own selection; oracle runs keep theirs. `selection` is
    the policy that chose the run's epoch, `policy` the one it was configured with (the tables'
    grouping key): they differ where a run changed its own policy (`ddb`'s safeguard falls back
    to ERM's `last`), and such a run stays in its method's row.
    """
    rows = []
    for r in results:
        oracle = r.bias_labels_used.training
        chosen = r.by_policy.get(policy) if policy and not oracle else None
        name = policy if chosen is not None else r.selection
        uses_val_b = chosen["uses_val_bias_labels"] if chosen is not None else r.bias_labels_used.selection
        metrics = chosen[split] if chosen is not None else getattr(r, split)
        energy = r.energy.get("stages", {})
        row = {
            "dataset": dataset_label(r),
            "ratio": r.ratio,
            "method": r.method + (" (oracle)" if oracle else ""),
            "selection": name + (" (val bias labels)" if uses_val_b else ""),
            "policy": policy if chosen is not None else r.hparams.get("selection", r.selection),
            "bias_labels": bias_label_use(oracle, uses_val_b, r.bias_labels_used.defaults),
            "seed": r.seed,
            "wall_time_s": r.total_wall_time_s,
            "energy_wh": 1000 * sum(e["energy_kwh"] for e in energy.values()) if energy else None,
            "co2_g": 1000 * sum(e["co2_kg"] for e in energy.values()) if energy else None,
        }
        row.update({m: metrics.get(m) for m in TABLE_METRICS})
        for source, d in (r.notes.ba_diagnostics or {}).items():
            row[f"ba_auroc_{source}"] = d.auroc
        rows.append(row)
    return pd.DataFrame(rows)


def dataset_label(r: RunResult) -> str:
    """The dataset's name, with its non-default options (e.g. the no-bias control) appended; a data
    seed equal to the run's seed (a grid whose seed is also the split's) is the seed column, not a
    dataset option."""
    try:
        defaults = get_entry(r.dataset).options
    except ConfigError:  # a dataset no longer registered: show every option
        defaults = {}
    opts = r.data_options
    if opts.get("bias_mode") == "independent":
        return f"{r.dataset} (no-bias control)"
    extra = [f"{k}={v}" for k, v in sorted(opts.items()) if k in defaults and defaults[k] != v and k != "cache" and not (k == "seed" and v == r.seed)]
    return r.dataset + (f" ({', '.join(extra)})" if extra else "")


def bias_label_use(training: bool, selection: bool, defaults: list[str] | None = None) -> str:
    """Where true bias labels entered a run (evaluation aside), defaults chosen with them included."""
    used = (["training (oracle)"] if training else []) + (["val selection"] if selection else [])
    used += [f"defaults chosen with bias labels: {', '.join(defaults)}"] if defaults else []
    return " + ".join(used) or "none"


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """mean +- std over seeds, as strings, one row per (dataset, ratio, method, configured policy)."""
    keys = ["dataset", "ratio", "method", "policy", "bias_labels"]
    metrics = [c for c in frame.columns if c not in keys + ["seed", "selection"]]
    out = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key))
        row["ratio"] = "-" if row["ratio"] is None or (isinstance(row["ratio"], float) and math.isnan(row["ratio"])) else f"{row['ratio']:g}"
        row["selection"] = selections_label(group["selection"])
        del row["policy"]
        row["seeds"] = len(group)
        for m in metrics:
            vals = pd.to_numeric(group[m], errors="coerce").dropna()
            row[m] = _pm(vals) if len(vals) else "-"
        out.append(row)
    columns = ["dataset", "ratio", "method", "selection", "bias_labels", "seeds"]
    return pd.DataFrame(out, columns=columns + metrics)


def selections_label(selections: pd.Series) -> str:
    """The policies that chose the epochs of a group's runs: one name, or each with its share of
    the runs, most frequent first (e.g. `val_pseudo_unbiased (2 of 3), last (1 of 3)`)."""
    ranked = Counter(selections).most_common()  # ties in order of first appearance
    if len(ranked) == 1:
        return str(ranked[0][0])
    return ", ".join(f"{name} ({n} of {len(selections)})" for name, n in ranked)


CONTROL_SUFFIX = " (no-bias control)"


def ratio_tables(frame: pd.DataFrame, metric: str, numeric: bool = False) -> dict[str, pd.DataFrame]:
    """Per dataset, `metric` as mean ± std over seeds: one row per (method, configured policy), one column
    per ratio and one for the dataset's no-bias control; a cell with fewer seeds than the table's
    most says how many. With `numeric`, the cells are the means as floats (NaN where no run)."""
    if metric not in frame.columns:
        raise ConfigError(f"unknown metric '{metric}'; valid: {', '.join(TABLE_METRICS)}")
    control = frame["dataset"].str.endswith(CONTROL_SUFFIX)
    frame = frame.assign(base=frame["dataset"].str.removesuffix(CONTROL_SUFFIX), column=[
        "no-bias control" if c else "-" if pd.isna(r) else f"rho = {r:g}%" for c, r in zip(control, frame["ratio"])
    ], column_key=[(bool(c), -1.0 if pd.isna(r) else float(r)) for c, r in zip(control, frame["ratio"])])  # fmt: skip
    tables = {}
    for base, part in frame.groupby("base", sort=True):
        order = dict(zip(part["column"], part["column_key"]))  # the control column sorts last, then by ratio
        columns = sorted(order, key=order.__getitem__)
        most = part.groupby(["method", "policy", "column"]).size().max()
        rows = []
        for (method, _), group in sorted(part.groupby(["method", "policy"]), key=lambda kv: _method_order(kv[0][0])):
            row = {"method": method, "selection": selections_label(group["selection"])}
            for col in columns:
                vals = pd.to_numeric(group.loc[group["column"] == col, metric], errors="coerce").dropna()
                if numeric:
                    row[col] = float(vals.mean()) if len(vals) else math.nan
                else:
                    row[col] = "-" if not len(vals) else _pm(vals) + (f" ({len(vals)} seeds)" if 1 < len(vals) < most else "")
            rows.append(row)
        tables[base] = pd.DataFrame(rows)
    return tables


def _method_order(label: str) -> tuple[int, str]:
    name = label.removesuffix(" (oracle)")
    return (list(METHODS).index(name) if name in METHODS else len(METHODS), label)


SPREAD_NOTE = "± is the sample standard deviation over seeds (ddof = 1); n = 1: one seed, no spread measured"


def seed_std(vals: pd.Series | np.ndarray) -> float:
    """THE spread of the tables and charts: the sample standard deviation over seeds (ddof = 1);
    0 for one seed (the tables then print "n = 1" instead)."""
    vals = np.asarray(vals, dtype=float)
    return float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def _pm(vals: pd.Series) -> str:
    """mean ± std over seeds; with one seed, "mean (n = 1)" (no spread was measured)."""
    mean = float(vals.mean())
    std = seed_std(vals)
    if math.isnan(mean):
        return "-"
    digits = 3 if abs(mean) < 2 else 1 if mean > 100 else 2
    if len(vals) == 1:
        return f"{mean:.2g} (n = 1)" if 0 < abs(mean) < 0.1 else f"{mean:.{digits}f} (n = 1)"
    if 0 < abs(mean) < 0.1:
        return f"{mean:.2g} ± {std:.2g}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def tables_markdown(table: pd.DataFrame, frame: pd.DataFrame, by_ratio: tuple[str, ...] = (), split: str = "test") -> str:
    """The summary `table` of `frame`, then a methods x ratios table per dataset for each metric of `by_ratio`."""
    pivots = {metric: ratio_tables(frame, metric) for metric in by_ratio}  # checks every metric before any output
    parts = [to_markdown(table)]
    for metric, tables in pivots.items():
        parts += [f"{dataset}: {metric} ({split})\n\n{to_markdown(pivot)}" for dataset, pivot in tables.items()]
    return "\n\n".join([*parts, SPREAD_NOTE]) + "\n"


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)
