"""Experiment tracking (tracking.py): what a session writes to TensorBoard equals the run's own
logs, unknown or missing trackers are refused, and tracking changes no result."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from diffdebias import tracking
from diffdebias.data import load_dataset
from diffdebias.diffusion.synthetic import generate_synthetic
from diffdebias.diffusion.train import DiffusionConfig, LossHook, train_diffusion
from diffdebias.engine.loop import Engine
from diffdebias.errors import ConfigError
from diffdebias.hparams import resolve_hparams
from diffdebias.trainers import LfF, GroupDRO, TrainerInputs

from .tiny_data import DIFF_SETS, make_folder_csv, make_synthetic_set, one_thread  # noqa: F401 (fixture)

STAGES = (("main", "groupdro", GroupDRO), ("lff", "lff", LfF))


def train_stages(data, run_dir: Path) -> None:
    """Group DRO (oracle groups) as stage 'main' and LfF as stage 'lff', two epochs each."""
    train = data.split("train")
    for stage, method, cls in STAGES:
        hp = resolve_hparams(method, "folder_csv", {"epochs": 2, "batch_size": 16, "device": "cpu"})
        inputs = TrainerInputs(groups=train.y * data.num_bias + train.b) if cls is GroupDRO else None
        Engine(data, run_dir, 0, torch.device("cpu"), quiet=True).train_stage(stage, cls, hp, inputs=inputs)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def numeric(row: dict, prefix: str) -> dict[str, float]:
    """The finite numbers of a metrics row as the tracker names them (nested keys joined by '/')."""
    out = {}
    for k, v in row.items():
        name = f"{prefix}/{k}".replace(",", "_")
        if isinstance(v, dict):
            out |= numeric(v, name)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "epoch":
            out[name] = v
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """The tiny folder_csv set and its two stages trained inside a TensorBoard session."""
    base = tmp_path_factory.mktemp("tracking")
    data = load_dataset("folder_csv", root=make_folder_csv(base / "data"), image_size=8)
    with tracking.session(["tensorboard"], base / "tracked", "tiny", {"method": "groupdro", "hp": {"lr": 1e-3, "sizes": [1, 2]}}):
        assert tracking.active()
        train_stages(data, base / "tracked")
    assert not tracking.active()
    return base, data


def test_epoch_scalars_and_trainer_stats_reach_tensorboard(tiny):
    base, _ = tiny
    logged = scalars(base / "tracked" / "tracking" / "tensorboard" / "tiny")
    for stage, _, _ in STAGES:
        rows = [json.loads(line) for line in (base / "tracked" / f"{stage}.metrics.jsonl").read_text().splitlines()]
        expected: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            for name, v in numeric(row, stage).items():
                expected.setdefault(name, []).append((row["epoch"], float(torch.tensor(v, dtype=torch.float32))))
        assert f"{stage}/val/unbiased_acc" in expected and f"{stage}/test/group_acc/0_1" in expected
        assert {k: logged[k] for k in expected} == expected
    weights = [logged[f"main/train/group_weight/{g}"] for g in range(4)]
    assert all(len(w) == 2 for w in weights)
    for epoch in range(2):  # per-epoch means of a distribution over the groups
        assert sum(w[epoch][1] for w in weights) == pytest.approx(1.0, abs=1e-5)
    assert [s for s, _ in logged["lff/train/w_mean"]] == [1, 2] and 0 < logged["lff/train/w_mean"][0][1] < 1


def test_results_are_the_same_without_a_session(tiny):
    base, data = tiny
    tracking.log_scalars({"loss": 1.0}, 0, prefix="x")  # outside a session: nothing happens
    tracking.log_images({"x": torch.zeros(3, 4, 4, dtype=torch.uint8).numpy()}, 0)
    means = tracking.Means()
    means.add({"w": 1.0}, 4)
    assert not tracking.active() and means.means() == {}
    train_stages(data, base / "plain")
    assert not (base / "plain" / "tracking").exists()
    for stage, _, _ in STAGES:
        rows = [[{k: v for k, v in json.loads(line).items() if k != "train_img_per_s"} for line in (base / d / f"{stage}.metrics.jsonl").read_text().splitlines()]
                for d in ("tracked", "plain")]  # fmt: skip
        assert rows[0] == rows[1]


def test_diffusion_loss_and_synthetic_grid_reach_tensorboard(tmp_path, one_thread):
    data = load_dataset("synthetic", root=make_synthetic_set(tmp_path / "data"))
    hook = LossHook()
    hook.log_every = 2
    with tracking.session(["tensorboard"], tmp_path / "run", "gen", DiffusionConfig.from_overrides(DIFF_SETS).to_dict()):
        gen = train_diffusion(data, DiffusionConfig.from_overrides(DIFF_SETS), tmp_path / "gen", quiet=True, hook=hook)
        generate_synthetic(gen, 1, sampler="ddim", steps=2, out=tmp_path / "syn", quiet=True)
    folder = tmp_path / "run" / "tracking" / "tensorboard" / "gen"
    logged = scalars(folder)
    rows = [json.loads(line) for line in (gen / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for key in ("loss", "lr"):
        assert logged[f"diffusion/{key}"] == [(r["step"], float(torch.tensor(r[key], dtype=torch.float32))) for r in rows]
    acc = EventAccumulator(str(folder), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["synthetic/syn"]


def test_log_scalars_keeps_finite_numbers_only(tmp_path):
    with tracking.session(["tensorboard"], tmp_path, "r", None):
        tracking.log_scalars({"a": {"b": 1, "none": None, "flag": True, "text": "x", "list": [1.0], "nan": math.nan}, "c,d": 2.5}, 3, prefix="p")
    assert scalars(tmp_path / "tracking" / "tensorboard" / "r") == {"p/a/b": [(3, 1.0)], "p/c_d": [(3, 2.5)]}


def test_unknown_and_missing_trackers_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="'comet'.*valid: tensorboard, wandb, mlflow"):
        tracking.check(["tensorboard", "comet"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'diffdebias\[wandb\]'"):
        tracking.check(["wandb"])
    with pytest.raises(ConfigError, match="wandb"), tracking.session(["wandb"], Path("unused"), "r"):
        pass
    assert tracking.check(["tensorboard", "tensorboard"]) == ("tensorboard",) and tracking.check(None) == ()


def test_cli_run_log_with_tensorboard_writes_the_epoch_metrics(tmp_path):
    """The issue's check: `diffdebias run erm --dataset colored_fmnist --ratio 1 --log-with tensorboard`."""
    from click.testing import CliRunner

    from diffdebias.cli import main

    from .conftest import require_fmnist

    require_fmnist()
    out = tmp_path / "erm"
    args = ["run", "erm", "--dataset", "colored_fmnist", "--ratio", "1", "--log-with", "tensorboard", "--out", str(out), "-q",
            "--set", "epochs=2", "--set", "batch_size=1024"]  # fmt: skip
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    logged = scalars(out / "tracking" / "tensorboard" / "colored_fmnist_r1-erm-seed0")
    rows = [json.loads(line) for line in (out / "main.metrics.jsonl").read_text().splitlines()]
    for name in ("val/avg_acc", "val/unbiased_acc", "test/unbiased_acc", "test/ece", "train_loss"):
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in logged[f"main/{name}"]] == [
            (r["epoch"], _get(r, name)) for r in rows]  # fmt: skip
    res = CliRunner().invoke(main, [*args[:6], "--log-with", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "valid: tensorboard, wandb, mlflow" in res.output


def _get(row: dict, name: str) -> float:
    for part in name.split("/"):
        row = row[part]
    return row
