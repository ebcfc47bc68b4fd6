"""The Python API: the README's examples run as written, in order, and what they produce is checked;
the data wrapper's errors and the inferred weights are checked on hand-made inputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from diffdebias import GroupInference, make_dataset
from diffdebias.errors import ConfigError, DatasetError

from .conftest import require_fmnist

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> list[str]:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_examples_run(tmp_path, monkeypatch):
    require_fmnist()
    monkeypatch.chdir(tmp_path)
    blocks = readme_examples()
    assert len(blocks) == 4
    ns: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)  # noqa: S102 - the README's own examples
    mine = ns["mine"]
    assert mine.num_classes == 3 and len(mine.split("train")) + len(mine.split("val")) == 600 and 55 <= len(mine.split("val")) <= 65
    assert (Path(ns["generator"]) / "COMPLETE").exists() and len(ns["synthetic"].split("train")) + 2 * len(ns["synthetic"].split("val")) == 200
    n = len(ns["y"])
    assert ns["scores"].shape == (n,) and ns["groups"].max() < ns["inferred"].num_groups and ns["error_set"].ndim == 1
    assert abs(float(ns["weights"].mean()) - 1) < 1e-4
    # a user-defined model trained in a hand-written loop, on batches drawn by the BA's sampler
    model, opt = ns["model"], ns["opt"]
    assert type(model).__name__ == "MyNet" and type(model).__module__ == "readme"
    assert all(opt.state[p]["step"] == 4096 // 256 for p in model.parameters())
    drawn = torch.tensor(list(ns["sampler"]))
    flagged = ns["inferred"].conflicting.float()
    assert flagged[drawn].mean() > flagged.mean()  # the pseudo-conflicting samples are drawn more often
    assert ns["result"].method == "erm" and ns["result"].test["unbiased_acc"] is not None and ns["result"].notes.generator is None


def test_make_dataset_from_a_torch_dataset_and_bad_inputs():
    x = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(40) % 4
    ds = make_dataset(torch.utils.data.TensorDataset(x, y), (x[:8], y[:8]))
    assert ds.num_bias == 0 and len(ds.split("train")) == 40 and ds.split("test").y.tolist() == y[:8].tolist()
    assert ds.spec.size == 8 and ds.spec.channels == 1
    with pytest.raises(DatasetError, match="split 'train': float images must be in \\[0, 1\\]"):
        make_dataset((torch.rand(10, 3, 8, 8) * 2, torch.zeros(10)))
    with pytest.raises(DatasetError, match="split 'train': images must be N x C x H x W with C = 1 or 3 and H = W"):
        make_dataset((torch.rand(10, 3, 8, 6), torch.zeros(10)))
    with pytest.raises(DatasetError, match="split 'val': 4 images, 3 labels y"):
        make_dataset((x, y), (x[:4], y[:3]))


def test_inferred_weights_and_sampler_known_values():
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])  # the last sample of class 0 is misclassified
    y = torch.tensor([0, 0, 0, 0])
    inferred = GroupInference(torch.zeros(4), logits.argmax(1), logits.argmax(1) != y, 2, "binary")
    assert inferred.error_set.tolist() == [3]
    w = inferred.weights(y, "group")  # groups {0: 3 samples, 1: 1 sample} -> 1/3, 1/3, 1/3, 1, scaled to mean 1
    assert torch.allclose(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert torch.allclose(inferred.weights(y, "upweight", lambda_up=5), torch.tensor([0.5, 0.5, 0.5, 2.5]))
    with pytest.raises(ConfigError, match="weight scheme must be one of group, upweight"):
        inferred.weights(y, "focal")
    assert len(list(inferred.sampler(y, num_samples=10, generator=torch.Generator().manual_seed(0)))) == 10
