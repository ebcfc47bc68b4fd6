"""The goals of a DDB recipe, checked on a grid's runs, with the measured stage where one is missed.

Per dataset and ratio: is the recipe ahead of the best label-free baseline (by mean) by more than
the larger of the two sample standard deviations over seeds? Per no-bias control: is it within
CONTROL_TOLERANCE points of ERM? Where a goal is missed, the stage is named by STAGE_RULES from the
recipe's own records (bias labels enter them for evaluation only): its trainer given the TRUE groups
(the oracle run of the same trainer), the Bias Amplifier's ranking AUROC on the real training set
next to that of a BA of the same architecture trained on the real images (in the run itself, or in
a stage-check run: the recipe with ba_source=real on the same seed), the bias evidence of the
safeguard, and the precision and recall of its pseudo-conflicting samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .collect import CONTROL_SUFFIX, runs_frame, seed_std, to_markdown
from .errors import ConfigError
from .hparams import ba_architecture
from .recipes import METHODS
from .recipes.groupdro import LabelGroups
from .records import RunResult

LABEL_FREE_BASELINES = ("erm", "gce", "lff", "jtt", "jtt_weighted")
CONTROL_TOLERANCE = 1.5  # points of unbiased accuracy below ERM a no-bias control may cost
GOOD_AUROC = 0.9  # a BA ranking below this is called the failing stage
GOOD_GROUPS = 90.0  # pseudo-conflicting precision and recall (%) at which the groups are not what fails
GENERATOR_GAP = 0.05  # a real-data BA ranking better by this much blames the synthetic images
STAGE_RULES = (
    f"trainer: the same trainer at the same weight decay given the TRUE groups misses the goal too, or the pseudo-conflicting set is "
    f"already near the truth (precision and recall >= {GOOD_GROUPS:g}%)",
    f"generator: the synthetic-trained BA ranks below AUROC {GOOD_AUROC} and a BA of the same architecture trained on the real images "
    f"(in the run, or in a stage-check run of the recipe with ba_source=real on the same seeds) ranks better by {GENERATOR_GAP}+",
    f"BA ranking: the synthetic-trained BA ranks below AUROC {GOOD_AUROC} and the real-data BA of the same architecture does no better",
    "BA ranking or generator: as the two above, but no real-data BA of the same architecture was trained (a probe of another "
    "architecture, or none), so the two are not separated",
    "bias evidence: the safeguard found no bias (ERM fallback) in some seed although the BA ranks well",
    "pseudo-groups: the BA ranks well and the bias was found, but its flagged set (precision, recall) does not carry the trainer",
    "controls: bias evidence when the safeguard found a bias in some seed, else the ERM fallback itself",
)


@dataclass(frozen=True)
class Verdict:
    """One goal of one recipe on one dataset column (a ratio or the no-bias control)."""

    dataset: str
    column: str
    recipe: str  # mean ± std (seeds)
    reference: str  # the best label-free baseline (bias cells) or ERM (controls), mean ± std
    margin: float  # recipe mean - reference mean (nan: the recipe has no run in the column)
    needed: float  # > this (bias cells) or >= this (controls)
    met: bool | None  # None: the cell is incomplete
    stage: str  # the failing stage ("" when met)
    evidence: str


def true_group_twin(method: str) -> str | None:
    """The oracle method that trains `method`'s trainer on the true groups (its ceiling)."""
    trainer = METHODS[method].trainer
    return next((name for name, r in METHODS.items() if isinstance(r, LabelGroups) and r.trainer is trainer and name != method), None)


def evidence_frame(results: list[RunResult]) -> pd.DataFrame:
    """runs_frame (test split) plus each run's BA, bias-evidence and pseudo-group records."""
    frame = runs_frame(results)
    extra = []
    for r in results:
        diag = r.notes.ba_diagnostics or {}
        syn, real = diag.get("synthetic"), diag.get("real")
        ev = r.notes.bias_evidence
        extra.append({
            "precision": syn.precision if syn else None, "recall": syn.recall if syn else None,
            "ba_auroc": syn.auroc if syn else None, "real_ba_auroc": real.auroc if real else None,
            "lift": ev.lift if ev else None, "found": ev.found if ev else None, "weight_decay": r.hparams.get("weight_decay"),
            "ba_source": r.hparams.get("ba_source"),
            "ba_arch": ba_architecture(r.hparams, "synthetic") if syn else None, "real_ba_arch": ba_architecture(r.hparams, "real") if real else None,
        })  # fmt: skip
    return pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1)


def _stats(frame: pd.DataFrame, method: str) -> tuple[float, float, int]:
    """(mean, sample std, seeds) of `method`'s test unbiased accuracy in `frame`."""
    rows = frame[frame["method"] == method]
    vals = pd.to_numeric(rows["unbiased_acc"], errors="coerce").dropna()
    return _mean(rows, "unbiased_acc"), seed_std(vals), len(vals)


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f} (n = {n})"


def _mean(rows: pd.DataFrame, col: str) -> float:
    vals = pd.to_numeric(rows[col], errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else math.nan


def _evidence(rows: pd.DataFrame, twin: str, twin_stats: tuple[float, float, int]) -> tuple[str, dict[str, float]]:
    found = rows["found"].dropna()
    m = {k: _mean(rows, k) for k in ("ba_auroc", "real_ba_auroc", "precision", "recall", "lift")}
    archs = f"{_archs(rows, 'ba_arch')} on synthetic images; real-data BA {m['real_ba_auroc']:.3f}, {_archs(rows, 'real_ba_arch')}"
    text = (f"BA AUROC {m['ba_auroc']:.3f} ({archs}); pseudo-conflicting precision {m['precision']:.1f}%, "
            f"recall {m['recall']:.1f}%; bias found in {int(found.sum())}/{len(found)} seeds (lift {m['lift']:.1f})")  # fmt: skip
    if twin:
        text += f"; {twin} (true groups) {twin_stats[0]:.2f}"
    same_arch = set(rows["ba_arch"].dropna()) == set(rows["real_ba_arch"].dropna())
    m["gap"] = m["real_ba_auroc"] - m["ba_auroc"] if same_arch else math.nan
    m["found_all"] = float(len(found) > 0 and bool(found.all()))
    m["found_any"] = float(bool(found.any()))
    return text, m


def _archs(rows: pd.DataFrame, col: str) -> str:
    return "/".join(sorted(set(rows[col].dropna()))) or "-"


def stage_check(rows: pd.DataFrame, checks: pd.DataFrame) -> tuple[float, str]:
    """From stage-check runs (`checks`: the recipe with ba_source=real, any cell) on `rows`' bias cell
    (a ratio; controls have no stage to separate) and seeds with the synthetic BA's architecture: the
    real-data BA's AUROC minus the synthetic one's on those seeds, and a note for the evidence;
    (nan, "") when there is none."""
    if checks.empty or rows.empty:
        return math.nan, ""
    first = rows.iloc[0]
    match = checks[(checks["dataset"] == first["dataset"]) & (checks["ratio"] == first["ratio"])
                   & checks["seed"].isin(rows["seed"]) & checks["real_ba_arch"].isin(rows["ba_arch"].dropna())]  # fmt: skip
    if match.empty:
        return math.nan, ""
    real, syn = _mean(match, "real_ba_auroc"), _mean(rows[rows["seed"].isin(match["seed"])], "ba_auroc")
    seeds = ", ".join(str(s) for s in sorted(match["seed"].unique()))
    return real - syn, f"; stage check (the same {_archs(match, 'real_ba_arch')} trained on the real images, seed {seeds}): AUROC {real:.3f} against {syn:.3f}"


def bias_stage(m: dict[str, float], twin_misses: bool) -> str:
    """The failing stage of a missed bias cell (STAGE_RULES); m["gap"] is the same-architecture
    real-data BA's AUROC minus the synthetic BA's (nan: not measured)."""
    if twin_misses or (m["precision"] >= GOOD_GROUPS and m["recall"] >= GOOD_GROUPS):
        return "trainer"
    if not m["ba_auroc"] >= GOOD_AUROC:
        if math.isnan(m["gap"]):
            return "BA ranking or generator"
        return "generator" if m["gap"] >= GENERATOR_GAP else "BA ranking"
    return "bias evidence" if not m["found_all"] else "pseudo-groups"


def check_targets(results: list[RunResult], recipe: str, stage_checks: list[RunResult] = ()) -> list[Verdict]:
    """The recipe's verdict on every dataset column of `results` (none if the recipe ran nowhere);
    a column where it has not run yet is incomplete. `stage_checks`: runs of the recipe with
    ba_source=real (kept apart from the grid) that separate the generator from the BA's ranking."""
    if recipe not in METHODS:
        raise ConfigError(f"unknown method '{recipe}'; valid: {', '.join(METHODS)}")
    checks = evidence_frame(list(stage_checks)) if stage_checks else pd.DataFrame()
    if not checks.empty:
        checks = checks[(checks["method"] == recipe) & (checks["ba_source"] == "real") & checks["real_ba_auroc"].notna()]
    frame = evidence_frame(results)
    if not (frame["method"] == recipe).any():
        return []
    twin = true_group_twin(recipe)
    control = frame["dataset"].str.endswith(CONTROL_SUFFIX)
    frame = frame.assign(base=frame["dataset"].str.removesuffix(CONTROL_SUFFIX), control=control)
    out = []
    for (base, is_control, ratio), cell in frame.groupby(["base", "control", frame["ratio"].fillna(-1.0)], sort=True):
        rows = cell[cell["method"] == recipe]
        column = "no-bias control" if is_control else f"rho = {ratio:g}%"
        refs = {b: _stats(cell, b) for b in (("erm",) if is_control else LABEL_FREE_BASELINES)}
        ref_name, ref = max(refs.items(), key=lambda kv: -math.inf if math.isnan(kv[1][0]) else kv[1][0])
        if rows.empty:  # other methods ran here: the goal is open, not absent
            out.append(Verdict(base, column, "no run", f"{ref_name} {_fmt(*ref)}", math.nan, -CONTROL_TOLERANCE if is_control else ref[1],
                               None, "", f"no run of {recipe} in this column yet"))  # fmt: skip
            continue
        rec = _stats(cell, recipe)
        counts = {rec[2], *(s[2] for s in refs.values())}
        complete = len(counts) == 1 and rec[2] >= 2
        margin = rec[0] - ref[0]
        needed = -CONTROL_TOLERANCE if is_control else max(rec[1], ref[1])
        met = (margin >= needed if is_control else margin > needed) if complete else None
        twin_rows = cell[cell["method"] == f"{twin} (oracle)"] if twin else cell.iloc[:0]
        compared = not twin_rows.empty and set(twin_rows["weight_decay"]) == set(rows["weight_decay"])  # else no ceiling of this trainer
        twin_stats = _stats(cell, f"{twin} (oracle)") if compared else (math.nan, 0.0, 0)
        text, m = _evidence(rows, twin if compared else "", twin_stats)
        if math.isnan(m["gap"]) and not is_control:
            m["gap"], note = stage_check(rows, checks)
            text += note
        if not twin_rows.empty and not compared:
            text += f"; {twin} (true groups) ran at another weight decay: not compared"
        stage = ""
        if met is False:
            if is_control:
                stage = "bias evidence" if m["found_any"] else "ERM fallback"
            else:
                stage = bias_stage(m, twin_misses=compared and not twin_stats[0] - ref[0] > needed)
        out.append(Verdict(base, column, _fmt(*rec), f"{ref_name} {_fmt(*ref)}", margin, needed, met, stage, text))
    return out


VERDICT_COLUMNS = ("dataset", "column", "recipe", "reference", "margin", "needed", "met", "failing stage", "evidence")


def verdicts_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """The verdicts as a table (markdown and HTML)."""
    return pd.DataFrame([{
        "dataset": v.dataset, "column": v.column, "recipe": v.recipe, "reference": v.reference, "margin": "-" if math.isnan(v.margin) else f"{v.margin:+.2f}",
        "needed": f"{'>=' if v.column == 'no-bias control' else '>'} {v.needed:+.2f}",
        "met": "incomplete" if v.met is None else "yes" if v.met else "NO", "failing stage": v.stage, "evidence": v.evidence,
    } for v in verdicts], columns=list(VERDICT_COLUMNS))  # fmt: skip


def goals_text(recipe: str) -> str:
    return (f"Goals of {recipe}: ahead of the best label-free baseline ({', '.join(LABEL_FREE_BASELINES)}) by more than the larger sample "
            f"std over seeds; within {CONTROL_TOLERANCE} points of ERM on the no-bias controls (test unbiased accuracy, %).")  # fmt: skip


def tally(verdicts: list[Verdict]) -> str:
    met = [v.met for v in verdicts if v.met is not None]
    return f"{sum(met)}/{len(met)} goals met; {sum(v.met is None for v in verdicts)} incomplete."


RULES_TEXT = "Failing stage rules, in order: " + "; ".join(STAGE_RULES) + "."


def verdicts_markdown(verdicts: list[Verdict], recipe: str) -> str:
    """The goals, the verdicts as a markdown table, the tally, and the rules that name a failing stage."""
    return "\n\n".join([goals_text(recipe), to_markdown(verdicts_frame(verdicts)), tally(verdicts), RULES_TEXT]) + "\n"
