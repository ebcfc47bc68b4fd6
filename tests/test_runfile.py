"""YAML run files: --config on the commands, config.yaml of every run, errors naming file and key."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from diffdebias.cli import main

from .conftest import require_fmnist

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "epochs=2", "--set", "batch_size=1024"]


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_config_yaml_reruns_to_the_same_metrics(tmp_path):
    require_fmnist()
    first = tmp_path / "first"
    res = _run(["run", "erm", "--dataset", "colored_fmnist", "--ratio", "1", "--seed", "3", "--out", str(first), "-q", *TINY,
                "--set", "lr=0.002", "--set", "data.val_mode=uniform"])  # fmt: skip
    assert res.exit_code == 0, res.output
    written = yaml.safe_load((first / "config.yaml").read_text())
    assert written["method"] == "erm" and written["seed"] == 3 and written["ratio"] == 1.0
    assert written["lr"] == 0.002 and written["data"]["val_mode"] == "uniform"
    again = tmp_path / "again"
    res = _run(["run", "--config", str(first / "config.yaml"), "--out", str(again), "-q"])
    assert res.exit_code == 0, res.output
    a, b = (json.loads((d / "results.json").read_text()) for d in (first, again))
    assert (a["val"], a["test"], a["selected_epoch"], a["hparams"]) == (b["val"], b["test"], b["selected_epoch"], b["hparams"])
    assert json.loads((first / "config.json").read_text()) == json.loads((again / "config.json").read_text())
    # provenance: the thread count and the source commit ("+dirty" when tracked files differ from it)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert a["machine"]["threads"] == torch.get_num_threads()
    assert a["machine"]["commit"].split("+")[0] == head if head else a["machine"]["commit"] is None


def test_command_line_overrides_the_file_and_nested_keys_are_dotted(tmp_path):
    require_fmnist()
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("method: erm\ndataset: colored_fmnist\nratio: 1\nseed: 1\nepochs: 1\nbatch_size: 1024\nlr: 0.01\ndata:\n  val_mode: uniform\n")
    res = _run(["run", "--config", str(cfg), "--set", "lr=0.005", "--seed", "2", "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "r" / "results.json").read_text())
    assert (r["method"], r["seed"], r["hparams"]["lr"], r["hparams"]["epochs"]) == ("erm", 2, 0.005, 1)
    assert r["data_options"]["val_mode"] == "uniform"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("method: erm\ndataset: colored_fmnist\nlr_typo: 1\n", "exp.yaml: unknown hyperparameter 'lr_typo'"),
        ("method: erm\ndataset: colored_fmnist\nseed: many\n", "exp.yaml: key 'seed': 'many' is not a valid integer"),
        ("method: erm\ndataset: colored_fmnist\nlr: [\n", "exp.yaml: not valid YAML at line"),
        ("- erm\n- colored_fmnist\n", "exp.yaml: a run file is a mapping"),
        ("method: erm\ndataset: colored_fmnist\nlr:\n", "exp.yaml: key 'lr' has no value"),
        ("method: nope\ndataset: colored_fmnist\n", "unknown method 'nope'"),
    ],
)
def test_bad_run_files_name_the_file_the_key_and_the_fix(tmp_path, text, expected):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(text)
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split()), res.output


def test_a_key_from_the_command_line_is_not_blamed_on_the_file(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("method: erm\ndataset: colored_fmnist\n")
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--set", "oops=1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown hyperparameter 'oops'" in res.output and "exp.yaml" not in res.output


def test_bench_and_diffusion_train_take_run_files(tmp_path):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"preset: smoke\nout: {tmp_path / 'b'}\nonly: ['colored_fmnist_*/erm/*']\ndry_run: true\n")
    res = CliRunner().invoke(main, ["bench", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "to run" in res.output and all("/erm/" in ln for ln in res.output.splitlines() if ln.strip().startswith("to run"))
    cfg = tmp_path / "diff.yaml"
    cfg.write_text("dataset: colored_fmnist\ngen_typo: 3\n")
    res = CliRunner().invoke(main, ["diffusion", "train", "--config", str(cfg)])
    assert res.exit_code == 2 and "diff.yaml: unknown diffusion setting 'gen_typo'" in " ".join(res.output.split()), res.output
