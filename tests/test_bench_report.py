"""Benchmark presets, resume after a kill, collect, and the HTML report in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import diffdebias
from diffdebias import hparams
from diffdebias.bench import expand, get_preset
from diffdebias.bench.launch import generator_key
from diffdebias.cli import main
from diffdebias.data.base import ImageSpec
from diffdebias.data.injected import build_injected
from diffdebias.data.registry import get_entry, resolve_ratio
from diffdebias.recipes import METHODS
from diffdebias.run import RECORD_FILES, copy_records

from .conftest import require_fmnist

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_presets_cover_the_issue_grid():
    cpu = expand(get_preset("cpu"))
    methods = {s.method for s in cpu}
    assert {"erm", "gce", "lff", "jtt", "jtt_weighted", "groupdro", "resample_oracle", "dfr_oracle", "ddb1", "ddb1_errset", "ddb2", "ddb"} <= methods
    cells = {(s.dataset, s.ratio, s.data_options.get("bias_mode")) for s in cpu}
    for d in ("colored_fmnist", "corrupted_fmnist", "background_fmnist"):
        assert {(d, r, None) for r in (0.5, 1.0, 2.0, 5.0)} | {(d, None, "independent")} <= cells
    # the final grid's seeds are new data splits and generators: not the development runs' data seed 1
    assert {s.seed for s in cpu} == {2, 3, 4} and all(s.data_options["seed"] == s.seed for s in cpu)
    assert all(s.overrides["gen.seed"] == s.seed for s in cpu if s.method == "ddb")
    assert len({s.run_dir for s in cpu}) == len(cpu)
    for spec in expand(get_preset("paper")):  # every paper cell names a registered dataset and a valid ratio
        resolve_ratio(get_entry(spec.dataset), spec.ratio)
    smoke = expand(get_preset("smoke"))
    assert all(s.overrides["epochs"] == 2 for s in smoke)
    ddb = [s for s in smoke if s.method == "ddb2"]
    assert ddb and all(s.overrides["gen.max_steps"] == 40 for s in ddb)
    assert all("gen.max_steps" not in s.overrides for s in smoke if s.method == "erm")  # only where declared
    assert len({generator_key(s) for s in ddb}) == 1  # both seeds share one generator


def test_each_preset_states_its_size_and_bench_dry_run_prints_it(tmp_path):
    for name in ("smoke", "cpu", "paper"):
        assert f"{len(expand(get_preset(name)))} runs" in get_preset(name).cost, name
    res = CliRunner().invoke(main, ["bench", "--preset", "cpu", "--out", str(tmp_path), "--dry-run", "--only", "colored_fmnist_r1/erm/*"])
    assert res.exit_code == 0, res.output
    assert "preset cpu: 3 runs, 0 already complete" in res.output and "the whole preset: 15 cells x 13 methods x 3 seeds = 585 runs" in res.output
    assert res.output.count("to run    colored_fmnist_r1/erm/seed") == 3 and not any(tmp_path.iterdir())


def test_an_optional_method_joins_the_grid_once_registered(monkeypatch):
    preset = get_preset("cpu")
    if "diffubias" not in METHODS:
        notes: list[str] = []
        assert not any(s.method == "diffubias" for s in expand(preset, notes))
        assert notes == ["diffubias: not registered, skipped"]
        monkeypatch.setitem(METHODS, "diffubias", METHODS["erm"])
        monkeypatch.setitem(hparams.METHOD_DEFAULTS, "diffubias", {})
    assert sum(s.method == "diffubias" for s in expand(preset)) == 15 * 3


def test_no_bias_control_draws_the_attribute_independently_of_the_class():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    source = {"train": (rng.integers(0, 255, (200, 4, 4), dtype=np.uint8), y), "test": (rng.integers(0, 255, (40, 4, 4), dtype=np.uint8), y[::5])}
    common = dict(num_bias=4, ratio=1.0, seed=0, val_mode="heldout", val_fraction=0.1, spec=ImageSpec(4, 1, (0.0,), (1.0,)),
                  class_names=list("abcd"), bias_names=list("wxyz"), cache=False)  # fmt: skip
    biased = build_injected("t", source, lambda x, b, r: x[:, None], {}, **common)
    control = build_injected("t", source, lambda x, b, r: x[:, None], {}, bias_mode="independent", **common)
    assert (biased.group_counts("train").to_numpy().diagonal() > 40).all()
    for split in ("train", "val"):
        counts = control.group_counts(split).to_numpy()[:, :4]
        assert (counts.max(1) - counts.min(1) <= 1).all()
    assert control.info["ratio"] is None and control.info["bias_mode"] == "independent"


def test_energy_stages_nest_and_record_how_they_were_estimated(monkeypatch):
    from diffdebias import energy

    monkeypatch.delenv("DIFFDEBIAS_ENERGY", raising=False)
    energy.reset()
    with energy.stage("outer"):
        with energy.stage("inner"):  # counted toward the outer stage
            sum(i * i for i in range(300_000))
    stages = energy.stages()
    assert set(stages) == {"outer"}
    row = stages["outer"]
    assert row["energy_kwh"] > 0 and row["co2_kg"] > 0 and row["duration_s"] > 0
    assert abs(row["energy_kwh"] - row["cpu_kwh"] - row["ram_kwh"] - row["gpu_kwh"]) <= 1e-2 * row["energy_kwh"]
    desc = energy.describe()
    assert desc["tracker"].startswith("codecarbon") and desc["country"] and desc["cpu_method"]
    energy.reset()


def _bench_subprocess(out: Path) -> subprocess.Popen:
    src = str(Path(diffdebias.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from diffdebias.cli import main; sys.argv[0] = 'diffdebias'; main()"
    return subprocess.Popen([sys.executable, "-c", code, "bench", "--preset", "smoke", "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


@pytest.fixture(scope="module")
def smoke_bench(tmp_path_factory):
    """The smoke preset, killed (SIGKILL) after its first complete run, then rerun to completion."""
    require_fmnist()
    out = tmp_path_factory.mktemp("bench") / "smoke"
    proc = _bench_subprocess(out)
    deadline = time.monotonic() + 900
    try:
        while not list(out.glob("*/*/*/COMPLETE")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/COMPLETE")}
    results = {p: (p.parent / "results.json").read_bytes() for p in first}
    assert first, proc.stdout.read().decode()[-2000:]
    res = CliRunner().invoke(main, ["bench", "--preset", "smoke", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return {"out": out, "first": first, "results": results, "output": res.output}


def test_smoke_bench_resumes_after_a_kill(smoke_bench):
    out, output = smoke_bench["out"], smoke_bench["output"]
    specs = expand(get_preset("smoke"))
    assert all((out / s.run_dir / "COMPLETE").exists() for s in specs)
    assert f"skipped {len(smoke_bench['first'])} complete" in output
    for path, mtime in smoke_bench["first"].items():  # complete runs were not redone
        assert path.stat().st_mtime_ns == mtime
        assert (path.parent / "results.json").read_bytes() == smoke_bench["results"][path]
    r = json.loads((out / "colored_fmnist_r1/ddb2/seed0/results.json").read_text())
    assert {"diffusion_train", "sampling", "ba_synthetic", "main"} <= set(r["energy"]["stages"])
    assert all(v["energy_kwh"] > 0 for k, v in r["energy"]["stages"].items() if k == "main")
    assert r["energy"]["country"] and r["energy"]["cpu_method"]
    again = CliRunner().invoke(main, ["bench", "--preset", "smoke", "--out", str(out)], catch_exceptions=False)
    assert f"ran 0, skipped {len(specs)} complete" in again.output


def test_collect_shows_policy_and_bias_label_use(smoke_bench, tmp_path):
    csv = tmp_path / "t.csv"
    res = CliRunner().invoke(main, ["collect", str(smoke_bench["out"]), "--csv", str(csv)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = {line.split("|")[3].strip(): line for line in res.output.splitlines() if line.startswith("| colored_fmnist")}
    assert "training (oracle) + val selection" in lines["groupdro (oracle)"] and "val_unbiased (val bias labels)" in lines["groupdro (oracle)"]
    assert "| none |" in lines["ddb2"] and "val_pseudo_unbiased" in lines["ddb2"]
    assert "colored_fmnist (no-bias control)" in res.output
    import pandas as pd

    table = pd.read_csv(csv)
    assert {"selection", "bias_labels", "unbiased_acc", "energy_wh", "co2_g", "wall_time_s"} <= set(table.columns)
    assert re.fullmatch(r"\d+\.\d+ ± \d+\.\d+", table[table["method"] == "erm"]["unbiased_acc"].iloc[0])


def test_generator_key_for_every_run_of_every_preset():
    """Regression: generator_key read `syn_per_class`, which DiffuBias does not declare (KeyError
    before any run of `bench --jobs 2` or `--launcher ray`). DiffuBias shares DDB's generator."""
    from diffdebias.bench.launch import generator_key

    for name in ("smoke", "cpu", "paper"):
        specs = expand(get_preset(name))
        first = min(s.seed for s in specs)
        keys = {s.method: generator_key(s) for s in specs if s.seed == first and s.ratio in (1.0, None)}
        assert keys["erm"] is None and keys["ddb2"] is not None
        assert keys.get("diffubias", keys["ddb2"]) == keys["ddb2"]


def test_collect_by_ratio_puts_methods_against_ratios_and_the_control(smoke_bench):
    res = CliRunner().invoke(main, ["collect", str(smoke_bench["out"]), "--by-ratio", "unbiased_acc"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    pivot = res.output.split("colored_fmnist: unbiased_acc (test)")[1]
    assert "| method | selection | rho = 1% | no-bias control |" in pivot
    rows = {line.split("|")[1].strip(): line for line in pivot.splitlines() if line.startswith("| ")}
    assert list(rows)[1:] == ["erm", "groupdro (oracle)", "ddb2", "diffubias"]  # registry order
    assert rows["erm"].count("±") == 1 and "(n = 1)" in rows["erm"]  # the control has one seed (no spread shown), rho = 1% two
    assert rows["ddb2"].rstrip(" |").endswith("| -")  # no ddb2 run on the control
    bad = CliRunner().invoke(main, ["collect", str(smoke_bench["out"]), "--by-ratio", "nope"])
    assert bad.exit_code != 0 and "unknown metric 'nope'" in bad.output


@pytest.fixture(scope="module")
def report_html(smoke_bench):
    res = CliRunner().invoke(main, ["report", str(smoke_bench["out"]), "--audit-epochs", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return smoke_bench["out"] / "report.html"


def test_report_is_one_self_contained_file(report_html):
    text = report_html.read_text()
    for section in ("glance", "goals", "results", "charts", "classes", "cost", "synthetic", "audit", "ba", "attribution"):
        assert f'id="{section}"' in text
    assert 'alt="per-class F1 of colored_fmnist, ratio 1%"' in text and "<th>ece</th>" in text and "<th>macro_f1</th>" in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(href|src)=\"(https?:)?//", text) and "<link" not in text and "<script" not in text
    assert "Integrated Gradients" in text and "codecarbon" in text and "no-bias control" in text


def test_report_of_an_archive_without_weights(smoke_bench, tmp_path):
    """benchmarks/results keeps each run's records only (results.json, config.json, config.yaml,
    COMPLETE): the report is built from them, with a note where the attribution maps need weights."""
    runs = sorted(d.parent for d in smoke_bench["out"].rglob("COMPLETE") if (d.parent / "results.json").exists())
    assert copy_records(smoke_bench["out"], tmp_path) == len(runs) > 0
    assert copy_records(smoke_bench["out"], tmp_path) == 0  # complete in the archive already: skipped
    for run in runs:
        assert sorted(p.name for p in (tmp_path / run.relative_to(smoke_bench["out"])).iterdir()) == sorted(RECORD_FILES)
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--no-audit"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = (tmp_path / "report.html").read_text()
    assert 'id="attribution"' in text and "no maps, the weights of erm" in text and "are not under this folder" in text


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium / chromium-driver are not installed: `bash scripts/setup.sh --test` installs them (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(report_html.resolve().as_uri())
        tables = driver.execute_script("return Array.from(document.querySelectorAll('table')).map(t => t.rows.length)")
        images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        shot = tmp_path / "report.png"
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(int(height), 8000))
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert len(tables) >= 5 and all(n >= 2 for n in tables)
    assert len(images) >= 10 and all(done and width > 0 for done, width, _ in images), images
    assert {"At a glance", "Results", "Charts", "Synthetic images", "Diffusion audit", "Where the models look"} <= set(headings)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    shutil.copy(report_html, ARTIFACTS / "report.html")
    print(f"\nscreenshot: {shot} (copied to {ARTIFACTS / 'report.png'})")


def test_glance_table_bolds_the_best_unsupervised_cell_of_each_column():
    import pandas as pd

    from diffdebias.report.html import glance_table

    rows = [("erm", "last", 50.0, 86.0), ("groupdro (oracle)", "val_unbiased", 80.0, 90.0), ("ddb2", "val_pseudo_unbiased", 60.0, float("nan"))]
    means = pd.DataFrame(rows, columns=["method", "selection", "rho = 1%", "no-bias control"])
    text = means.astype(str)
    out = glance_table(text, means)
    cells = re.findall(r"<tr( class=oracle)?>(.*?)</tr>", out.split("<tbody>")[1])
    best = [re.findall(r"<td class=best>([^<]*)</td>", body) for _, body in cells]
    assert best == [["86.0"], [], ["60.0"]]  # the oracle is never bold, even where it is highest
    assert [bool(o) for o, _ in cells] == [False, True, False]


def test_seed_scope_all_varies_the_data_split_and_the_generator_with_the_seed():
    from diffdebias.bench.launch import generator_key
    from diffdebias.bench.presets import Cell, Grid, Preset, _methods, expand

    cell = Cell("colored_fmnist", 1.0)
    shared = expand(Preset("t", "", (Grid((cell,), _methods("erm", "ddb2"), (0, 1)),)))
    varied = expand(Preset("t", "", (Grid((cell,), _methods("erm", "ddb2"), (0, 1), seed_scope="all"),)))
    assert all(s.data_options == {} and "gen.seed" not in s.overrides for s in shared)
    assert [(s.method, s.seed, s.data_options, s.overrides.get("gen.seed")) for s in varied] == [
        ("erm", 0, {"seed": 0}, None), ("erm", 1, {"seed": 1}, None), ("ddb2", 0, {"seed": 0}, 0), ("ddb2", 1, {"seed": 1}, 1)]  # fmt: skip
    ddb = [s for s in varied if s.method == "ddb2"]
    assert generator_key(ddb[0]) != generator_key(ddb[1])  # one generator per seed
    assert len({generator_key(s) for s in shared if s.method == "ddb2"}) == 1
