"""Several processes through `accelerate launch` (2 CPU processes, gloo): the runs complete, train
like one process on the same global batches, gather metrics that equal a single-process
evaluation, and shard the sampling of a synthetic set without losing or repeating an image."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffdebias.distributed import Dist
from diffdebias.engine.loop import Engine
from diffdebias.hparams import resolve_hparams
from diffdebias.data import load_dataset
from diffdebias.models import build_model

from .conftest import require_fmnist
from .tiny_data import CLS_SETS, ONE_THREAD_ENV, make_folder_csv

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict:
    return {**os.environ, **ONE_THREAD_ENV, "DIFFDEBIAS_CACHE": str(cache), "DIFFDEBIAS_ENERGY": "0"}


def cli(args: list[str], cache: Path, processes: int = 1) -> subprocess.CompletedProcess:
    """`diffdebias ARGS` in a fresh interpreter, or under `accelerate launch` with `processes` processes."""
    if processes == 1:
        cmd = [sys.executable, "-m", "diffdebias.cli", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "diffdebias.cli", *args]  # fmt: skip
    res = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "main.metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["erm", "lff", "groupdro"])
def test_classifier_under_accelerate_launch_equals_one_process(method, tmp_path):
    make_folder_csv(tmp_path / "data", n_train=96, n_eval=32)
    sets = [a for k, v in CLS_SETS.items() for a in ("--set", f"{k}={v}")]
    base = ["run", method, "--dataset", "folder_csv", "--root", str(tmp_path / "data"), "-q", *sets]
    cli([*base, "--out", str(tmp_path / "one")], tmp_path / "cache")
    two = cli([*base, "--out", str(tmp_path / "two")], tmp_path / "cache", processes=2)
    run = tmp_path / "two"
    assert (run / "COMPLETE").exists() and (run / "main.model.safetensors").exists()
    assert two.stdout.count("selection last -> epoch") == 1  # only the main process prints
    results = json.loads((run / "results.json").read_text())
    assert results["energy"]["processes"] == 2
    # the same global batches: the losses of one process, up to float summation order
    np.testing.assert_allclose(losses(run), losses(tmp_path / "one"), rtol=1e-4)
    # the gathered metrics are those of the saved model evaluated in one process
    data = load_dataset("folder_csv", root=tmp_path / "data", image_size=8)
    hp = resolve_hparams(method, "folder_csv", {k: v for k, v in CLS_SETS.items() if not k.startswith("data.")})
    engine = Engine(data, tmp_path / "eval", 0, torch.device("cpu"), quiet=True)
    model = build_model(hp["model"], data.num_classes, data.spec)
    model.load_state_dict(load_file(run / "main.model.safetensors"))
    single = engine.evaluate(model, hp)
    for split in ("val", "test"):
        for name in ("avg_acc", "unbiased_acc", "wga", "group_acc"):
            assert results[split][name] == single[split][name], (split, name)


def test_diffusion_training_and_sharded_sampling_under_accelerate_launch(tmp_path):
    require_fmnist()
    cache = tmp_path / "cache"
    train = ["diffusion", "train", "--dataset", "colored_fmnist", "--ratio", "1", "--set", "max_steps=50", "--set", "batch_size=16"]
    cli([*train, "--out", str(tmp_path / "g1")], cache)
    cli([*train, "--out", str(tmp_path / "g2")], cache, processes=2)
    g1, g2 = tmp_path / "g1", tmp_path / "g2"
    assert (g2 / "COMPLETE").exists() and json.loads((g2 / "train_summary.json").read_text())["processes"] == 2
    w1, w2 = load_file(g1 / "unet_ema" / "diffusion_pytorch_model.safetensors"), load_file(g2 / "unet_ema" / "diffusion_pytorch_model.safetensors")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4  # DDP on blocks of the global batch = one process
    log1, log2 = (json.loads((g / "train_log.jsonl").read_text().splitlines()[-1]) for g in (g1, g2))
    assert log1["loss"] == pytest.approx(log2["loss"], rel=1e-4)  # the logged loss is the global batch's

    sample = ["diffusion", "sample", "--run", str(g2), "--per-class", "5", "--steps", "2"]
    cli([*sample, "--out", str(tmp_path / "s1")], cache)
    cli([*sample, "--out", str(tmp_path / "s2")], cache, processes=2)
    images, labels = np.load(tmp_path / "s2" / "images.npy"), np.load(tmp_path / "s2" / "labels.npy")
    assert np.bincount(labels).tolist() == [5] * 10  # exactly N per class
    assert len({img.tobytes() for img in images}) == len(images)  # no duplicates
    assert json.loads((tmp_path / "s2" / "meta.json").read_text())["processes"] == 2
    np.testing.assert_array_equal(images, np.load(tmp_path / "s1" / "images.npy"))  # per-class seeds: the same set


def test_single_process_helpers_are_the_identity():
    dist = Dist()
    x = torch.arange(7)
    assert not dist.active and dist.is_main
    assert torch.equal(dist.block(x), x) and dist.block_slice(7) == slice(0, 7)
    assert torch.equal(dist.gather(x), x) and torch.equal(dist.sum(x.float()), x.float())
    loss = torch.tensor(0.5)
    assert dist.weighted(loss, 3, 7) is loss and dist.gather_object("a") == ["a"]
    means = {"loss": loss}
    assert dist.batch_mean(means, 3, 7) is means
    lin = torch.nn.Linear(2, 2)
    assert dist.wrap(lin) is lin


def test_blocks_rebuild_the_global_batch():
    dist = Dist()
    dist.size = 3
    for n in (3, 7, 8, 9):
        parts = []
        for rank in range(3):
            dist.rank = rank
            sl = dist.block_slice(n)
            assert torch.equal(dist.block(torch.arange(n)), torch.arange(n)[sl])
            parts.append(torch.arange(n)[sl])
        assert torch.equal(torch.cat(parts), torch.arange(n))


def test_ddm_under_accelerate_launch_logs_the_global_batch(tmp_path):
    require_fmnist()
    args = ["ddm", "train", "--dataset", "colored_fmnist_pair", "--set", "data.size=16", "--set", "max_steps=25", "--set", "groups=inferred"]
    cli([*args, "--out", str(tmp_path / "one")], tmp_path / "cache")
    cli([*args, "--out", str(tmp_path / "two")], tmp_path / "cache", processes=2)
    one, two = (json.loads((tmp_path / r / "train_log.jsonl").read_text().splitlines()[-1]) for r in ("one", "two"))
    for key in ("loss", "mse", "ce", "indicator_acc"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), key
    assert (tmp_path / "two" / "COMPLETE").exists() and (tmp_path / "two" / "indicator.safetensors").exists()
