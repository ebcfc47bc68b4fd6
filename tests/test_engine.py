import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from diffdebias.cli import main
from diffdebias.engine.loop import Engine
from diffdebias.run import run_method
from diffdebias.errors import ConfigError, RunError
from diffdebias.hparams import resolve_hparams
from diffdebias.trainers import ERM

from .conftest import require_fmnist
from .tiny_data import make_folder_csv

FAST = ["epochs=2", "batch_size=512"]


@pytest.mark.parametrize("method", ["erm", "gce", "lff", "jtt", "groupdro"])
def test_every_method_runs_from_the_cli(method, tmp_path):
    require_fmnist()
    out = tmp_path / method
    args = ["run", method, "--dataset", "colored_fmnist", "--ratio", "1", "--out", str(out), "-q"]
    for s in FAST + (["jtt_epochs=1"] if method == "jtt" else []):
        args += ["--set", s]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert (out / "COMPLETE").exists() and (out / "main.model.safetensors").exists()
    for key in ("method", "dataset", "ratio", "seed", "selection", "bias_labels_used", "val", "test", "wall_time_s", "version"):
        assert key in results
    for name in ("avg_acc", "unbiased_acc", "wga", "aligned_acc", "conflicting_acc", "avg_acc_train_weighted", "group_acc"):
        assert name in results["test"] and name in results["val"]
    assert results["bias_labels_used"]["training"] is (method == "groupdro")
    assert results["test"]["aligned_acc"] > 50  # it learned something (a biased model only the colour)
    assert len((out / "main.metrics.jsonl").read_text().splitlines()) == 2
    if method == "jtt":
        assert (out / "jtt_stage1.done.json").exists() and results["notes"]["jtt_error_set_size"] > 0
    # a complete run is not redone
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0 and results["test"]["avg_acc"] == json.loads((out / "results.json").read_text())["test"]["avg_acc"]


def test_selection_never_reads_the_test_split(cfmnist, tmp_path):
    hp = resolve_hparams("erm", "colored_fmnist", {"epochs": 4, "selection": "val_avg"})
    test = cfmnist.split("test")
    shuffled = test.subset(torch.arange(len(test)))
    shuffled.y = test.y[torch.randperm(len(test), generator=torch.Generator().manual_seed(1))]
    permuted = replace(cfmnist, splits={**cfmnist.splits, "test": shuffled})
    a = Engine(cfmnist, tmp_path / "a", 0, torch.device("cpu"), quiet=True).train_stage("main", ERM, hp)
    b = Engine(permuted, tmp_path / "b", 0, torch.device("cpu"), quiet=True).train_stage("main", ERM, hp)
    assert a.selected["epoch"] == b.selected["epoch"]
    assert [r["val"] for r in a.history] == [r["val"] for r in b.history]
    assert a.history[-1]["test"]["avg_acc"] != b.history[-1]["test"]["avg_acc"]
    # the saved weights are those of the selected epoch
    from diffdebias.engine.metrics import classification_metrics
    from diffdebias.models import build_model
    from diffdebias.state import load_weights

    model = build_model("mlp", 10, cfmnist.spec)
    model.load_state_dict(load_weights(tmp_path / "a" / "main.model.safetensors"))
    engine = Engine(cfmnist, tmp_path / "a", 0, torch.device("cpu"), quiet=True)
    val = cfmnist.split("val")
    preds = engine.predict(model, val)
    assert classification_metrics(preds, val.y.numpy(), val.b.numpy(), 10, 10)["avg_acc"] == a.selected["val"]["avg_acc"]


@pytest.mark.parametrize("method", ["erm", "lff"])
def test_resume_equals_uninterrupted_run(method, tmp_path, monkeypatch):
    root = str(make_folder_csv(tmp_path / "data"))  # 4 batches an epoch
    kw = dict(root=root, seed=3, data_options={"image_size": 8}, overrides={"epochs": 3, "batch_size": 16, "schedule": "cosine", "model": "mlp"},
              quiet=True)  # fmt: skip
    full = run_method(method, "folder_csv", out=tmp_path / "full", **kw)

    calls = {"n": 0}
    real_evaluate = Engine.evaluate

    def crash_in_epoch_two(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "evaluate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_method(method, "folder_csv", out=tmp_path / "cut", **kw)
    monkeypatch.setattr(Engine, "evaluate", real_evaluate)
    with pytest.raises(RunError, match="--resume"):
        run_method(method, "folder_csv", out=tmp_path / "cut", **kw)
    resumed = run_method(method, "folder_csv", out=tmp_path / "cut", resume=True, **kw)
    assert resumed.test == full.test and resumed.val == full.val
    assert (tmp_path / "cut" / "main.model.safetensors").read_bytes() == (tmp_path / "full" / "main.model.safetensors").read_bytes()
    assert len((tmp_path / "cut" / "main.metrics.jsonl").read_text().splitlines()) == 3


def test_unknown_hyperparameter_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*batch_size"):
        resolve_hparams("erm", "colored_fmnist", {"batchsize": 3})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_hparams("erm", "colored_fmnist", {"lr": "fast"})


def test_nan_loss_stops_with_clear_message(tmp_path, monkeypatch):
    require_fmnist()
    real_loss = ERM.loss

    def nan_loss(self, x, y, idx):
        loss, stats = real_loss(self, x, y, idx)
        return loss * float("nan"), stats

    monkeypatch.setattr(ERM, "loss", nan_loss)
    with pytest.raises(RunError, match="loss became nan"):
        run_method("erm", "colored_fmnist", ratio=1.0, out=tmp_path, overrides={"epochs": 1}, quiet=True)


def test_random_affine_moves_shapes_but_keeps_colours():
    from diffdebias.engine.augment import RandomAffine, build_augment

    torch.manual_seed(0)
    colour = torch.tensor([0.9, 0.45, 0.1])
    x = (torch.rand(16, 1, 28, 28) > 0.5).float() * colour[None, :, None, None]
    aug = RandomAffine(scale=3.0, rotate=90.0)
    out = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(1)))  # drawn from the stage's generator only
    assert not torch.allclose(out, x, atol=0.05)
    intensity = out[:, 0] / colour[0]  # bilinear mixes of the tint and black: each pixel is t * colour
    assert torch.allclose(out, intensity[:, None] * colour[None, :, None, None], atol=1e-5)
    assert isinstance(build_augment({"affine_scale": 2.0, "affine_rotate": 0.0, "augment": True}, 28), RandomAffine)
    assert build_augment({"affine_scale": 1.0, "affine_rotate": 0.0, "augment": False}, 28) is None
