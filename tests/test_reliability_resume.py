"""Interruption: a classifier training and a diffusion training are killed with SIGKILL mid-run
(in a subprocess, once a checkpoint exists); resuming completes them with exactly the results of
an uninterrupted run with the same seed (CPU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import diffdebias
from diffdebias.cli import main
from diffdebias.errors import RunError
from diffdebias.state import load_state, save_state, save_weights

from .tiny_data import ONE_THREAD_ENV, cls_args, diff_args, make_folder_csv, make_synthetic_set, one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = str(Path(diffdebias.__file__).resolve().parents[1])

# The child process runs the real CLI; a hook only decides WHEN the parent kills it.
CLASSIFIER_CHILD = r"""
import sys, time
from pathlib import Path
from diffdebias.engine.loop import Engine
from diffdebias.trainers import ERM
ready, seen = Path(sys.argv[1]), {"checkpoints": 0, "steps": 0}
real_checkpoint, real_loss = Engine._checkpoint, ERM.loss
def checkpoint(self, *a, **k):
    real_checkpoint(self, *a, **k)
    seen["checkpoints"] += 1
def loss(self, x, y, idx):
    if seen["checkpoints"] == 2:  # epoch 3: two optimiser steps past the epoch-2 checkpoint, then wait for the kill
        seen["steps"] += 1
        if seen["steps"] == 3:
            ready.touch()
            time.sleep(600)
    return real_loss(self, x, y, idx)
Engine._checkpoint, ERM.loss = checkpoint, loss
from diffdebias.cli import main
main(sys.argv[2:])
"""

DIFFUSION_CHILD = r"""
import sys, time
from pathlib import Path
import diffdebias.state as state
ready, calls, real_save = Path(sys.argv[1]), {"n": 0}, state.save_file
def save_file(tensors, filename, metadata=None):
    calls["n"] += 1
    real_save(tensors, filename, metadata=metadata)
    if calls["n"] == 2:  # the second checkpoint: killed with its temporary file half written
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        ready.touch()
        time.sleep(600)
state.save_file = save_file
from diffdebias.cli import main
main(sys.argv[2:])
"""


def kill_when_ready(script: str, args: list[str], tmp_path: Path, timeout: float = 180) -> None:
    """Run the CLI in a child process and SIGKILL it as soon as its hook says so."""
    ready, log = tmp_path / "ready", tmp_path / "child.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script, str(ready), *args], env={**os.environ, **ONE_THREAD_ENV, "PYTHONPATH": SRC}, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"child ended (rc {proc.wait()}) before the kill point:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL


def invoke(args: list[str], code: int = 0) -> str:
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def _log_rows(path: Path, drop: tuple[str, ...]) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_sigkill_classifier_then_resume_equals_uninterrupted(tmp_path):
    make_folder_csv(tmp_path / "data")
    full, cut = tmp_path / "full", tmp_path / "cut"
    invoke(cls_args(full))
    kill_when_ready(CLASSIFIER_CHILD, cls_args(cut), tmp_path)

    ckpt = cut / "main.ckpt.safetensors"
    assert load_state(ckpt)["epoch"] == 2  # killed in epoch 3: the epoch-2 checkpoint is the last one
    assert not (cut / "results.json").exists() and not (cut / "COMPLETE").exists()
    assert "--resume" in invoke(cls_args(cut), code=2)  # an unfinished run is never silently restarted
    invoke(cls_args(cut, extra=("--resume",)))

    a, b = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    for key in ("selected_epoch", "val", "test", "by_policy", "hparams", "bias_labels_used"):
        assert a[key] == b[key], key
    assert (cut / "COMPLETE").exists() and _same_weights(full / "main.model.safetensors", cut / "main.model.safetensors")
    rows = _log_rows(cut / "main.metrics.jsonl", ("train_img_per_s",))
    assert rows == _log_rows(full / "main.metrics.jsonl", ("train_img_per_s",)) and [r["epoch"] for r in rows] == [1, 2, 3]
    assert not list(cut.glob(".*.tmp"))


def test_sigkill_diffusion_mid_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    data = make_synthetic_set(tmp_path / "data")
    full, cut = tmp_path / "full", tmp_path / "cut"
    invoke(diff_args(data, full))
    kill_when_ready(DIFFUSION_CHILD, diff_args(data, cut), tmp_path)

    # killed while the step-4 checkpoint was being written: the step-2 one is intact, and the
    # half-written temporary file does not read as a checkpoint
    assert load_state(cut / "train_state.safetensors")["step"] == 2
    (partial,) = cut.glob(".train_state.safetensors.*.tmp")
    with pytest.raises(RunError, match="cannot be read"):
        load_state(partial)
    assert not (cut / "COMPLETE").exists() and not (cut / "unet_ema").exists()

    invoke(diff_args(data, cut))  # `diffusion train` resumes by default
    ema = "unet_ema/diffusion_pytorch_model.safetensors"
    assert (cut / "COMPLETE").exists() and _same_weights(full / ema, cut / ema)
    assert _log_rows(cut / "train_log.jsonl", ("elapsed_s",)) == _log_rows(full / "train_log.jsonl", ("elapsed_s",))
    assert not list(cut.glob(".*.tmp"))  # the stale temporary file was cleaned up


LOCK_HOLDER = r"""
import sys, time
from diffdebias.io import exclusive
with exclusive(sys.argv[1], "erm run"):
    print("locked", flush=True)
    time.sleep(600)
"""


def _hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder)], env={**os.environ, **ONE_THREAD_ENV, "PYTHONPATH": SRC}, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def test_one_writer_per_run_directory_and_a_killed_writer_leaves_no_lock(tmp_path, capsys):
    from diffdebias.bench.launch import run_spec
    from diffdebias.bench.presets import RunSpec
    from diffdebias.run import run_method
    from diffdebias.errors import RunBusy
    from diffdebias.io import exclusive

    run_dir = tmp_path / "bench" / "erm" / "seed0"
    holder = _hold_lock(run_dir)
    try:
        with pytest.raises(RunBusy, match=f"pid {holder.pid} on .* is running this erm run now; wait for it"):
            run_method("erm", "colored_fmnist", ratio=1.0, out=run_dir)  # refused before any data is loaded
        outcome = run_spec(RunSpec("erm", "colored_fmnist", 1.0, 0, {}, {}, "erm/seed0"), str(tmp_path / "bench"))
        assert outcome.status == "busy" and "is running this erm run" in outcome.error
    finally:
        holder.kill()
        holder.wait()
    with exclusive(run_dir, "erm run"):  # the OS dropped the killed holder's lock: nothing stale to clean up
        assert (run_dir / ".lock").read_text() == f"pid {os.getpid()} on {socket.gethostname()}"

    holder = _hold_lock(run_dir)  # a cache builder waits for the holder instead of failing
    threading.Timer(0.5, holder.kill).start()
    t0 = time.monotonic()
    with exclusive(run_dir, "generator training", wait=True):
        assert time.monotonic() - t0 >= 0.4
    holder.wait()
    assert f"waiting for pid {holder.pid}" in capsys.readouterr().out


def test_a_filesystem_without_locks_is_warned_about_not_fatal(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    from diffdebias.io import exclusive

    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with exclusive(tmp_path / "run", "erm run"):
        pass
    assert "cannot lock (No locks available); nothing stops a second process" in capsys.readouterr().out


def test_channels_last_weights_and_their_optimizer_state_checkpoint_exactly(tmp_path):
    """CUDA runs hold conv weights in the channels-last format (channels_last=true, the classifiers' default);
    safetensors refuses such non-contiguous tensors, so save_state and save_weights pack them.
    The format is set by hand here: the loops apply it on CUDA only."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 5, 5).contiguous(memory_format=torch.channels_last)).sum().backward()
    opt.step()
    assert not model[0].weight.is_contiguous() and not opt.state_dict()["state"][0]["exp_avg"].is_contiguous()
    save_state(tmp_path / "ckpt.safetensors", {"model": model.state_dict(), "opt": opt.state_dict()})
    save_weights(tmp_path / "w.safetensors", model.state_dict())
    back = load_state(tmp_path / "ckpt.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v) and torch.equal(load_file(tmp_path / "w.safetensors")[k], v)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
