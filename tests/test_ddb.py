import json

import pytest
from click.testing import CliRunner

from diffdebias.cli import main
from diffdebias.diffusion import train as train_mod
from diffdebias.engine import loop as loop_mod
from diffdebias.run import run_method

from .conftest import require_fmnist
from .tiny_data import make_folder_csv

TINY = {"epochs": 1, "batch_size": 512, "gen.max_steps": 6, "syn_per_class": 4, "sampler_steps": 2, "ba_epochs": 1, "ba_augment": "none"}


@pytest.mark.parametrize("method", ["ddb1", "ddb1_errset", "ddb2"])
def test_each_recipe_runs_from_the_cli(method, tmp_path):
    require_fmnist()
    args = ["run", method, "--dataset", "colored_fmnist", "--ratio", "1", "--out", str(tmp_path / method), "-q"]
    for k, v in {**TINY, "lambda_up": 5}.items() if method == "ddb1_errset" else TINY.items():
        args += ["--set", f"{k}={v}"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / method / "results.json").read_text())
    # Recipe I's weight decay default was chosen for the Group DRO oracle with val bias labels: recorded
    assert r["bias_labels_used"] == {"training": False, "selection": False, "defaults": ["weight_decay (val bias labels)"] if method == "ddb1" else []}
    diag = r["notes"]["ba_diagnostics"]
    for source in ("synthetic", "real"):  # the ablation is measured in every run
        assert 0.0 <= diag[source]["auroc"] <= 1.0 and diag[source]["num_conflicting"] == 540
        assert {"precision", "recall", "num_flagged"} <= set(diag[source])
    assert r["notes"]["generator"]["per_class"] == 4
    assert "pseudo_unbiased_acc" in r["val"] and "val_pseudo_unbiased" in r["by_policy"]
    assert {"diffusion_train", "sampling", "ba_synthetic", "ba_real", "main"} <= set(r["wall_time_s"])


def test_bias_amplifier_never_sees_real_images(tmp_path, monkeypatch):
    require_fmnist()
    seen = []
    real_train_stage = loop_mod.Engine.train_stage

    def spy(self, stage, method_cls, hp, **kw):
        train = self.data.split("train")
        seen.append((str(self.run_dir.name), stage, self.data.name, len(train)))
        return real_train_stage(self, stage, method_cls, hp, **kw)

    monkeypatch.setattr(loop_mod.Engine, "train_stage", spy)
    run_method("ddb2", "colored_fmnist", ratio=1.0, out=tmp_path / "r", overrides={**TINY, "ba_compare": False, "ba_augment": "auto"}, quiet=True)
    ba = [s for s in seen if s[1].startswith("ba_")]
    assert len(ba) == 6  # one BA per augmentation level; the chosen one is used as trained
    assert {(d, name) for d, _, name, _ in ba} == {("ba_synthetic", "synthetic")}
    assert all(n < 40 for *_, n in ba)  # the synthetic training split (4 per class, 90%), not the 54,000 real images
    r = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(r["notes"]["ba_diagnostics"]) == {"synthetic"}
    choice = r["notes"]["ba_augment"]
    best = max(c["val_acc"] for c in choice["candidates"])
    assert choice["chosen"] == [c for c in choice["candidates"] if c["val_acc"] >= best - 0.05][-1]
    assert choice["uses_bias_labels"] is False


def test_ba_source_real_is_the_ablation(tmp_path):
    require_fmnist()
    r = run_method("ddb1", "colored_fmnist", ratio=1.0, out=tmp_path / "r", overrides={**TINY, "ba_source": "real", "ba_compare": False}, quiet=True)
    assert set(r.notes.ba_diagnostics) == {"real"} and r.notes.generator is None
    assert "generator" not in json.loads((tmp_path / "r" / "results.json").read_text())["notes"]  # notes a run did not make are left out


def test_ba_model_sets_the_bias_amplifiers_architecture_only(tmp_path, monkeypatch):
    from diffdebias.errors import ConfigError

    root = str(make_folder_csv(tmp_path / "data"))
    with pytest.raises(ConfigError, match="hyperparameter 'ba_model': unknown model 'vit'; valid: mlp, cnn"):
        run_method("ddb1", "folder_csv", root=root, out=tmp_path / "bad", overrides={"ba_model": "vit"}, quiet=True)
    assert not (tmp_path / "bad").exists()  # refused before anything ran
    models = {}
    real_train_stage = loop_mod.Engine.train_stage

    def spy(self, stage, method_cls, hp, **kw):
        result = real_train_stage(self, stage, method_cls, hp, **kw)
        models[f"{self.run_dir.name}/{stage}"] = type(result.trainer.model).__name__
        return result

    monkeypatch.setattr(loop_mod.Engine, "train_stage", spy)
    tiny = {**TINY, "gen.image_size": 8, "gen.preset": "cpu-tiny", "gen.batch_size": 4, "model": "mlp", "ba_model": "cnn"}
    run = {"root": root, "data_options": {"image_size": 8}, "quiet": True}
    run_method("ddb1", "folder_csv", out=tmp_path / "r", overrides={**tiny, "ba_compare": False}, **run)
    assert models == {"ba_synthetic/ba_zoom1_rot0": "SmallCNN", "r/main": "MLP"}
    models.clear()  # the probe (real-data BA) may take its own architecture: a cheap MLP next to a CNN BA
    run_method("ddb1", "folder_csv", out=tmp_path / "p", overrides={**tiny, "probe_model": "mlp"}, **run)
    assert models == {"ba_synthetic/ba_zoom1_rot0": "SmallCNN", "ba_real/ba_zoom1_rot0": "MLP", "p/main": "MLP"}


def test_recipes_and_seeds_share_one_generator(tmp_path, monkeypatch):
    require_fmnist()
    run_method("ddb1", "colored_fmnist", ratio=1.0, seed=0, out=tmp_path / "a", overrides=TINY, quiet=True)
    monkeypatch.setattr(train_mod, "build_unet", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained a second generator")))
    r = run_method("ddb2", "colored_fmnist", ratio=1.0, seed=1, out=tmp_path / "b", overrides=TINY, quiet=True)
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    assert r.notes.generator.synthetic_set == a["notes"]["generator"]["synthetic_set"]


def test_pseudo_groups_pred_and_binary():
    import torch

    from diffdebias.inference.bias_amplifier import infer_groups

    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1, 2])
    pred = infer_groups(logits, y)  # the BA's predicted class is the pseudo-bias label
    assert pred.num_groups == 9 and pred.groups(y).tolist() == [0, 4, 5, 6]
    binary = infer_groups(logits, y, grouping="binary")
    assert binary.num_groups == 6 and binary.groups(y).tolist() == [0, 2, 3, 5]
    with pytest.raises(Exception, match="ba_grouping"):
        infer_groups(logits, y, grouping="colour")
