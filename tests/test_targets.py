"""The goal checks of a recipe on a grid (targets.py): margins against the best label-free baseline
by the larger sample std, the control tolerance, incomplete cells, and the failing-stage rules."""

from __future__ import annotations

import math
from pathlib import Path

from click.testing import CliRunner

from diffdebias.cli import main
from diffdebias.records import BADiagnostics, BiasEvidence, BiasLabelUse, Notes, RunResult
from diffdebias.hparams import FMNIST_28PX, resolve_hparams
from diffdebias.io import write_json_atomic
from diffdebias.recipes import RECOMMENDED
from diffdebias.report.html import _goals_section
from diffdebias.targets import bias_stage, check_targets, true_group_twin, verdicts_markdown


def result(method: str, acc: float, seed: int, *, ratio: float | None = 1.0, control: bool = False, auroc: float = 0.99,
           real_auroc: float = 0.99, found: bool = True, wd: float = 0.01, probe: str = "") -> RunResult:  # fmt: skip
    oracle = method.endswith("oracle")
    ddb = method.startswith("ddb")
    notes = Notes(
        ba_diagnostics={"synthetic": BADiagnostics(True, 100, 120, 80.0, 96.0, auroc), "real": BADiagnostics(True, 100, 90, 90.0, 81.0, real_auroc)} if ddb else None,
        bias_evidence=BiasEvidence(5.0, 6.0, 50.0, 2.0, 70.0, found, lift=25.0, min_lift=5.0) if ddb else None,
    )  # fmt: skip
    return RunResult(method, "colored_fmnist", None if control else ratio, seed, "val_pseudo_unbiased", 3, BiasLabelUse(oracle, False), oracle,
                     {}, {"unbiased_acc": acc}, {}, {"main": 1.0}, {}, notes,
                     {"weight_decay": wd, "model": "mlp", "ba_model": "cnn", "ba_source": "synthetic", "probe_model": probe},
                     {"bias_mode": "independent"} if control else {},
                     "cpu", {}, "test")  # fmt: skip


def stage_check_run(seed: int, auroc: float, ratio: float = 1.0, ba_model: str = "cnn") -> RunResult:
    """The recipe with ba_source=real: one BA, trained on the real images, and no synthetic one."""
    r = result("ddb", 70.0, seed, ratio=ratio)
    r.notes.ba_diagnostics = {"real": BADiagnostics(True, 100, 90, 90.0, 81.0, auroc)}
    r.hparams.update(ba_source="real", ba_model=ba_model)
    return r


def cell(accs: dict[str, list[float]], **kw) -> list[RunResult]:
    return [result(m, a, seed, **kw) for m, vals in accs.items() for seed, a in enumerate(vals)]


BASELINES = {"erm": [55.0, 56.0, 57.0], "gce": [60.0, 61.0, 62.0], "lff": [70.0, 71.0, 72.0], "jtt": [66.0, 66.0, 66.0], "jtt_weighted": [60.0, 60.0, 60.0]}


def test_the_recipe_must_lead_the_best_baseline_by_the_larger_sample_std():
    # lff: mean 71, sample std 1.0; ddb 73 ± 0.5 -> margin 2 > 1: met; 71.9 ± 0.5 -> 0.9: missed
    ahead = check_targets(cell({**BASELINES, "ddb": [72.5, 73.0, 73.5], "resample_oracle": [80.0, 80.0, 80.0]}), "ddb")
    (v,) = ahead
    assert (v.column, v.met, v.stage) == ("rho = 1%", True, "")
    assert v.reference.startswith("lff 71.00 ± 1.00 (n = 3)") and abs(v.margin - 2.0) < 1e-9 and v.needed == 1.0
    (miss,) = check_targets(cell({**BASELINES, "ddb": [71.4, 71.9, 72.4], "resample_oracle": [80.0, 80.0, 80.0]}), "ddb")
    assert miss.met is False and miss.stage == "pseudo-groups"  # the BA ranks well, the bias was found
    assert "resample_oracle (true groups) 80.00" in miss.evidence and "precision 80.0%" in miss.evidence


def test_a_missed_cell_names_the_trainer_when_true_groups_miss_too():
    (v,) = check_targets(cell({**BASELINES, "ddb": [60.0, 61.0, 62.0], "resample_oracle": [71.5, 71.5, 71.5]}), "ddb")
    assert v.met is False and v.stage == "trainer"
    # a twin at another weight decay is no ceiling of the recipe's trainer: not compared
    runs = cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}) + cell({"resample_oracle": [71.5, 71.5, 71.5]}, wd=0.0)
    (v,) = check_targets(runs, "ddb")
    assert v.stage == "pseudo-groups" and "ran at another weight decay: not compared" in v.evidence
    # the grid's twin takes the recipe's weight decay on every 28 px set
    for dataset in FMNIST_28PX:
        assert resolve_hparams("resample_oracle", dataset)["weight_decay"] == resolve_hparams(RECOMMENDED, dataset)["weight_decay"] == 1e-2


def test_stage_rules_separate_generator_ba_and_bias_evidence():
    good = {"ba_auroc": 0.95, "real_ba_auroc": 0.95, "found_all": 1.0, "precision": 80.0, "recall": 96.0, "gap": 0.0}
    assert bias_stage({**good, "precision": 100.0, "recall": 100.0}, twin_misses=False) == "trainer"  # the true groups, found
    assert bias_stage(good, twin_misses=False) == "pseudo-groups"
    assert bias_stage({**good, "found_all": 0.0}, twin_misses=False) == "bias evidence"
    assert bias_stage({**good, "ba_auroc": 0.7, "gap": 0.2}, twin_misses=False) == "generator"
    assert bias_stage({**good, "ba_auroc": 0.7, "gap": 0.02}, twin_misses=False) == "BA ranking"
    assert bias_stage({**good, "ba_auroc": 0.7}, twin_misses=True) == "trainer"
    # a real-data probe of another architecture cannot tell the generator from the BA's ranking
    assert bias_stage({**good, "ba_auroc": 0.7, "gap": math.nan}, twin_misses=False) == "BA ranking or generator"
    (v,) = check_targets(cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}, auroc=0.8, real_auroc=0.75, probe="mlp"), "ddb")
    assert v.stage == "BA ranking or generator" and "BA AUROC 0.800 (cnn on synthetic images; real-data BA 0.750, mlp)" in v.evidence
    (v,) = check_targets(cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}, auroc=0.8, real_auroc=0.75), "ddb")
    assert v.stage == "BA ranking" and "real-data BA 0.750, cnn" in v.evidence
    no_real = cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}, auroc=0.8)
    for r in no_real:
        if r.notes.ba_diagnostics:
            del r.notes.ba_diagnostics["real"]  # ba_compare=false: nothing to separate the two by
    (v,) = check_targets(no_real, "ddb")
    assert v.stage == "BA ranking or generator"
    # a stage-check run (the recipe with ba_source=real, the grid's BA architecture) on one of the cell's seeds separates them
    probed = cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}, auroc=0.8, real_auroc=0.75, probe="mlp")
    assert [v.stage for v in check_targets(probed, "ddb", [stage_check_run(1, 0.92)])] == ["generator"]
    (v,) = check_targets(probed, "ddb", [stage_check_run(1, 0.82)])
    assert v.stage == "BA ranking" and "stage check (the same cnn trained on the real images, seed 1): AUROC 0.820 against 0.800" in v.evidence
    for other in (stage_check_run(7, 0.92), stage_check_run(1, 0.92, ratio=2.0), stage_check_run(1, 0.92, ba_model="mlp")):
        assert [v.stage for v in check_targets(probed, "ddb", [other])] == ["BA ranking or generator"]  # another seed, cell or architecture
    assert true_group_twin("ddb") == "resample_oracle" and true_group_twin("ddb1") == "groupdro"


def test_controls_allow_1_5_points_below_erm_and_blame_a_found_bias():
    ok = check_targets(cell({"erm": [85.0, 86.0, 87.0], "ddb": [84.5, 84.5, 84.5]}, control=True, found=False), "ddb")
    assert [(v.column, v.met) for v in ok] == [("no-bias control", True)]
    (bad,) = check_targets(cell({"erm": [85.0, 86.0, 87.0], "ddb": [80.0, 80.0, 80.0]}, control=True), "ddb")
    assert bad.met is False and bad.stage == "bias evidence" and "bias found in 3/3 seeds" in bad.evidence


def test_a_cell_with_missing_seeds_or_baselines_is_incomplete(tmp_path):
    runs = cell({**BASELINES, "ddb": [80.0, 80.0]})  # two seeds against three
    runs += cell({"erm": [50.0, 50.0, 50.0], "ddb": [60.0, 61.0, 62.0]}, ratio=2.0)  # no lff, gce, jtt
    runs += cell(BASELINES, ratio=5.0)  # the recipe has not run here yet
    verdicts = check_targets(runs, "ddb")
    assert [(v.column, v.met) for v in verdicts] == [("rho = 1%", None), ("rho = 2%", None), ("rho = 5%", None)]
    assert verdicts[2].recipe == "no run" and verdicts[2].evidence == "no run of ddb in this column yet"
    text = verdicts_markdown(verdicts, "ddb")
    assert "0/0 goals met; 3 incomplete." in text and "Failing stage rules" in text
    assert "| colored_fmnist | rho = 5% | no run |" in text and "| - | > " in text
    for i, r in enumerate(cell({**BASELINES, "ddb": [75.0, 75.0, 75.0]})):
        write_json_atomic(tmp_path / f"run{i}" / "results.json", r.to_dict())
        (tmp_path / f"run{i}" / "COMPLETE").write_text("")
    res = CliRunner().invoke(main, ["collect", str(tmp_path), "--targets", "ddb"], catch_exceptions=False)
    assert res.exit_code == 0 and "| colored_fmnist | rho = 1% |" in res.output and "1/1 goals met" in res.output
    probed = cell({**BASELINES, "ddb": [60.0, 61.0, 62.0]}, auroc=0.8, real_auroc=0.75, probe="mlp")
    for folder, runs in (("grid", probed), ("checks", [stage_check_run(1, 0.92)])):
        for i, r in enumerate(runs):
            write_json_atomic(tmp_path / folder / f"run{i}" / "results.json", r.to_dict())
            (tmp_path / folder / f"run{i}" / "COMPLETE").write_text("")
    res = CliRunner().invoke(main, ["collect", str(tmp_path / "grid"), "--targets", "ddb", "--stage-checks", str(tmp_path / "checks")])
    assert res.exit_code == 0 and "| NO | generator |" in res.output, res.output
    alone = CliRunner().invoke(main, ["collect", str(tmp_path), "--stage-checks", str(tmp_path)])
    assert alone.exit_code != 0 and "--stage-checks goes with --targets METHOD" in alone.output
    bad = CliRunner().invoke(main, ["collect", str(tmp_path), "--targets", "nope"])
    assert bad.exit_code != 0 and "unknown method 'nope'" in bad.output


def test_collect_names_the_file_and_field_of_an_older_or_foreign_results_json(tmp_path):
    old = result("ddb", 70.0, 0).to_dict()
    del old["notes"]["bias_evidence"]["found"]  # a note without a field every version wrote
    write_json_atomic(tmp_path / "old" / "results.json", old)
    (tmp_path / "old" / "COMPLETE").write_text("")
    res = CliRunner().invoke(main, ["collect", str(tmp_path)])
    assert res.exit_code == 2 and "old/results.json: field 'notes'" in res.output and "'found'" in res.output and "older version" in res.output
    old = result("ddb", 70.0, 0).to_dict()
    del old["notes"]["ba_diagnostics"]["real"]["available"]  # in a record that is the value of a dict
    write_json_atomic(tmp_path / "old" / "results.json", old)
    res = CliRunner().invoke(main, ["collect", str(tmp_path)])
    assert res.exit_code == 2 and "BADiagnostics" in res.output and "'available'" in res.output and "older version" in res.output
    write_json_atomic(tmp_path / "old" / "results.json", {"method": "erm"})
    res = CliRunner().invoke(main, ["collect", str(tmp_path)])
    assert res.exit_code == 2 and "field 'dataset' is missing" in res.output


def test_bias_evidence_from_before_the_lift_rule_is_read_as_written(tmp_path):
    """Records older than the lift rule decided `found` by the agreement alone (`threshold`): they
    read back with that threshold and no lift, and collect them next to newer runs."""
    old = result("ddb", 70.0, 0).to_dict()
    evidence = old["notes"]["bias_evidence"]
    del evidence["lift"], evidence["min_lift"]
    evidence.update(found=False, threshold=50.0)
    back = RunResult.from_dict(old).notes.bias_evidence
    assert (back.found, back.threshold, back.lift, back.min_lift, back.agreement) == (False, 50.0, None, None, 50.0)
    for name, record in (("old", old), ("new", result("ddb", 72.0, 1).to_dict())):
        write_json_atomic(tmp_path / name / "results.json", record)
        (tmp_path / name / "COMPLETE").write_text("")
    res = CliRunner().invoke(main, ["collect", str(tmp_path)])
    assert res.exit_code == 0 and "71.00" in res.output, res.output


def test_the_readme_names_the_recommended_recipe_and_the_report_checks_its_goals():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"\nRecommended DDB recipe: {RECOMMENDED}\n" in readme
    page = _goals_section(cell({**BASELINES, RECOMMENDED: [75.0, 75.5, 76.0], "resample_oracle": [80.0, 80.0, 80.0]}))
    assert "1/1 goals met; 0 incomplete." in page and "<td>rho = 1%</td>" in page and "Failing stage rules" in page
    assert "No run of the recommended recipe" in _goals_section(cell({"erm": [50.0, 51.0]}))
    probed = cell({**BASELINES, RECOMMENDED: [60.0, 61.0, 62.0]}, auroc=0.8, real_auroc=0.75, probe="mlp")
    assert "<td>BA ranking or generator</td>" in _goals_section(probed)
    assert "<td>generator</td>" in _goals_section(probed, [stage_check_run(1, 0.92)])  # `report --stage-checks DIR`


def test_a_data_seed_equal_to_the_run_seed_is_the_seed_column_not_a_dataset_option():
    from diffdebias.collect import dataset_label

    tied = result("erm", 60.0, 2)
    tied.data_options = {"seed": 2}
    dev = result("erm", 60.0, 0)
    dev.data_options = {"seed": 1}
    assert dataset_label(tied) == "colored_fmnist" and dataset_label(dev) == "colored_fmnist (seed=1)"
