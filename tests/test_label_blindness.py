"""Every method that claims to use no bias labels is provably blind to them: run on a small
dataset twice, the second time with the train and val bias labels randomly permuted on disk, it
trains and selects identically (same training losses, selected epoch, test metrics and weights)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from diffdebias.errors import ConfigError
from diffdebias.hparams import resolve_hparams
from diffdebias.recipes import METHODS
from diffdebias.run import run_method

from .tiny_data import make_folder_csv, one_thread  # noqa: F401 - fixture

LABEL_FREE = [m for m, r in METHODS.items() if not r.uses_bias_labels({"groups": "oracle"})]
TINY = {"epochs": 2, "batch_size": 16, "device": "cpu"}
GENERATOR = {"gen.max_steps": 4, "gen.batch_size": 4, "gen.warmup_steps": 1, "gen.preset": "cpu-tiny", "gen.image_size": 8,
             "syn_per_class": 4, "sampler_steps": 2, "ba_epochs": 2, "ba_augment": "none"}  # fmt: skip
DIFFUBIAS = {"bias_epochs": 2, "num_candidates": 4, "sampler_steps": 2, "audit": False}
# metrics that read no train or val bias label (aligned / conflicting accuracy depend on the
# training split's majority bias value, so they change with the permutation by definition)
BLIND_VAL = ("avg_acc", "balanced_acc", "macro_f1", "ece", "worst_class_acc", "per_class")
BLIND_TEST = (*BLIND_VAL, "unbiased_acc", "wga", "group_acc")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """The tiny folder_csv set, and a copy whose train and val bias labels are permuted."""
    base = tmp_path_factory.mktemp("blind")
    true = make_folder_csv(base / "true", n_train=64, n_eval=16)
    permuted = base / "permuted"
    shutil.copytree(true / "img", permuted / "img")  # (a symlink would leave the dataset root: refused)
    rows = list(csv.DictReader((true / "metadata.csv").open()))
    rng = np.random.default_rng(123)
    for split in ("0", "1"):
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        values = [rows[i]["a"] for i in idx]
        for i, v in zip(idx, rng.permutation(values)):
            rows[i]["a"] = v
    with (permuted / "metadata.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert (true / "metadata.csv").read_text() != (permuted / "metadata.csv").read_text()
    return true, permuted


def _overrides(method: str) -> dict:
    hp = dict(TINY)
    if method.startswith("ddb"):
        hp.update(GENERATOR)
    if method == "diffubias":
        hp.update({**DIFFUBIAS, **{k: v for k, v in GENERATOR.items() if k.startswith("gen.")}})
    if method in ("jtt", "ddb1_errset"):
        hp["lambda_up"] = 3
    return hp


def _trace(run_dir: Path) -> dict:
    """What must not change: per-stage training losses and epochs, the selected epoch, test metrics,
    the bias-label-free validation metrics, and every saved weight file, byte for byte."""
    result = json.loads((run_dir / "results.json").read_text())
    logs = {}
    for log in sorted(run_dir.glob("*.metrics.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        logs[log.name] = [(r["epoch"], r["train_loss"], _keep(r["val"], BLIND_VAL), _keep(r["test"], BLIND_TEST)) for r in rows]
    weights = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.model.safetensors"))}
    return {"selected": result["selected_epoch"], "test": _keep(result["test"], BLIND_TEST), "logs": logs, "weights": weights}


def _keep(metrics: dict, keys: tuple[str, ...]) -> dict:
    return {k: metrics[k] for k in keys if k in metrics}


@pytest.mark.parametrize("method", LABEL_FREE)
def test_label_free_methods_train_and_select_identically_with_permuted_bias_labels(method, roots, tmp_path, one_thread):  # noqa: F811
    true, permuted = roots
    traces = []
    for root in (true, permuted):
        result = run_method(method, "folder_csv", root=str(root), out=tmp_path / root.name, overrides=_overrides(method),
                            data_options={"image_size": 8}, quiet=True)  # fmt: skip
        assert result.bias_labels_used.training is False and result.bias_labels_used.selection is False
        traces.append(_trace(tmp_path / root.name))
    assert traces[0]["weights"] and traces[0] == traces[1]


def test_the_check_catches_a_method_that_reads_bias_labels(roots, tmp_path, one_thread):  # noqa: F811
    """The Group DRO oracle trains on the true groups: permuting them changes its training."""
    true, permuted = roots
    traces = []
    for root in (true, permuted):
        run_method("groupdro", "folder_csv", root=str(root), out=tmp_path / root.name, overrides={**TINY, "selection": "last"},
                   data_options={"image_size": 8}, quiet=True)  # fmt: skip
        traces.append(_trace(tmp_path / root.name))
    assert traces[0]["logs"] != traces[1]["logs"] and traces[0]["weights"] != traces[1]["weights"]


@pytest.mark.parametrize("method", ["ddb1", "ddb1_errset"])
def test_safeguard_falls_back_to_erm_when_the_evidence_finds_no_bias(method, roots, tmp_path, monkeypatch, one_thread):  # noqa: F811
    """Minimum lift 1e9 (never met): one group / an empty error set with ERM's settings, i.e. ERM, recorded; 0%: the recipe as it is."""
    from diffdebias.engine.loop import Engine

    true, _ = roots
    seen = {}
    real = Engine.train_stage

    def spy(self, stage, cls, hp, **kw):
        if stage == "main":
            seen[hp["bias_evidence_min_lift"]] = kw["inputs"]
        return real(self, stage, cls, hp, **kw)

    monkeypatch.setattr(Engine, "train_stage", spy)
    notes = {}
    for threshold in (1e9, 0.0):
        r = run_method(method, "folder_csv", root=str(true), out=tmp_path / f"t{threshold:g}", data_options={"image_size": 8}, quiet=True,
                       overrides={**_overrides(method), "safeguard": True, "bias_evidence_min_lift": threshold})  # fmt: skip
        notes[threshold] = (r.notes.bias_evidence, r.selection)
    (no, erm_selection), (yes, own_selection) = notes[1e9], notes[0.0]
    assert no.found is False and yes.found is True and yes.agreement == no.agreement
    # the fallback also takes ERM's weight decay and selection (the BA's pseudo-groups are noise then)
    assert seen[1e9].hparams == {"weight_decay": 0.0, "selection": "last"} and seen[0.0].hparams == {}
    assert (erm_selection, own_selection) == ("last", "val_pseudo_unbiased")
    n = 64
    if method == "ddb1":
        assert seen[1e9].num_groups == 1 and int(seen[1e9].groups.max()) == 0 and seen[0.0].num_groups > 1
    else:
        assert len(seen[1e9].indices) == n and len(seen[0.0].indices) >= n
    # Recipe II has no ERM fallback: it does not declare the key, refused when the hyperparameters are read
    with pytest.raises(ConfigError, match="unknown hyperparameter 'safeguard' for method 'ddb2' \\(the safeguard falls back to ERM, which only Recipe I"):
        resolve_hparams("ddb2", "folder_csv", {"safeguard": True})
