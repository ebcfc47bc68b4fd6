"""Matplotlib figures of the report, returned as PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..collect import seed_std  # noqa: E402

CHART_METRICS = ("unbiased_acc", "conflicting_acc", "aligned_acc", "wga")


def data_uri(fig, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_uri(path) -> str:
    with open(path, "rb") as fh:
        return "data:image/png;base64," + base64.b64encode(fh.read()).decode()


def metric_bars(frame: pd.DataFrame, dataset: str) -> str:
    """Grouped bars (one group per ratio, one bar per method) with std-over-seeds error bars."""
    sub = frame[frame["dataset"] == dataset]
    metrics = [m for m in CHART_METRICS if sub[m].notna().any()]
    ratios = sorted(sub["ratio"].dropna().unique()) or [None]
    methods = list(dict.fromkeys(sub.sort_values("method")["method"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    colors = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics):
        for i, method in enumerate(methods):
            means, stds = [], []
            for r in ratios:
                vals = sub[(sub["method"] == method) & ((sub["ratio"] == r) if r is not None else sub["ratio"].isna())][metric].dropna()
                means.append(vals.mean() if len(vals) else np.nan)
                stds.append(seed_std(vals))
            x = np.arange(len(ratios)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=2, label=method, color=colors(i % 10))
        ax.set_xticks(np.arange(len(ratios)), [f"{r:g}%" if r is not None else "-" for r in ratios])
        ax.set_xlabel("bias-conflicting ratio")
        ax.set_title(metric, fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{dataset}: test metrics, mean ± sample std over seeds", fontsize=11, y=1.04)
    return data_uri(fig)


def stage_bars(stage_means: pd.DataFrame, unit: str) -> str:
    """Stacked horizontal bars: one bar per method, one segment per stage."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(stage_means) + 1.2))
    left = np.zeros(len(stage_means))
    colors = plt.get_cmap("tab10")
    for i, stage in enumerate(stage_means.columns):
        vals = stage_means[stage].fillna(0.0).to_numpy()
        ax.barh(np.arange(len(stage_means)), vals, left=left, label=stage, color=colors(i % 10))
        left += vals
    ax.set_yticks(np.arange(len(stage_means)), list(stage_means.index))
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return data_uri(fig)


def audit_bars(audit: dict, class_names: list[str]) -> str:
    """Per-class conditional accuracy, bias alignment rate and (audits since diversity was added)
    k-NN recall of the real images of a synthetic set."""
    keys = sorted(audit["per_class"], key=int)
    bars = {"conditional accuracy": "conditional_acc", "bias alignment rate": "bias_alignment_rate", "recall of real images": "diversity_recall"}
    bars = {label: [audit["per_class"][k].get(key, np.nan) for k in keys] for label, key in bars.items()
            if any(key in audit["per_class"][k] for k in keys)}  # fmt: skip
    x = np.arange(len(keys))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    for i, (label, vals) in enumerate(bars.items()):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(x, [class_names[int(k)] if int(k) < len(class_names) else k for k in keys], rotation=30, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return data_uri(fig)


def class_f1_heatmap(matrix: np.ndarray, methods: list[str], class_names: list[str]) -> str:
    """Methods x classes heat map of F1 (%), each cell labelled with its value."""
    fig, ax = plt.subplots(figsize=(0.75 * matrix.shape[1] + 2.2, 0.4 * len(methods) + 1.4))
    ax.imshow(matrix, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    names = [class_names[j] if j < len(class_names) else str(j) for j in range(matrix.shape[1])]
    ax.set_xticks(np.arange(matrix.shape[1]), names, rotation=30, fontsize=8, ha="right")
    ax.set_yticks(np.arange(len(methods)), methods, fontsize=8)
    return data_uri(fig)


def attribution_grid(images: np.ndarray, columns: list[tuple[str, np.ndarray, list[str]]], row_labels: list[str]) -> str:
    """Rows = images; first column the image, then one heat map per model (titled with its prediction)."""
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(columns), figsize=(2.0 * (1 + len(columns)), 2.0 * n), squeeze=False)
    for i in range(n):
        img = images[i].transpose(1, 2, 0)
        axes[i][0].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        axes[i][0].set_title(row_labels[i], fontsize=7)
        for j, (name, maps, preds) in enumerate(columns, start=1):
            axes[i][j].imshow(img.mean(-1), cmap="gray", alpha=0.5)
            axes[i][j].imshow(maps[i], cmap="jet", alpha=0.55)
            axes[i][j].set_title(f"{name}: {preds[i]}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return data_uri(fig)
