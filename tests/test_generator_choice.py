"""The generator's preset chosen by device and image size, the pinned cache identity, and the
measured duration estimate (printed, recorded, and on a CPU a refusal over max_cpu_hours)."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from diffdebias.data import load_dataset
from diffdebias.data.base import ImageSpec
from diffdebias.diffusion import train as train_mod
from diffdebias.diffusion.estimate import read_estimate
from diffdebias.diffusion.presets import PAPER_SETTINGS
from diffdebias.diffusion.train import DiffusionConfig, resolve_image_size, train_diffusion, train_identity
from diffdebias.errors import ConfigError

from .tiny_data import make_synthetic_set, one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "device": "cpu"}
EMA = "unet_ema/diffusion_pytorch_model.safetensors"


def spec(size: int) -> ImageSpec:
    return ImageSpec(size, 3, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """24 synthetic 8 px images of 3 classes (tiny_data.make_synthetic_set's defaults)."""
    return load_dataset("synthetic", root=make_synthetic_set(tmp_path_factory.mktemp("syn") / "data"))


def test_auto_preset_by_device_and_image_size():
    cpu = DiffusionConfig.resolve(spec(28), device="cpu")
    assert (cpu.preset, cpu.image_size, cpu.max_steps, resolve_image_size(cpu, spec(28))) == ("cpu-tiny", 0, 470, 28)
    assert cpu.to_dict() == {**DiffusionConfig().to_dict(), "preset": "cpu-tiny", "device": "cpu"}  # the CPU budget: the defaults
    gpu = DiffusionConfig.resolve(spec(224), device="cuda")  # a GPU device string is enough: nothing runs here
    assert gpu.preset == "paper" and all(getattr(gpu, k) == v for k, v in PAPER_SETTINGS.items()) and gpu.device == "cuda"
    assert resolve_image_size(gpu, spec(224)) == 64
    small = DiffusionConfig.resolve(spec(32), device=torch.device("cuda", 0))  # small images keep their size
    assert (small.preset, small.image_size, resolve_image_size(small, spec(32))) == ("paper", 0, 32)
    big_on_cpu = DiffusionConfig.resolve(spec(224), {"device": "cpu"})  # the device setting, as DDB passes it
    assert (big_on_cpu.preset, resolve_image_size(big_on_cpu, spec(224))) == ("cpu-tiny", 64)


def test_explicit_settings_are_respected():
    paper_on_cpu = DiffusionConfig.resolve(spec(64), {"preset": "paper"}, device="cpu")
    assert paper_on_cpu.preset == "paper" and paper_on_cpu.max_steps == 100_000 and paper_on_cpu.lr == 1e-4
    tiny_on_gpu = DiffusionConfig.resolve(spec(64), {"preset": "cpu-tiny", "max_steps": 9}, device="cuda")
    assert (tiny_on_gpu.preset, tiny_on_gpu.max_steps, tiny_on_gpu.lr) == ("cpu-tiny", 9, 8e-4)
    up = DiffusionConfig.resolve(spec(28), {"image_size": 32}, device="cuda")
    assert (up.preset, resolve_image_size(up, spec(28))) == ("paper", 32)
    auto_28 = DiffusionConfig.resolve(spec(28), device="cuda")  # rounded up to a size the paper UNet takes
    assert (auto_28.preset, resolve_image_size(auto_28, spec(28))) == ("paper", 32)
    assert resolve_image_size(DiffusionConfig.resolve(spec(30), device="cpu"), spec(30)) == 32
    with pytest.raises(ConfigError, match=r"image_size: the 'paper' UNet halves images 3 times.*multiple of 8; 28 px is not: set image_size=24 or 32"):
        DiffusionConfig.resolve(spec(64), {"image_size": 28}, device="cuda")
    with pytest.raises(ConfigError, match=r"image_size.*multiple of 4; 30 px is not: set image_size=28 or 32"):
        DiffusionConfig.resolve(spec(30), {"image_size": 30}, device="cpu")
    with pytest.raises(ConfigError, match="'preset' must be one of auto, cpu-tiny, paper"):
        DiffusionConfig.resolve(spec(28), {"preset": "huge"})


def test_cpu_identity_is_pinned(tiny):
    """Caches and archived results are keyed by this hash: computed with the code before `preset=auto`
    (DiffusionConfig.for_dataset("synthetic"), the same for colored_fmnist's name)."""
    for overrides in ({}, {"seed": 0, "device": "cpu"}, {"max_cpu_hours": 9, "allow_long": True}):
        assert train_identity(tiny, DiffusionConfig.resolve(tiny, overrides, device="cpu")) == "52225ca110a9179cd7e2"


def test_training_resolves_auto_and_records_a_printed_estimate(tiny, tmp_path, capsys, monkeypatch):
    run = train_diffusion(tiny, DiffusionConfig.from_overrides(TINY), tmp_path / "run")
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("diffusion training: about")]
    assert len(line) == 1 and "for 4 steps" in line[0] and "measured on cpu; preset cpu-tiny at 8 px, batch 4" in line[0]
    assert json.loads((run / "config.json").read_text())["config"]["preset"] == "cpu-tiny"
    est = read_estimate(run)
    assert est["steps"] == 4 and est["estimate_s"] == pytest.approx(4 * est["s_per_step"], abs=0.1) and 1 <= est["timed_steps"] <= 3
    assert json.loads((run / "train_summary.json").read_text())["estimate"] == est
    monkeypatch.setattr(train_mod, "seconds_per_step", lambda *a: pytest.fail("measured a finished run"))
    assert train_diffusion(tiny, DiffusionConfig.from_overrides(TINY), tmp_path / "run") == run
    assert read_estimate(tmp_path) is None


def test_the_estimate_leaves_the_training_unchanged(tiny, tmp_path, monkeypatch):
    measured = train_diffusion(tiny, DiffusionConfig.from_overrides(TINY), tmp_path / "measured", quiet=True)
    monkeypatch.setattr(train_mod, "seconds_per_step", lambda *a: (0.0, 0))
    unmeasured = train_diffusion(tiny, DiffusionConfig.from_overrides(TINY), tmp_path / "unmeasured", quiet=True)
    a, b = load_file(measured / EMA), load_file(unmeasured / EMA)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_long_cpu_run_is_refused_unless_allowed(tiny, tmp_path):
    limited = {**TINY, "max_cpu_hours": 1e-9}
    with pytest.raises(ConfigError) as info:
        train_diffusion(tiny, DiffusionConfig.from_overrides(limited), tmp_path / "run", quiet=True)
    msg = str(info.value)
    assert msg.startswith("diffusion training would take about") and "over max_cpu_hours=1e-09" in msg
    assert all(k in msg for k in ("preset=cpu-tiny", "image_size (now 8)", "max_steps", "batch_size (now 4)", "allow_long=true"))
    assert read_estimate(tmp_path / "run")["steps"] == 4 and not (tmp_path / "run" / "train_state.safetensors").exists()
    run = train_diffusion(tiny, DiffusionConfig.from_overrides({**limited, "allow_long": True}), tmp_path / "run", quiet=True)  # same folder
    assert (run / "COMPLETE").exists()


def test_ddb_on_own_28px_folder_on_a_cpu_picks_a_small_generator_and_prints_its_estimate(tmp_path):
    """`diffdebias run ddb2 --dataset folder_csv --root DIR` with 28 px images: the images keep their
    size, the CPU gets cpu-tiny at 28 px, the estimate is printed and recorded, and the run finishes."""
    from click.testing import CliRunner

    from diffdebias.cli import main

    from .tiny_data import make_folder_csv

    root = make_folder_csv(tmp_path / "data", n_train=40, n_eval=10, size=28)
    sets = {"gen.max_steps": 8, "gen.batch_size": 8, "syn_per_class": 6, "sampler_steps": 2, "ba_epochs": 1, "ba_augment": "none",
            "epochs": 1, "batch_size": 16, "device": "cpu"}  # fmt: skip
    args = ["run", "ddb2", "--dataset", "folder_csv", "--root", str(root), "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(main, [*args, *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert re.search(r"diffusion training: about .* for 8 steps .*preset cpu-tiny at 28 px", res.output), res.output
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["data_options"]["image_size"] == 0 and r["notes"]["generator"]["preset"] == "cpu-tiny"
    estimate = r["notes"]["generator"]["estimate"]
    assert estimate["steps"] == 8 and estimate["image_size"] == 28 and estimate["estimate_s"] > 0
