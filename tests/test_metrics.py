import numpy as np
import pandas as pd
import pytest

from diffdebias.collect import SPREAD_NOTE, _pm, ratio_tables, seed_std, selections_label, summary_table
from diffdebias.engine.metrics import classification_metrics
from diffdebias.errors import ConfigError


def test_metrics_against_hand_computed_values():
    # 2 classes x 2 bias values; training cells: (0,0) 8, (0,1) 2, (1,0) 1, (1,1) 9
    train_counts = np.array([[8, 2], [1, 9]])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    b = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1])
    p = np.array([0, 0, 1, 0, 1, 0, 1, 1, 1, 0])
    m = classification_metrics(p, y, b, 2, 2, train_counts)
    # cells: (0,0) 2/3, (0,1) 1/2, (1,0) 1/2, (1,1) 2/3
    assert m["avg_acc"] == pytest.approx(60.0)
    assert m["unbiased_acc"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1 / 2 + 2 / 3) / 4, abs=1e-3)
    assert m["wga"] == pytest.approx(50.0)
    # aligned = (0,0) and (1,1): 4/6 ; conflicting = (0,1) and (1,0): 2/4
    assert m["aligned_acc"] == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert m["conflicting_acc"] == pytest.approx(50.0)
    expected_tw = (8 * 2 / 3 + 2 * 1 / 2 + 1 * 1 / 2 + 9 * 2 / 3) / 20
    assert m["avg_acc_train_weighted"] == pytest.approx(100 * expected_tw, abs=1e-3)
    assert m["worst_class_acc"] == pytest.approx(60.0)
    assert m["group_acc"]["0,1"] == pytest.approx(50.0)


def test_empty_cells_are_skipped_not_zero():
    train_counts = np.array([[5, 1, 0], [0, 5, 1]])
    y = np.array([0, 0, 1, 1])
    b = np.array([0, 0, 1, 2])  # cells (0,1), (0,2), (1,0) are empty in this split
    p = np.array([0, 1, 1, 0])
    m = classification_metrics(p, y, b, 2, 3, train_counts)
    assert m["group_acc"]["0,1"] is None and m["group_acc"]["1,0"] is None
    assert m["unbiased_acc"] == pytest.approx((50 + 100 + 0) / 3, abs=1e-3)
    assert m["wga"] == 0.0
    assert m["aligned_acc"] == pytest.approx(100 * 2 / 3, abs=1e-3)  # (0,0) x2 and (1,1)
    assert m["conflicting_acc"] == 0.0  # (1,2)


def test_unknown_bias_gives_only_label_free_metrics():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([-1, -1, -1]), 2, 2, None)
    assert m["avg_acc"] == pytest.approx(200 / 3, abs=1e-3)
    assert m["worst_class_acc"] == 50.0
    assert m["unbiased_acc"] is None and m["wga"] is None and m["conflicting_acc"] is None


def test_conflicting_only_split():
    # like BFFHQ's test split: only bias-conflicting samples, aligned_acc is undefined
    m = classification_metrics(np.array([1, 1]), np.array([0, 1]), np.array([1, 0]), 2, 2, np.array([[9, 1], [1, 9]]))
    assert m["aligned_acc"] is None and m["conflicting_acc"] == 50.0


def test_urbancars_gaps_against_hand_computed_values():
    factors = {
        "bg": {"divisor": 2, "modulus": 2, "aligned_when": "factor == y"},
        "co_occur_obj": {"divisor": 1, "modulus": 2, "aligned_when": "factor == y"},
    }
    # class 0 aligned cell b=0 (bg 0, co 0); class 1 aligned cell b=3 (bg 1, co 1)
    train_counts = np.array([[90, 4, 4, 2], [2, 4, 4, 90]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    b = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    p = np.array([0, 0, 1, 1, 1, 1, 0, 0])
    m = classification_metrics(p, y, b, 2, 4, train_counts, factors)
    # cells all have one sample; correct: (0,0) (0,1) (1,3) (1,2) -> 1, others 0
    id_acc = 100 * (90 * 1 + 4 * 1 + 4 * 0 + 2 * 0 + 2 * 0 + 4 * 0 + 4 * 1 + 90 * 1) / 200
    assert m["avg_acc_train_weighted"] == pytest.approx(id_acc)
    # bg conflicts only: (0, b=2) wrong, (1, b=1) wrong -> 0%
    assert m["bg_gap"] == pytest.approx(0 - id_acc)
    # co-occurring object conflicts only: (0, b=1) right, (1, b=2) right -> 100%
    assert m["co_occur_obj_gap"] == pytest.approx(100 - id_acc)
    # both conflict: (0, b=3) wrong, (1, b=0) wrong
    assert m["bg+co_occur_obj_gap"] == pytest.approx(0 - id_acc)


def test_pseudo_group_metrics_need_no_bias_labels():
    from diffdebias.engine.metrics import pseudo_group_metrics

    y = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array([0, 0, 1, 2, 3, 3])  # y * 2 + inferred conflicting
    preds = np.array([0, 0, 1, 1, 1, 0])
    m = pseudo_group_metrics(preds, y, groups)
    assert m["pseudo_unbiased_acc"] == pytest.approx((100 + 0 + 100 + 50) / 4)
    assert m["pseudo_wga"] == 0.0


def test_balanced_accuracy_per_class_scores_and_ece_hand_computed():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m = classification_metrics(p, y, np.full(4, -1), 2, 0, probs=probs)
    assert m["balanced_acc"] == pytest.approx(75.0)  # recalls 1/2 and 2/2
    assert m["per_class"]["precision"] == pytest.approx([100.0, 100 * 2 / 3], abs=1e-3)
    assert m["per_class"]["recall"] == pytest.approx([50.0, 100.0])
    assert m["per_class"]["f1"] == pytest.approx([100 * 2 / 3, 80.0], abs=1e-3)
    assert m["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2, abs=1e-3)
    # each confidence alone in one of 15 bins: ECE = mean |correct - confidence| = (0.1 + 0.6 + 0.2 + 0.3) / 4
    assert m["ece"] == pytest.approx(30.0, abs=1e-3)
    assert classification_metrics(p, y, np.full(4, -1), 2, 0)["ece"] is None  # no probabilities, no ECE


def test_spread_is_the_sample_std_and_one_seed_shows_n_1():
    assert seed_std(pd.Series([1.0, 2.0, 3.0])) == 1.0  # ddof = 1 (the population std would be 0.816)
    assert _pm(pd.Series([10.0, 20.0, 30.0])) == "20.00 ± 10.00"
    assert _pm(pd.Series([59.48])) == "59.48 (n = 1)"
    assert "ddof = 1" in SPREAD_NOTE


def test_defaults_chosen_with_bias_labels_are_recorded_unless_overridden():
    from diffdebias.collect import bias_label_use
    from diffdebias.hparams import defaults_chosen_with_bias_labels, resolve_hparams

    assert defaults_chosen_with_bias_labels("ddb1", "colored_fmnist", {}) == ["weight_decay (val bias labels)"]
    assert defaults_chosen_with_bias_labels("ddb", "background_fmnist", {}) == [
        "gen (development runs, data seed 1)", "weight_decay (development runs, data seed 1)", "ba_model (development runs, data seed 1)"]
    assert defaults_chosen_with_bias_labels("ddb1", "colored_fmnist", {"weight_decay": "0.01"}) == []  # the user's own choice
    assert defaults_chosen_with_bias_labels("ddb2", "colored_fmnist", {}) == []
    # a dataset's generator budget, in every method that trains a generator; overridden by any gen.* key
    assert defaults_chosen_with_bias_labels("ddb2", "background_fmnist", {}) == ["gen (development runs, data seed 1)"]
    assert defaults_chosen_with_bias_labels("ddb2", "background_fmnist", {"gen.max_steps": 10}) == []
    assert defaults_chosen_with_bias_labels("erm", "background_fmnist", {}) == []
    assert resolve_hparams("ddb2", "background_fmnist")["gen"] == {"max_steps": 3000}
    assert resolve_hparams("ddb2", "background_fmnist", {"gen.max_steps": 10, "gen.lr": 1e-3})["gen"] == {"max_steps": 10, "lr": 1e-3}
    # the recommended recipe's defaults on the 28 px sets
    hp = resolve_hparams("ddb", "corrupted_fmnist")
    assert (hp["weight_decay"], hp["ba_model"], hp["probe_model"], hp["safeguard"], hp["model"]) == (1e-2, "cnn", "mlp", True, "mlp")
    # the safeguard's evidence needs the real-data probe: refused when the hyperparameters are read, not after the BA trained
    for off in ({"ba_source": "real"}, {"ba_compare": False}):
        with pytest.raises(ConfigError, match="safeguard=true needs the bias evidence.*or set safeguard=false"):
            resolve_hparams("ddb", "corrupted_fmnist", off)
        assert resolve_hparams("ddb", "corrupted_fmnist", {**off, "safeguard": False})["safeguard"] is False
    assert bias_label_use(False, False, ["weight_decay (val bias labels)"]) == "defaults chosen with bias labels: weight_decay (val bias labels)"
    assert bias_label_use(False, False) == "none"


def test_bias_evidence_agreement_chance_and_lift_by_hand():
    import torch

    from diffdebias.inference.bias_evidence import bias_evidence

    y = torch.tensor([0, 0, 1, 1])
    ba = torch.nn.functional.one_hot(torch.tensor([1, 0, 0, 1]), 2).float() * 5  # wrong on samples 0 and 2
    probe = torch.nn.functional.one_hot(torch.tensor([1, 0, 1, 1]), 2).float()  # repeats the BA's mistake on sample 0 only
    ev = bias_evidence(ba, probe, y, min_lift=5.0)
    # agreement 1/2; chance = mean(P_probe(1 | 0), P_probe(0 | 1)) = mean(1/2, 0) = 1/4; lift 2
    assert (ev.ba_val_error, ev.probe_val_error, ev.agreement, ev.chance_agreement, ev.lift) == (50.0, 25.0, 50.0, 25.0, 2.0)
    assert ev.found is False and bias_evidence(ba, probe, y, min_lift=2.0).found is True
    assert ev.confident_errors == 100.0  # softmax of (5, 0): p_max 0.993


def test_a_run_that_changed_its_own_policy_stays_in_its_methods_row():
    """Regression: the tables grouped by the policy that chose each run's epoch, so the seed where
    `ddb`'s safeguard fell back to ERM (`last`) left its method's row, and the row's mean was over
    the other seeds only (55.54 over three seeds printed as 56.51 over two and 53.60 alone)."""
    rows = [("colored_fmnist", 1.0, "ddb", "val_pseudo_unbiased", 60.0, 2), ("colored_fmnist", 1.0, "ddb", "val_pseudo_unbiased", 62.0, 3),
            ("colored_fmnist", 1.0, "ddb", "last", 55.0, 4), ("colored_fmnist (no-bias control)", None, "ddb", "last", 80.0, 2),
            ("colored_fmnist", 1.0, "erm", "last", 50.0, 2)]  # fmt: skip
    frame = pd.DataFrame([{"dataset": d, "ratio": r, "method": m, "selection": s, "policy": "last" if m == "erm" else "val_pseudo_unbiased",
                           "bias_labels": "none", "seed": seed, "unbiased_acc": v} for d, r, m, s, v, seed in rows])  # fmt: skip
    table = summary_table(frame)
    ddb = table[(table["method"] == "ddb") & (table["ratio"] == "1")]
    assert len(ddb) == 1 and ddb["seeds"].item() == 3 and ddb["unbiased_acc"].item() == _pm(pd.Series([60.0, 62.0, 55.0]))
    assert ddb["selection"].item() == "val_pseudo_unbiased (2 of 3), last (1 of 3)"
    assert list(table.columns[:6]) == ["dataset", "ratio", "method", "selection", "bias_labels", "seeds"]
    pivot = ratio_tables(frame, "unbiased_acc")["colored_fmnist"].set_index("method")
    assert pivot.loc["ddb", "rho = 1%"] == _pm(pd.Series([60.0, 62.0, 55.0])) and pivot.loc["ddb", "no-bias control"] == "80.00 (n = 1)"
    assert pivot.loc["ddb", "selection"] == "val_pseudo_unbiased (2 of 4), last (2 of 4)" and pivot.loc["erm", "selection"] == "last"
    assert selections_label(pd.Series(["last", "val_avg", "val_avg"])) == "val_avg (2 of 3), last (1 of 3)"
