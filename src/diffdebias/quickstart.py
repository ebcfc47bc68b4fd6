"""`diffdebias quickstart`: the embedded main job on Colored Fashion-MNIST (rho = 1%), CPU defaults."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .run import run_method
from .io import write_text_atomic
from .recipes import RECOMMENDED
from .records import RunResult
from .report import write_report
from .report_text import fmt

DATASET = "colored_fmnist"
RATIO = 1.0
# Methods run by quickstart, in order: two baselines and the recommended DDB recipe (README).
METHODS = ("erm", "lff", RECOMMENDED)
COLUMNS = ("unbiased_acc", "conflicting_acc", "aligned_acc", "avg_acc")


def quickstart(out: Path, seed: int = 0, quiet: bool = False, echo=print) -> list[RunResult]:
    """Run every quickstart method, print a table, write `summary.md` and the HTML `report.html` under `out`."""
    out = Path(out)
    rows = []
    t0 = time.perf_counter()
    for method in METHODS:
        echo(f"== {method} on {DATASET} (ratio {RATIO:g}%, seed {seed})")
        rows.append(run_method(method, DATASET, ratio=RATIO, seed=seed, out=out / DATASET / method / f"seed{seed}", quiet=quiet))
    table = results_table(rows)
    echo("\n" + table)
    echo(f"\ntotal wall time {time.perf_counter() - t0:.0f}s; results under {out}")
    summary = (
        f"# diffdebias quickstart\n\nDataset `{DATASET}` at rho = {RATIO:g}% bias-conflicting training samples, seed {seed}.\n"
        f"Test split is bias-uniform; model selection by each run's policy on validation (no bias labels).\n\n{table}\n"
    )
    grid = next((Path(r.notes.generator.synthetic_set) / "grid.png" for r in rows if r.notes.generator), None)
    if grid is not None and grid.exists():
        shutil.copyfile(grid, out / "synthetic_grid.png")
        summary += "\n## Synthetic images of the DDB generator (one row per class)\n\n![samples](synthetic_grid.png)\n"
    diag = next((r.notes.ba_diagnostics for r in rows if r.notes.ba_diagnostics), None)
    if diag:
        summary += "\n## Bias Amplifier diagnostics (true bias labels used for evaluation only)\n\n| BA trained on | AUROC | precision | recall |\n|---|---|---|---|\n"
        summary += "".join(f"| {k} | {v.auroc} | {v.precision} | {v.recall} |\n" for k, v in diag.items())
    write_text_atomic(out / "summary.md", summary)
    echo(f"HTML report: {write_report(out, echo=echo)}")
    return rows


def results_table(rows: list[RunResult]) -> str:
    """A markdown table of the headline test metrics and wall time per stage."""
    head = "| method | selection | " + " | ".join(COLUMNS) + " | wall time (s) per stage |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        times = ", ".join(f"{k} {v:.0f}" for k, v in r.wall_time_s.items())
        lines.append(f"| {r.method} | {r.selection} | " + " | ".join(fmt(r.test.get(c)) for c in COLUMNS) + f" | {times} |")
    return "\n".join(lines)
