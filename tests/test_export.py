"""Shareable generators: export a finished run, load it back verified (safetensors only), use it in a
DDB run with `gen.from` instead of training one, and from the Python API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler

import diffdebias
from diffdebias.data import load_dataset
from diffdebias.diffusion import train as train_mod
from diffdebias.diffusion.export import export_generator, imported_run, load_exported
from diffdebias.io import sha256_file
from diffdebias.diffusion.schedulers import training_scheduler
from diffdebias.diffusion.synthetic import generate_synthetic
from diffdebias.diffusion.train import DiffusionConfig, data_identity, load_unet, train_diffusion
from diffdebias.errors import ConfigError, RunError
from diffdebias.hparams import resolve_hparams
from diffdebias.records import Notes
from diffdebias.run import run_method
from diffdebias.stages import generator as stage_mod

from .tiny_data import make_folder_csv, one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_GEN = {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "device": "cpu"}
TINY_DDB = {"epochs": 1, "batch_size": 16, "device": "cpu", "syn_per_class": 2, "sampler_steps": 2, "ba_epochs": 1, "ba_augment": "none", "ba_compare": False}
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A tiny generator trained on the tiny folder_csv set (8 px, 2 classes, bias labels) and its export."""
    base = tmp_path_factory.mktemp("export")
    root = make_folder_csv(base / "data")
    data = load_dataset("folder_csv", root=root)
    run = train_diffusion(data, DiffusionConfig.from_overrides(TINY_GEN), base / "run", quiet=True)
    return {"base": base, "root": root, "data": data, "run": run, "export": export_generator(run, base / "exported")}


def copy_export(gen, tmp_path):
    return shutil.copytree(gen["export"], tmp_path / "copy")


def test_round_trip_weights_and_samples(gen, tmp_path):
    folder = gen["export"]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "generator.json", "scheduler/scheduler_config.json", "unet/config.json", WEIGHTS]  # fmt: skip
    meta = json.loads((folder / "generator.json").read_text())
    assert meta["data_identity"] == data_identity(gen["data"]) and meta["weights_sha256"] == sha256_file(folder / WEIGHTS)
    assert (meta["num_classes"], meta["null_class"], meta["image_size"], meta["channels"], meta["training"]["steps"]) == (2, 2, 8, 3, 4)
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "diffusers" and front["weights_sha256"] == meta["weights_sha256"] and "gen.from=DIR" in card
    cfg = meta["config"]
    scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")  # a plain diffusers user's load
    expected = training_scheduler(cfg["schedule"], cfg["prediction"], cfg["timesteps"], cfg["beta_start"], cfg["beta_end"]).config
    assert {k: v for k, v in scheduler.config.items() if not k.startswith("_")} == {k: v for k, v in expected.items() if not k.startswith("_")}

    exported = load_exported(folder)
    original = load_unet(gen["run"]).state_dict()
    assert exported.unet.state_dict().keys() == original.keys()
    assert all(torch.equal(exported.unet.state_dict()[k], original[k]) for k in original)
    imported = imported_run(exported)
    written = (imported / "COMPLETE").stat().st_mtime_ns
    assert imported.name.startswith("imported-") and imported_run(exported) == imported
    assert (imported / "COMPLETE").stat().st_mtime_ns == written  # written once, reused
    a = generate_synthetic(gen["run"], 2, steps=2, seed=3, out=tmp_path / "a", quiet=True)
    b = generate_synthetic(imported, 2, steps=2, seed=3, out=tmp_path / "b", quiet=True)
    assert np.array_equal(np.load(a / "images.npy"), np.load(b / "images.npy"))
    assert export_generator(gen["run"], folder) == folder  # an earlier export is replaced
    assert json.loads((folder / "generator.json").read_text())["weights_sha256"] == meta["weights_sha256"]


def test_ddb_run_uses_the_export_without_training(gen, monkeypatch, capsys, isolated_cache):
    def refuse(*a, **k):
        raise AssertionError("trained a generator")

    monkeypatch.setattr(stage_mod, "train_diffusion", refuse)
    monkeypatch.setattr(train_mod, "build_unet", refuse)
    before = set((isolated_cache / "diffusion").glob("*"))
    r = run_method("ddb2", "folder_csv", root=str(gen["root"]), out=gen["base"] / "ddb", overrides={**TINY_DDB, "gen.from": str(gen["export"])}, quiet=True)
    note = r.notes.generator
    assert note.source == str(gen["export"].resolve()) and note.data_identity_matches is True and "imported-" in note.run
    assert r.hparams["gen"] == {"from": str(gen["export"].resolve())} and "diffusion_train" in r.wall_time_s
    assert {p.name for p in set((isolated_cache / "diffusion").glob("*")) - before} <= {Path(note.run).name}  # the imported run only
    assert "warning" not in capsys.readouterr().out

    other = make_folder_csv(gen["base"] / "other", seed=1)  # other training data: warned and recorded
    r = run_method("ddb2", "folder_csv", root=str(other), out=gen["base"] / "ddb-other", overrides={**TINY_DDB, "gen.from": str(gen["export"])}, quiet=True)
    assert r.notes.generator.data_identity_matches is False and "trained on other data" in capsys.readouterr().out
    old = {"run": "r", "synthetic_set": "s", "steps": 4, "seed": 0, "sampler": "dpmpp", "sampler_steps": 2, "w": 1.0, "per_class": 2}
    assert Notes.from_dict({"generator": old}).generator.source is None  # results.json of earlier versions read back


def test_gen_from_is_checked_with_the_hyperparameters(gen, tmp_path):
    with pytest.raises(ConfigError, match=r"'gen.from': '.*nowhere' is not a directory"):
        resolve_hparams("ddb2", "folder_csv", {"gen.from": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=r"drop 'gen.max_steps'"):
        resolve_hparams("ddb2", "folder_csv", {"gen.from": str(gen["export"]), "gen.max_steps": 3})


@pytest.mark.parametrize("name", ["unet/diffusion_pytorch_model.bin", "extra/model.pt", "weights.ckpt"])
def test_a_pickle_capable_file_is_refused(gen, tmp_path, name):
    folder = copy_export(gen, tmp_path)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"not loaded")
    with pytest.raises(RunError, match=rf"{name}: a pickle-capable weight file"):
        load_exported(folder)


def test_changed_weights_card_or_files_are_refused(gen, tmp_path):
    folder = copy_export(gen, tmp_path)
    weights = bytearray((folder / WEIGHTS).read_bytes())
    weights[-5] ^= 0xFF  # one byte of a tensor
    (folder / WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(RunError, match=r"diffusion_pytorch_model.safetensors: its sha256 .* differs from field 'weights_sha256'"):
        load_exported(folder)
    shutil.copyfile(gen["export"] / WEIGHTS, folder / WEIGHTS)
    card = (folder / "README.md").read_text()
    sha = json.loads((folder / "generator.json").read_text())["weights_sha256"]
    (folder / "README.md").write_text(card.replace(sha, "0" * 64))
    with pytest.raises(RunError, match=r"README.md: field 'weights_sha256' of the card"):
        load_exported(folder)
    (folder / "README.md").write_text(card)
    meta = json.loads((folder / "generator.json").read_text())
    (folder / "generator.json").write_text(json.dumps({**meta, "config": {**meta["config"], "timesteps": 500}}))
    with pytest.raises(RunError, match=r"scheduler_config.json: field 'num_train_timesteps'"):
        load_exported(folder)
    (folder / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(RunError, match=r"scheduler_config.json: missing"):
        load_exported(folder)


def test_unfinished_runs_and_occupied_folders_are_refused(gen, tmp_path):
    run = shutil.copytree(gen["run"], tmp_path / "run")
    (run / "COMPLETE").unlink()
    with pytest.raises(RunError, match=r"run: not a finished generator run .*`diffdebias diffusion train"):
        export_generator(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"busy: exists and is not an exported generator"):
        export_generator(gen["run"], tmp_path / "busy")


def test_api_from_pretrained_and_save_pretrained(gen, tmp_path):
    generator = diffdebias.Generator.from_pretrained(gen["export"])
    assert generator.info["data_identity"] == data_identity(gen["data"])
    synthetic = diffdebias.sample_synthetic(generator, per_class=3, steps=2)
    assert sum(len(synthetic.split(s)) for s in ("train", "val", "test")) == 6
    again = diffdebias.Generator(gen["run"]).save_pretrained(tmp_path / "again", audit={"conditional_acc": 90.0, "bias_alignment_rate": 80.0})
    assert sha256_file(again / WEIGHTS) == sha256_file(gen["export"] / WEIGHTS) and "bias alignment rate: 80.0%" in (again / "README.md").read_text()
    with pytest.raises(RunError, match="not a finished generator run"):
        diffdebias.Generator(tmp_path)


def test_cli_export_with_audit_figures_then_a_ddb_run_reuses_it(gen, tmp_path):
    from click.testing import CliRunner

    from diffdebias.cli import main

    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"conditional_acc": 91.5, "bias_alignment_rate": 88.25, "num_images": 20,
                                 "diversity": {"spread": 0.42, "precision": 90.0, "recall": 12.5, "k": 3}}))
    res = CliRunner().invoke(main, ["diffusion", "export", str(gen["run"]), str(tmp_path / "shared"), "--audit", str(audit)])
    assert res.exit_code == 0 and "gen.from=" in res.output, res.output
    card = (tmp_path / "shared" / "README.md").read_text()
    assert "bias alignment rate: 88.25%" in card and "spread 0.42" in card and "recall 12.5% (k = 3)" in card
    args = ["run", "ddb2", "--dataset", "folder_csv", "--root", str(gen["root"]), "--out", str(tmp_path / "ddb2"), "-q",
            "--set", f"gen.from={tmp_path / 'shared'}", *[a for k, v in TINY_DDB.items() for a in ("--set", f"{k}={v}")]]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    note = json.loads((tmp_path / "ddb2" / "results.json").read_text())["notes"]["generator"]
    assert note["source"] == str((tmp_path / "shared").resolve()) and note["data_identity_matches"] is True
    res = CliRunner().invoke(main, ["diffusion", "export", str(gen["run"]), str(tmp_path / "x"), "--audit", str(audit), "--dataset", "folder_csv"])
    assert res.exit_code == 2 and "not both" in res.output
