"""Plain-text summaries of results for the terminal."""

from __future__ import annotations

HEADLINE = ("unbiased_acc", "conflicting_acc", "aligned_acc", "avg_acc", "wga")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_line(results: dict) -> str:
    test = results.get("test", {})
    flags = []
    if results["bias_labels_used"]["training"]:
        flags.append("ORACLE: trained with bias labels")
    if results["bias_labels_used"]["selection"]:
        flags.append("selected with val bias labels")
    metrics = "  ".join(f"{k} {fmt(test.get(k))}" for k in HEADLINE)
    total = sum(results["wall_time_s"].values())
    extra = f"  [{'; '.join(flags)}]" if flags else ""
    return (
        f"{results['method']} on {results['dataset']} (ratio {results['ratio']}, seed {results['seed']}), "
        f"selection {results['selection']} -> epoch {results['selected_epoch']}\n  test: {metrics}  wall {total:.1f}s{extra}"
    )
