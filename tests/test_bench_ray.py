"""The ray launcher: the smoke preset on a local 2-worker Ray instance, skip-if-complete, errors."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from click.testing import CliRunner

from diffdebias.bench import RunSpec, expand, get_preset, launch
from diffdebias.cli import main
from diffdebias.errors import ConfigError

from .conftest import require_fmnist

BENCH = ["bench", "--preset", "smoke", "--launcher", "ray", "--jobs", "2"]


@pytest.fixture(autouse=True, scope="module")
def no_ray_address():
    """A RAY_ADDRESS in the environment would send the runs to that cluster instead of a local instance."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def ray_bench(tmp_path_factory):
    require_fmnist()
    out = tmp_path_factory.mktemp("ray") / "smoke"
    t0 = time.perf_counter()
    res = CliRunner().invoke(main, [*BENCH, "--out", str(out)], catch_exceptions=False)
    print(f"\nsmoke preset on a local 2-worker Ray instance: {time.perf_counter() - t0:.0f}s")
    assert res.exit_code == 0, res.output
    return out, res.output


def test_smoke_bench_runs_on_a_local_ray_instance(ray_bench, isolated_cache):
    out, output = ray_bench
    specs = expand(get_preset("smoke"))
    assert all((out / s.run_dir / "COMPLETE").exists() for s in specs)
    assert f"ran {len(specs)}, skipped 0 complete, failed 0" in output
    for s in specs:  # the local launcher's progress lines
        assert f"] done    {s.run_dir} (" in output
    assert (isolated_cache / "diffusion").is_dir()  # the workers used the driver's DIFFDEBIAS_CACHE
    # The tables hold one row per cell x method, with every seed, as for the local launcher.
    table = pd.read_csv(out / "summary.csv", dtype=str)
    label = {"independent": " (no-bias control)"}
    expected: dict[tuple, int] = {}
    for s in specs:
        key = (s.dataset + label.get(s.data_options.get("bias_mode"), ""), "-" if s.ratio is None else f"{s.ratio:g}", s.method)
        expected[key] = expected.get(key, 0) + 1
    got = {(r.dataset, r.ratio, r.method.removesuffix(" (oracle)")): int(r.seeds) for r in table.itertuples()}
    assert got == expected
    md = (out / "summary.md").read_text()
    assert all(f"| {m} |" in md for m in ("erm", "groupdro (oracle)", "ddb2"))


def test_a_second_ray_bench_skips_every_complete_run(ray_bench):
    out, _ = ray_bench
    specs = expand(get_preset("smoke"))
    stamps = {s.run_dir: (out / s.run_dir / "COMPLETE").stat().st_mtime_ns for s in specs}
    again = CliRunner().invoke(main, [*BENCH, "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert f"ran 0, skipped {len(specs)} complete, failed 0" in again.output
    assert stamps == {s.run_dir: (out / s.run_dir / "COMPLETE").stat().st_mtime_ns for s in specs}


def test_a_failed_ray_run_is_reported_and_the_grid_goes_on(tmp_path):
    bad = RunSpec("erm", "no_such_dataset", None, 0, {}, {}, "no_such_dataset/erm/seed0")
    lines: list[str] = []
    outcomes = launch([bad], tmp_path, launcher="ray", jobs=1, echo=lines.append)
    assert [o.status for o in outcomes] == ["failed"]
    assert "no_such_dataset" in outcomes[0].error
    assert lines[0].startswith("[1/1] failed  no_such_dataset/erm/seed0\n")


def test_unknown_launchers_and_unreachable_clusters_are_refused(tmp_path):
    res = CliRunner().invoke(main, ["bench", "--preset", "smoke", "--out", str(tmp_path / "x"), "--launcher", "nope"])
    assert res.exit_code == 2 and "unknown launcher 'nope'; valid: local, ray" in res.output
    assert not (tmp_path / "x").exists()  # refused before anything was written
    res = CliRunner().invoke(main, ["bench", "--preset", "smoke", "--out", str(tmp_path / "x"), "--address", "auto"])
    assert res.exit_code == 2 and "takes no address" in res.output
    spec = expand(get_preset("smoke"))[0]
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:1'"):
        launch([spec], tmp_path, launcher="ray", address="127.0.0.1:1")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        launch([spec], tmp_path, launcher="ray", address="no-port")
    assert time.perf_counter() - t0 < 20
