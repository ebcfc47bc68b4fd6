"""Plain-text summaries of results for the terminal."""

from __future__ import annotations

from .records import RunResult

HEADLINE = ("unbiased_acc", "conflicting_acc", "aligned_acc", "avg_acc", "wga")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_line(r: RunResult) -> str:
    flags = []
    if r.bias_labels_used.training:
        flags.append("ORACLE: trained with bias labels")
    if r.bias_labels_used.selection:
        flags.append("selected with val bias labels")
    metrics = "  ".join(f"{k} {fmt(r.test.get(k))}" for k in HEADLINE)
    extra = f"  [{'; '.join(flags)}]" if flags else ""
    return (
        f"{r.method} on {r.dataset} (ratio {r.ratio}, seed {r.seed}), "
        f"selection {r.selection} -> epoch {r.selected_epoch}\n  test: {metrics}  wall {r.total_wall_time_s:.1f}s{extra}"
    )
