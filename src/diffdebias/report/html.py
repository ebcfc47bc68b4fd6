"""`diffdebias report DIR`: one self-contained HTML file of every complete run under DIR.

Sections: at a glance (methods x ratios per dataset, the best unsupervised cell of each column in
bold), the recommended recipe's goals (targets.py), results tables (mean ± std over seeds, selection policy and bias-label use), bar charts
with error bars per metric and ratio, wall time and energy / emissions per stage, per-class grids
of the synthetic images, the diffusion audit, the Bias Amplifier diagnostics, and attribution maps
(Grad-CAM / Integrated Gradients) of bias-conflicting test images for ERM next to the best
debiased method. CSS is inline and images are PNG data URIs: the file opens without a network.
"""

from __future__ import annotations

import html
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..audit import audit_summary, audit_synthetic, train_judges
from ..collect import TABLE_METRICS, dataset_label, find_results, ratio_tables, runs_frame, seed_std, summary_table
from ..data.registry import load_dataset
from ..errors import RunError
from ..recipes import RECOMMENDED
from ..records import RunResult
from ..targets import RULES_TEXT, check_targets, goals_text, tally, verdicts_frame
from ..io import write_json_atomic, write_text_atomic
from ..state import stage_weights
from . import figures
from .attribution import attribution_maps, conflicting_test_indices, load_classifier, method_name

TABLE_COLUMNS = ("dataset", "ratio", "method", "selection", "bias_labels", "seeds", "unbiased_acc", "conflicting_acc", "aligned_acc",
                 "avg_acc", "wga", "worst_class_acc", "balanced_acc", "macro_f1", "ece", "wall_time_s", "energy_wh", "co2_g")  # fmt: skip
ATTRIBUTION_IMAGES = 6
GLANCE_METRICS = 2  # the first metrics of TABLE_METRICS that the runs report, as methods x ratios tables

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2a44;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#c9d3e6;font-size:13px}
nav{background:#fff;border-bottom:1px solid #dde1e7;padding:8px 32px;position:sticky;top:0;font-size:13px}
nav a{margin-right:14px;color:#2456a6;text-decoration:none}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 20px;margin:18px 0}
h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}
p.note{color:#5a6272;font-size:13px;max-width:1100px}
table.tbl{border-collapse:collapse;font-size:12.5px;margin:6px 0 12px}
table.tbl th{background:#eef1f6;text-align:left;padding:4px 8px;border-bottom:2px solid #c9d0db}
table.tbl td{padding:3px 8px;border-bottom:1px solid #eceff3;white-space:nowrap}
table.tbl tr:hover td{background:#f4f8ff}
img.fig{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{margin:0;text-align:center;font-size:12px}
table.tbl td.best{font-weight:700;background:#e3f1e5}table.tbl tr.oracle td{color:#6b7280;font-style:italic}
.scroll{overflow-x:auto}.grid img{width:150px;image-rendering:pixelated;border:1px solid #dde1e7}
"""


def write_report(directory: Path, out: Path | None = None, audit_epochs: int | None = 10, echo: Callable = print,
                 stage_checks: Path | None = None) -> Path:  # fmt: skip
    """Build the report of the complete runs under `directory`; returns the HTML file's path.
    `stage_checks`: a folder of the recommended recipe's ba_source=real runs for its failing stages
    (targets.check_targets)."""
    directory = Path(directory)
    results = find_results(directory)
    if not results:
        raise RunError(f"{directory}: no complete run (results.json + COMPLETE) to report; run `diffdebias bench` or `diffdebias run` first")
    out = Path(out) if out else directory / "report.html"
    t0 = time.perf_counter()
    loader = _DataCache()
    frame = runs_frame(results)
    sections = [
        ("glance", "At a glance", _glance_section(frame)),
        ("goals", f"Goals of the recommended recipe ({RECOMMENDED})", _goals_section(results, find_results(Path(stage_checks)) if stage_checks else [])),
        ("results", "Results", _results_section(frame)),
        ("charts", "Charts", _charts_section(frame)),
        ("classes", "Per-class F1", _class_f1_section(results, loader)),
        ("cost", "Wall time and energy per stage", _cost_section(results)),
        ("synthetic", "Synthetic images", _synthetic_section(results, loader)),
        ("audit", "Diffusion audit", _audit_section(results, loader, directory, audit_epochs, echo)),
        ("ba", "Bias Amplifier diagnostics", _ba_section(results)),
        ("attribution", "Where the models look", _attribution_section(results, frame, loader, echo)),
    ]
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>' for sid, title, content in sections)
    machine = results[0].machine
    commits = sorted({str(r.machine.get("commit") or "not recorded") for r in results})
    head = (
        f"<h1>diffdebias report</h1><p>{len(results)} complete runs under <code>{html.escape(str(directory))}</code> · generated "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by diffdebias {__version__} on {html.escape(platform.node() or '?')}</p>"
        f"<p>runs made on {html.escape(str(machine.get('platform', '?')))}, {machine.get('cpus', '?')} CPUs, torch {html.escape(str(machine.get('torch', '?')))}, "
        f"device {html.escape(results[0].device)}, {machine.get('threads', '?')} threads; source commits of the runs: {html.escape(', '.join(commits))}</p>"
    )
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>diffdebias report</title><style>{CSS}</style></head>'
            f"<body><header>{head}</header><nav>{nav}</nav><main>{body}</main></body></html>")  # fmt: skip
    write_text_atomic(out, page)
    echo(f"report built in {time.perf_counter() - t0:.0f}s")
    return out


class _DataCache:
    """Datasets of the runs, loaded once each."""

    def __init__(self):
        self._cache: dict[str, object] = {}

    def get(self, r: RunResult):
        cfg = json.loads((Path(r.run_dir) / "config.json").read_text())
        key = json.dumps([r.dataset, cfg.get("root"), r.ratio, r.data_options], sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = load_dataset(r.dataset, root=cfg.get("root"), ratio=r.ratio, **r.data_options)
        return self._cache[key]


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:g}%"


def _table(df: pd.DataFrame) -> str:
    return '<div class="scroll">' + df.to_html(index=False, classes="tbl", border=0, escape=True, na_rep="-") + "</div>"


def _glance_section(frame: pd.DataFrame) -> str:
    metrics = [m for m in TABLE_METRICS if m in frame.columns and frame[m].notna().any()][:GLANCE_METRICS]
    parts = ['<p class="note">Test split, mean ± sample std over seeds (ddof = 1), methods against the ratio of bias-conflicting training '
             "samples (and the no-bias control, where the attribute is independent of the class). <b>Bold</b>: the best method "
             "without bias labels in each column; <i>grey</i>: the Group DRO oracle, which trains with them.</p>"]  # fmt: skip
    tables = {m: (ratio_tables(frame, m), ratio_tables(frame, m, numeric=True)) for m in metrics}
    for base in sorted({b for text, _ in tables.values() for b in text}):
        for metric, (text, means) in tables.items():
            if base in text:
                parts.append(f"<h3>{html.escape(base)}: {html.escape(metric)}</h3>" + glance_table(text[base], means[base]))
    return "".join(parts)


def glance_table(text: pd.DataFrame, means: pd.DataFrame) -> str:
    """`text` (a `ratio_tables` table) as HTML, the highest mean of each column among the rows that use
    no bias labels in bold and the oracle rows greyed."""
    oracle = text["method"].str.endswith("(oracle)")
    columns = [c for c in text.columns if c not in ("method", "selection")]
    best = {c: means.loc[~oracle, c].idxmax() if means.loc[~oracle, c].notna().any() else None for c in columns}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in text.columns)
    rows = []
    for i, row in text.iterrows():
        cells = "".join(f'<td{" class=best" if best.get(c) == i else ""}>{html.escape(str(row[c]))}</td>' for c in text.columns)
        rows.append(f'<tr{" class=oracle" if oracle[i] else ""}>{cells}</tr>')
    return f'<div class="scroll"><table class="tbl"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _goals_section(results: list[RunResult], stage_checks: list[RunResult] = ()) -> str:
    verdicts = check_targets(results, RECOMMENDED, stage_checks)
    if not verdicts:
        return f'<p class="note">No run of the recommended recipe ({RECOMMENDED}) under this folder.</p>'
    return (f'<p class="note">{html.escape(goals_text(RECOMMENDED))} {html.escape(tally(verdicts))}</p>' + _table(verdicts_frame(verdicts))
            + f'<p class="note">{html.escape(RULES_TEXT)}</p>')


def _results_section(frame: pd.DataFrame) -> str:
    table = summary_table(frame)
    parts = [
        '<p class="note">Test split, mean ± std over seeds (sample std, ddof = 1; "n = 1": one seed). <b>selection</b>: the validation policy that chose '
        "each run's epoch; <b>bias_labels</b>: where true bias labels entered the run (training = oracle reference; val "
        "selection = early stopping with validation bias labels; none = unsupervised). Wall time in seconds, energy in Wh and "
        "emissions in g CO2eq per run, all stages included (cached generators cost their first user only).</p>"
    ]
    extra = [c for c in table.columns if c.startswith("ba_auroc")]
    for dataset, sub in table.groupby("dataset", sort=False):
        cols = [c for c in TABLE_COLUMNS if c in sub.columns] + extra
        parts.append(f"<h3>{html.escape(str(dataset))}</h3>" + _table(sub[cols]))
    return "".join(parts)


def _charts_section(frame: pd.DataFrame) -> str:
    parts = ['<p class="note">One group of bars per ratio of bias-conflicting training samples; error bars = std over seeds.</p>']
    for dataset in dict.fromkeys(frame["dataset"]):
        parts.append(f'<img class="fig" alt="metrics of {html.escape(dataset)}" src="{figures.metric_bars(frame, dataset)}">')
    return "".join(parts)


def _class_f1_section(results: list[RunResult], loader: _DataCache) -> str:
    """One heat map per dataset and ratio: methods x classes, test F1 averaged over seeds."""
    cells: dict[tuple[str, float | None], dict[str, list[list[float]]]] = {}
    first: dict[tuple[str, float | None], RunResult] = {}
    for r in results:
        f1 = r.test.get("per_class", {}).get("f1")
        if f1:
            key = (dataset_label(r), r.ratio)
            cells.setdefault(key, {}).setdefault(r.method, []).append(f1)
            first.setdefault(key, r)
    if not cells:
        return '<p class="note">No run recorded per-class metrics (made by an earlier version).</p>'
    parts = ['<p class="note">Test F1 per class (%), mean over seeds; the classes a bias hurts most stand out as pale cells. '
             "Macro F1, balanced accuracy and ECE (15 bins) are in the Results tables.</p>"]  # fmt: skip
    for (label, ratio), by_method in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or 0)):
        methods = sorted(by_method)
        matrix = np.array([np.mean(by_method[m], axis=0) for m in methods])
        names = loader.get(first[(label, ratio)]).class_names
        title = f"{label}, ratio {_ratio(ratio)}"
        parts.append(f"<h3>{html.escape(title)}</h3>" + f'<img class="fig" alt="per-class F1 of {html.escape(title)}" '
                     f'src="{figures.class_f1_heatmap(matrix, methods, names)}">')  # fmt: skip
    return "".join(parts)


def _stage_frame(results: list[RunResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        energy = r.energy.get("stages", {})
        for stage, secs in r.wall_time_s.items():
            e = energy.get(stage, {})
            rows.append({"dataset": dataset_label(r), "ratio": r.ratio, "method": r.method, "seed": r.seed, "stage": stage,
                         "wall_s": secs, "energy_wh": 1000 * e["energy_kwh"] if e else np.nan, "co2_g": 1000 * e["co2_kg"] if e else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def _cost_section(results: list[RunResult]) -> str:
    st = _stage_frame(results)
    desc = next((r.energy for r in results if r.energy.get("tracker")), None)
    if desc:
        how = (f"Measured by {html.escape(desc['tracker'])}, country {html.escape(str(desc['country']))}; CPU: "
               f"{html.escape(str(desc['cpu_model']))}, {html.escape(str(desc['cpu_method']))}; {html.escape(desc['ram_method'])}; "
               f"GPUs: {desc.get('gpu_count', 0)}. Without power counters (RAPL) these are estimates from constants, not readings.")  # fmt: skip
    else:
        how = "No energy tracker ran for these runs (DIFFDEBIAS_ENERGY=0 or runs made before it existed)."
    parts = [f'<p class="note">Mean over seeds per stage. {how}</p>']
    ratio = st["ratio"].map(lambda v: "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:g}")
    st = st.assign(ratio=ratio)
    for value, title, unit in (("wall_s", "Wall time (s)", "seconds"), ("energy_wh", "Energy (Wh)", "Wh"), ("co2_g", "Emissions (g CO2eq)", "g")):
        if st[value].notna().any():
            piv = st.pivot_table(index=["dataset", "ratio", "method"], columns="stage", values=value, aggfunc="mean")
            piv["total"] = piv.sum(axis=1)
            piv.columns.name = None
            parts.append(f"<h3>{title}</h3>" + _table(piv.round(4 if value != "wall_s" else 1).reset_index()))
    by_method = st.pivot_table(index="method", columns="stage", values="wall_s", aggfunc="mean")
    parts.append("<h3>Wall time per stage, mean over every run of a method</h3>")
    parts.append(f'<img class="fig" alt="wall time per stage" src="{figures.stage_bars(by_method, "seconds per run")}">')
    return "".join(parts)


def _synthetic_sets(results: list[RunResult]) -> dict[str, RunResult]:
    """Distinct synthetic sets of the runs -> one run that used it (its generator note says how it was made)."""
    sets: dict[str, RunResult] = {}
    for r in results:
        if r.notes.generator and r.notes.generator.synthetic_set not in sets:
            sets[r.notes.generator.synthetic_set] = r
    return sets


def _synthetic_section(results: list[RunResult], loader: _DataCache) -> str:
    sets = _synthetic_sets(results)
    if not sets:
        return '<p class="note">No run under this folder trained a generator.</p>'
    parts = ['<p class="note">Samples of the class-conditional diffusion model trained on the biased training split, one grid per class.</p>']
    for folder, r in sets.items():
        gen = r.notes.generator
        grids = sorted(Path(folder).glob("grid_class*.png"), key=lambda p: int(p.stem.removeprefix("grid_class")))
        parts.append(f"<h3>{html.escape(dataset_label(r))}, ratio {_ratio(r.ratio)}: {gen.steps} training steps, {gen.sampler} "
                     f"{gen.sampler_steps} steps, w = {gen.w}, {gen.per_class} per class</h3>")  # fmt: skip
        if not grids:
            parts.append(f'<p class="note">The synthetic set {html.escape(folder)} is gone from the cache.</p>')
            continue
        names = loader.get(r).class_names
        figs = "".join(f'<figure><img alt="class {i}" src="{figures.file_uri(g)}"><figcaption>{html.escape(names[i] if i < len(names) else str(i))}</figcaption></figure>'
                       for i, g in ((int(g.stem.removeprefix("grid_class")), g) for g in grids))  # fmt: skip
        parts.append(f'<div class="grid">{figs}</div>')
    return "".join(parts)


def _audit_section(results: list[RunResult], loader: _DataCache, directory: Path, epochs: int | None, echo: Callable) -> str:
    sets = _synthetic_sets(results)
    if not sets:
        return '<p class="note">No synthetic set to audit.</p>'
    if epochs is None:
        return '<p class="note">Skipped (--no-audit).</p>'
    parts = [f'<p class="note">Judges trained on the real data ({epochs} epochs; bias labels used for this evaluation only): '
             "conditional accuracy = share of class-c samples the class judge calls c; bias alignment rate = share whose bias "
             "judge's prediction is the class's majority bias value in the real training data. Diversity (no judge): spread = "
             "mean pairwise pixel distance within a class, synthetic / real; k-NN precision and recall (Kynkaanniemi et al. "
             "2019, k = 3) of the synthetic images against the real training images of the class.</p>"]  # fmt: skip
    for folder, r in sets.items():
        cache = directory / "audits" / f"{Path(folder).name}-e{epochs}.json"
        if cache.exists():
            audit = json.loads(cache.read_text())
        elif not Path(folder).exists():
            parts.append(f'<p class="note">{html.escape(folder)} is gone from the cache: not audited.</p>')
            continue
        else:
            echo(f"auditing {folder}")
            data = loader.get(r)
            audit = audit_synthetic(load_dataset("synthetic", root=folder), data, train_judges(data, epochs=epochs))
            write_json_atomic(cache, audit)
        names = loader.get(r).class_names
        parts.append(f"<h3>{html.escape(f'{dataset_label(r)}, ratio {_ratio(r.ratio)}: {audit_summary(audit)}')}</h3>")
        parts.append(f'<img class="fig" alt="audit" src="{figures.audit_bars(audit, names)}">')
    return "".join(parts)


def _ba_section(results: list[RunResult]) -> str:
    rows = []
    for r in results:
        for source, d in (r.notes.ba_diagnostics or {}).items():
            rows.append({"dataset": dataset_label(r), "ratio": r.ratio, "method": r.method, "BA trained on": source, "seed": r.seed,
                         **{k: getattr(d, k) for k in ("auroc", "precision", "recall", "num_flagged", "num_conflicting")}})  # fmt: skip
    if not rows:
        return '<p class="note">No run under this folder trained a Bias Amplifier.</p>'
    df = pd.DataFrame(rows)
    df["ratio"] = df["ratio"].map(lambda v: "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:g}")
    keys = ["dataset", "ratio", "method", "BA trained on"]
    agg = df.groupby(keys, sort=True).agg(
        seeds=("seed", "count"),
        **{m: (m, lambda s: f"{s.mean():.3f} ± {seed_std(s):.3f}") for m in ("auroc", "precision", "recall")},
        num_flagged=("num_flagged", lambda s: round(float(s.mean()), 1)),
        num_conflicting=("num_conflicting", lambda s: round(float(s.mean()), 1)),
    )
    return ('<p class="note">How well the frozen Bias Amplifier flags the truly bias-conflicting real training samples (bias labels '
            "used for this measurement only): AUROC of its per-sample loss, precision and recall of its errors; mean ± std over seeds.</p>"
            + _table(agg.reset_index()))  # fmt: skip


def _attribution_section(results: list[RunResult], frame: pd.DataFrame, loader: _DataCache, echo: Callable) -> str:
    parts = ['<p class="note">Bias-conflicting test images (one per class, fixed seed). Maps are for the true class; '
             "Grad-CAM (captum LayerGradCam on the last convolution) for convolutional models, Integrated Gradients (captum, "
             "black baseline) for the MLP, which has no feature maps. The debiased model shown is the non-oracle method with the "
             "highest mean test unbiased accuracy in this report: a display choice, not model selection.</p>"]  # fmt: skip
    shown = 0
    for (dataset, ratio), cell in frame.groupby(["dataset", "ratio"], sort=True, dropna=False):
        candidates = cell[~cell["method"].str.contains("oracle") & (cell["method"] != "erm")]
        if "erm" not in set(cell["method"]) or candidates.empty:
            continue
        best = candidates.groupby("method")["unbiased_acc"].mean().idxmax()
        seed = min(set(cell[cell["method"] == "erm"]["seed"]) & set(cell[cell["method"] == best]["seed"]), default=None)
        if seed is None:
            continue
        pick = {m: next(r for r in results if dataset_label(r) == dataset and r.method == m and r.seed == seed
                        and (r.ratio == ratio or (r.ratio is None and pd.isna(ratio)))) for m in ("erm", best)}  # fmt: skip
        ratio_s = _ratio(None if pd.isna(ratio) else ratio)
        gone = [m for m, r in pick.items() if not stage_weights(r.run_dir, "main").exists()]
        if gone:  # an archive of records (benchmarks/results) keeps no weights
            parts.append(f'<p class="note">{html.escape(str(dataset))}, ratio {ratio_s}: no maps, the weights of {html.escape(", ".join(gone))} '
                         f"(seed {seed}) are not under this folder.</p>")  # fmt: skip
            continue
        data = loader.get(pick["erm"])
        idx = conflicting_test_indices(data, ATTRIBUTION_IMAGES)
        if len(idx) == 0:
            continue
        test = data.split("test")
        x, y, b, _ = test.batch(torch.as_tensor(idx))
        raw = torch.stack([test.load_uint8(int(i)) for i in idx]).numpy()
        columns = []
        for m, r in pick.items():
            model = load_classifier(Path(r.run_dir), r, data)
            with torch.no_grad():
                preds = model(x).argmax(1).tolist()
            columns.append((f"{m} ({method_name(model)})", attribution_maps(model, x.clone(), y), [data.class_names[p] for p in preds]))
        bias_names = data.bias_names or [str(v) for v in range(data.num_bias)]
        labels = [f"{data.class_names[int(c)]} / {bias_names[int(v)]}" for c, v in zip(y, b)]
        parts.append(f"<h3>{html.escape(str(dataset))}, ratio {ratio_s}, seed {seed}: ERM vs {html.escape(best)} "
                     "(titles: true class / bias value; map titles: the model's prediction)</h3>")  # fmt: skip
        parts.append(f'<img class="fig" alt="attribution maps" src="{figures.attribution_grid(raw, columns, labels)}">')
        shown += 1
    if not shown:
        parts.append('<p class="note">No (dataset, ratio) cell holds both an ERM run and a debiased run.</p>')
    return "".join(parts)
