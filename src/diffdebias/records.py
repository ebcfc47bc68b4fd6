"""The typed record of a finished run: what `results.json` holds, its notes included.

`RunResult.to_dict()` is written as results.json (by `run.run_method` only) and
`RunResult.from_dict()` reads one back (collect, report, quickstart, the API); notes a run did
not make are left out of the file, as before, so results.json files of earlier versions read back.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import RunError

T = TypeVar("T")


@dataclass
class GeneratorNote:
    """The generator and synthetic set a DDB run used (stages/generator.py)."""

    run: str
    synthetic_set: str
    steps: int
    seed: int
    sampler: str
    sampler_steps: int
    w: float
    per_class: int
    preset: str | None = None
    estimate: dict[str, Any] | None = None  # diffusion/estimate.py, when the generator was trained by this version
    source: str | None = None  # the exported generator's folder (gen.from), None: trained or reused from the cache
    data_identity_matches: bool | None = None  # with `source`: whether it was trained on this run's training data


@dataclass
class BADiagnostics:
    """How well a Bias Amplifier flags the truly bias-conflicting training samples (bias labels:
    evaluation only); `available` is False on data without bias labels."""

    available: bool
    num_conflicting: int | None = None
    num_flagged: int | None = None
    precision: float | None = None
    recall: float | None = None
    auroc: float | None = None


@dataclass
class BiasEvidence:
    """Whether the Bias Amplifier found a bias, judged without bias labels on the real validation
    split (inference/bias_evidence.py): how often a model trained on the real data (the GCE probe)
    makes the BA's mistakes, against how often it would by chance."""

    ba_val_error: float  # % of val samples the BA misclassifies
    probe_val_error: float  # % the probe misclassifies
    agreement: float  # % of the BA's errors where the probe predicts the same wrong class
    chance_agreement: float  # the same if the two erred independently (from their confusion rates)
    confident_errors: float  # % of the BA's errors made with p_max >= 0.9
    found: bool  # lift >= min_lift (in records older than the lift rule: agreement >= threshold)
    lift: float | None = None  # agreement / chance_agreement; None only in records older than the lift rule
    min_lift: float | None = None
    threshold: float | None = None  # records older than the lift rule only: the agreement (%) that decided `found`


@dataclass
class BAAugmentNote:
    """`ba_augment=auto`'s candidates (zoom, rotate, val_acc) and the one chosen."""

    mode: str
    candidates: list[dict[str, float]]
    chosen: dict[str, float]
    uses_bias_labels: bool = False


@dataclass
class DFRNote:
    """DFR's choice of the last layer's weight decay: each candidate's group-balanced accuracy on one
    half of the validation split after retraining on the other half, and the one chosen."""

    groups: str  # where the validation groups came from: "bias labels (oracle)" | "Bias Amplifier"
    candidates: list[dict[str, float]]
    chosen: float


@dataclass
class TrainingSetNote:
    real: int
    synthetic: int


@dataclass
class CandidatesNote:
    """DiffuBias's top-K bias-conflicting candidates and how many truly are (bias labels:
    evaluation only; None where the dataset has none, as `bias_labels` then says)."""

    k_per_class: int
    num_candidates: int
    bias_labels: str
    truly_conflicting: int | None = None
    conflicting_in_train: int | None = None
    precision: float | None = None
    recall: float | None = None


@dataclass
class CaptionsNote:
    """The candidates' captions and how many the text filter kept (filtered_captions.json)."""

    num_captions: int
    num_kept: int
    model: str
    top_words: list[str]


@dataclass
class GeneratedAuditNote:
    """The diffusion audit's judges on DiffuBias's generated images (audit.py; bias labels:
    evaluation only); only `skipped`, with the reason, where the audit could not run."""

    bias_conflicting_pct: float | None = None
    conditional_acc: float | None = None
    num_images: int | None = None
    bias_judge_real_test_acc: float | None = None
    class_judge_real_test_acc: float | None = None
    bias_labels: str | None = None
    skipped: str | None = None


@dataclass
class GeneratedNote:
    """DiffuBias's generated images and the generator's settings: `local-conditional` (SDEdit with
    this project's class-conditional generator: generator_run, strength, sampler, sampler_steps, w)
    or `diffusers-t2i` (model, steps, guidance, size); the other generator's fields are None."""

    num_images: int
    folder: str
    generator_run: str | None = None
    strength: float | None = None
    sampler: str | None = None
    sampler_steps: int | None = None
    w: float | None = None
    adaptation: str | None = None
    model: str | None = None
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    audit: GeneratedAuditNote | None = None


@dataclass
class DiffuBiasNote:
    """DiffuBias's stages (diffubias/stages.py): candidates, captions (None without a captioner),
    generated images."""

    captioner: str
    generator: str
    candidates: CandidatesNote
    generated: GeneratedNote
    captions: CaptionsNote | None = None


@dataclass
class Notes:
    """Facts a run records beside its metrics; None where the method made no such fact."""

    generator: GeneratorNote | None = None
    ba_augment: BAAugmentNote | None = None
    ba_diagnostics: dict[str, BADiagnostics] | None = None
    ba_diagnostics_use_bias_labels: str | None = None
    bias_evidence: BiasEvidence | None = None
    pseudo_conflicting: int | None = None
    jtt_error_set_size: int | None = None
    dfr: DFRNote | None = None
    diffubias: DiffuBiasNote | None = None
    diffubias_bias_labels: str | None = None
    final_training_set: TrainingSetNote | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Notes":
        return _record(cls, d)


@dataclass
class BiasLabelUse:
    training: bool
    selection: bool
    defaults: list[str] = dataclasses.field(default_factory=list)  # hyperparameters whose default was chosen with bias labels


@dataclass
class RunResult:
    """One finished run (results.json). `val` / `test` map metric names (engine/metrics.py) to
    values; `by_policy` is what each selection policy would have picked."""

    method: str
    dataset: str
    ratio: float | None
    seed: int
    selection: str
    selected_epoch: int
    bias_labels_used: BiasLabelUse
    oracle: bool
    val: dict[str, Any]
    test: dict[str, Any]
    by_policy: dict[str, Any]
    wall_time_s: dict[str, float]
    energy: dict[str, Any]
    notes: Notes
    hparams: dict[str, Any]
    data_options: dict[str, Any]
    device: str
    machine: dict[str, Any]
    version: str
    run_dir: str | None = None  # where it was read from (collect), not written

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run_dir"}
        out["bias_labels_used"] = dataclasses.asdict(self.bias_labels_used)
        out["notes"] = self.notes.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "results.json") -> "RunResult":
        """Read a results.json object; a missing field is a RunError naming `source` and the field."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("run_dir", "notes", "bias_labels_used")]
        missing = [n for n in (*names, "bias_labels_used") if n not in d]
        if missing:
            raise RunError(f"{source}: field '{missing[0]}' is missing; the file is not a results.json of this toolkit (rerun the run)")
        try:
            notes = Notes.from_dict(d.get("notes") or {})
        except TypeError as exc:  # a note of an older format: a required field is missing
            raise RunError(f"{source}: field 'notes': {exc}; the run was written by an older version of this toolkit (rerun it, "
                           "or collect it apart from newer runs)") from exc  # fmt: skip
        return cls(**{n: d[n] for n in names}, bias_labels_used=_record(BiasLabelUse, d["bias_labels_used"]), notes=notes, run_dir=d.get("run_dir"))

    @property
    def total_wall_time_s(self) -> float:
        return sum(self.wall_time_s.values())


_hints = functools.cache(typing.get_type_hints)


def _record(cls: type[T], value: Any) -> T:
    """The record `cls` from its JSON object: nested records (optional ones, and the values of a
    dict) are built by their fields' types; keys the record does not know are ignored. A missing
    required field is a TypeError naming it."""
    hints = _hints(cls)
    return cls(**{f.name: _typed(hints[f.name], value[f.name]) for f in dataclasses.fields(cls) if f.name in value})  # type: ignore[arg-type]


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if dataclasses.is_dataclass(hint):
        return _record(hint, value)  # type: ignore[arg-type]
    if isinstance(hint, types.UnionType) and len(args) == 1:
        return _typed(args[0], value)
    if typing.get_origin(hint) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return {k: _record(args[1], v) for k, v in value.items()}
    return value
