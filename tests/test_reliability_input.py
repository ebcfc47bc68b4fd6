"""Bad input: malformed metadata, label and image files either load or raise the project's own error.

Property-based (hypothesis): every loader that reads a user's file is fed malformed versions of
it; any exception other than a DiffDebiasError (DatasetError / ConfigError) fails the test.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffdebias.data import load_dataset
from diffdebias.data.base import BiasedDataset, load_image
from diffdebias.data.idx import load_mnist_like, read_idx
from diffdebias.errors import ConfigError, DatasetError, DiffDebiasError
from diffdebias.hparams import resolve_hparams

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cell values: valid integers, out-of-range and malformed numbers, non-ASCII digits, paths that
# leave the root, CSV metacharacters, whitespace and arbitrary text.
CELLS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", " 1 ", "+1", "3", "-2", "99", "1e3", "1.0", "0x1", "", " ", "nan", "NaN", "None",
                     "٣", "１", "99999999999999999999", "a.png", "img/b.png", "../x.png", "/etc/passwd", "C:\\x.png",
                     "sub/../../x.png", '"', "'", ",", "\n", "\x00", "é", "\\"]),
    st.text(max_size=8),
    st.integers(-(2**70), 2**70).map(str),
)


def _csv_text(draw_cols: list[str], rows: list[list[str]]) -> str:
    lines = [",".join(draw_cols)] + [",".join(r) for r in rows]
    return "\n".join(lines) + "\n"


@st.composite
def metadata_csv(draw, columns: tuple[str, ...]) -> str:
    """A metadata file around the expected header: columns dropped, duplicated, padded, extra;
    rows of arbitrary cells, ragged lengths; or plain random text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    cols = list(columns)
    if draw(st.booleans()):
        cols = draw(st.permutations(cols))
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["drop", "dup", "pad", "extra"]))
        i = draw(st.integers(0, len(cols) - 1)) if cols else 0
        if op == "drop" and cols:
            cols.pop(i)
        elif op == "dup" and cols:
            cols.append(cols[i])
        elif op == "pad" and cols:
            cols[i] = f" {cols[i]} "
        else:
            cols.append(draw(st.text(min_size=1, max_size=4)))
    n_rows = draw(st.integers(0, 8))
    rows = [[draw(CELLS) for _ in range(len(cols) + draw(st.integers(-1, 1)))] for _ in range(n_rows)]
    return _csv_text(cols, rows)


@st.composite
def valid_rows(draw, make_row) -> str:
    """Mostly-valid rows (so that loads also succeed), one cell replaced by a bad value at times."""
    rows = [make_row(i, split) for i, split in enumerate([0, 1, 2] + draw(st.lists(st.integers(0, 2), max_size=6)))]
    if draw(st.booleans()):
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, len(rows[r]) - 1))
        rows[r][c] = draw(CELLS)
    return rows


def check_loads_or_refuses(name: str, root: Path, **options) -> BiasedDataset | None:
    """Load `name`; only a DiffDebiasError may be raised (any other exception fails the test)."""
    try:
        return load_dataset(name, root=root, **options)
    except DiffDebiasError as exc:
        assert str(exc)  # a message, naming what to fix
        return None


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)


# ---------------------------------------------------------------------------- metadata CSVs
FOLDER_CSV = ("id", "filename", "split", "y", "a")
WATERBIRDS = ("img_id", "img_filename", "y", "split", "place")


@FUZZ
@given(st.one_of(metadata_csv(FOLDER_CSV), valid_rows(lambda i, s: [f"i{i}", f"img/{i}.png", str(s), str(i % 2), str(i % 3 - 1)]).map(
    lambda rows: _csv_text(list(FOLDER_CSV), rows))))
def test_folder_csv_metadata_fuzz(text):
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d) / "metadata.csv", text)
        ds = check_loads_or_refuses("folder_csv", Path(d))
        if ds is not None:  # what loaded is consistent: labels in range, paths inside the root
            for split in ds.splits.values():
                assert all(p.resolve().is_relative_to(Path(d).resolve()) for p in split.paths)
                assert int(split.y.max()) < ds.num_classes


@FUZZ
@given(st.one_of(metadata_csv(WATERBIRDS), valid_rows(lambda i, s: [str(i), f"001.Bird/{i}.jpg", str(i % 2), str(s), str(i % 2)]).map(
    lambda rows: _csv_text(list(WATERBIRDS), rows))))
def test_waterbirds_metadata_fuzz(text):
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d) / "metadata.csv", text)
        ds = check_loads_or_refuses("waterbirds", Path(d))
        if ds is not None:
            assert ds.num_classes == 2 and all(p.resolve().is_relative_to(Path(d).resolve()) for s in ds.splits.values() for p in s.paths)


@FUZZ
@given(
    st.one_of(metadata_csv(("image_id", "partition")),
              valid_rows(lambda i, s: [f"{i:06d}.jpg", str(s)]).map(lambda r: _csv_text(["image_id", "partition"], r))),
    st.one_of(metadata_csv(("image_id", "Blond_Hair", "Male")),
              valid_rows(lambda i, s: [f"{i:06d}.jpg", ("1", "-1")[i % 2], ("-1", "1")[s % 2]]).map(
                  lambda r: _csv_text(["image_id", "Blond_Hair", "Male"], r))),
)
def test_celeba_metadata_fuzz(partition, attributes):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "img_align_celeba").mkdir()
        _write(root / "list_eval_partition.csv", partition)
        _write(root / "list_attr_celeba.csv", attributes)
        check_loads_or_refuses("celeba", root)


# ------------------------------------------------------------------------- label file names
NAMES = st.one_of(
    st.from_regex(r"[0-9]{1,3}_-?[0-9]{1,3}_-?[0-9]{1,3}\.(png|jpg|PNG|txt)", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12),
)


@FUZZ
@given(st.lists(NAMES, min_size=1, max_size=6), st.lists(NAMES, min_size=1, max_size=3))
def test_folder_label_names_fuzz(train_names, test_names):
    """cmnist-style folders whose file names carry the labels: odd names load or are refused."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for folder, names in (("1pct/align", train_names), ("1pct/conflict", train_names[:1]), ("valid", test_names), ("test", test_names)):
            for n in names:
                if n in (".", "..") or "\\" in n:
                    continue
                _write(root / folder / n, b"")
        check_loads_or_refuses("cmnist", root, ratio=1.0)


# ---------------------------------------------------------------------------------- IDX files
def _idx(labels: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, labels.ndim) + b"".join(struct.pack(">I", n) for n in labels.shape) + labels.tobytes()


@FUZZ
@given(st.one_of(
    st.binary(max_size=64),
    st.tuples(st.integers(0, 3), st.binary(max_size=8)).map(lambda t: _idx(np.arange(10, dtype=np.uint8) % 10)[: 4 + 4 * t[0]] + t[1]),
    st.lists(st.integers(0, 255), max_size=12).map(lambda v: _idx(np.array(v, dtype=np.uint8))),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=16)).map(lambda t: bytes([0, 0, t[0], t[1]]) + t[2]),
), st.booleans())
def test_idx_label_files_fuzz(labels, gz):
    """MNIST-style label files (random bytes, bad magic, truncated, labels > 9): read or refused."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        images = struct.pack(">BBBBIII", 0, 0, 0x08, 3, 10, 28, 28) + bytes(10 * 28 * 28)
        for prefix in ("train", "t10k"):
            (root / f"{prefix}-images-idx3-ubyte").write_bytes(images)
            name = f"{prefix}-labels-idx1-ubyte" + (".gz" if gz else "")
            (root / name).write_bytes(gzip.compress(labels) if gz and len(labels) % 2 else labels)  # also a .gz that is not gzip
        try:
            out = load_mnist_like(root)
        except DatasetError:
            return
        assert out["train"][1].ndim == 1 and out["train"][1].max(initial=0) <= 9


def test_idx_header_claiming_huge_dims_is_refused(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBBIII", 0, 0, 0x0D, 3, 2**31, 2**31, 2**31))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)


# ------------------------------------------------------------------------- synthetic sets
@FUZZ
@given(
    labels=st.one_of(
        st.lists(st.integers(0, 2), min_size=8, max_size=8).map(lambda v: np.array(v, dtype=np.int64)),
        st.lists(st.integers(-3, 12), min_size=0, max_size=8).map(lambda v: np.array(v, dtype=np.int64)),
        st.sampled_from([np.zeros((2, 3)), np.array(["a", "b", "c"]), np.array([0.5, np.nan, 2.0]), np.array(3), np.array([True, False, True])]),
    ),
    meta=st.one_of(
        st.just({"num_classes": 3}),
        st.fixed_dictionaries({"num_classes": st.one_of(st.integers(-2, 20), st.text(max_size=3), st.none(), st.floats(allow_nan=True))}),
        st.sampled_from([[], "x", 3, None, {"digest": "x"}, {"digest": {"images.npy": 1}}, {"class_names": 5}]),
    ),
    shape=st.sampled_from([(8, 3, 4, 4), (8, 1, 4, 4), (8, 2, 4, 4), (8, 3, 4, 5), (8, 3, 0, 0), (8, 4, 4), (0, 3, 4, 4)]),
)
def test_synthetic_label_files_fuzz(labels, meta, shape):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        np.save(root / "images.npy", np.zeros(shape, dtype=np.uint8))
        np.save(root / "labels.npy", labels)
        (root / "meta.json").write_text(json.dumps(meta))
        ds = check_loads_or_refuses("synthetic", root)
        if ds is not None:
            assert sum(len(s) for s in ds.splits.values()) == len(labels)


# ------------------------------------------------------------------------------ image files
def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


@FUZZ
@given(st.one_of(
    st.binary(max_size=64),
    st.tuples(st.integers(0, len(PNG)), st.binary(max_size=16)).map(lambda t: PNG[: t[0]] + t[1]),
    st.tuples(st.integers(8, len(PNG) - 1), st.integers(0, 255)).map(lambda t: PNG[: t[0]] + bytes([t[1]]) + PNG[t[0] + 1 :]),
    st.binary(max_size=32).map(lambda b: b"\xff\xd8\xff\xe0" + b),  # JPEG magic, then garbage
    st.binary(max_size=32).map(lambda b: b"GIF89a" + b),
))
def test_corrupt_image_names_the_file(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sample_1_2.png"
        path.write_bytes(data)
        try:
            img = load_image(path, 8, 3)
        except DatasetError as exc:
            assert str(path) in str(exc)
        else:
            assert img.shape == (3, 8, 8)


@pytest.mark.parametrize("payload", [b"", b"not an image", PNG[: len(PNG) // 2]])
def test_corrupt_image_in_a_dataset_names_the_file(tmp_path, payload):
    """A corrupt file of a folder_csv dataset: the error on access names it."""
    (tmp_path / "img").mkdir()
    rows = []
    for i, split in enumerate((0, 1, 2)):
        (tmp_path / "img" / f"{i}.png").write_bytes(PNG)
        rows.append(f"{i},img/{i}.png,{split},0,0")
    (tmp_path / "img" / "0.png").write_bytes(payload)
    (tmp_path / "metadata.csv").write_text("id,filename,split,y,a\n" + "\n".join(rows) + "\n")
    ds = load_dataset("folder_csv", root=tmp_path, image_size=4)
    with pytest.raises(DatasetError, match=r"img/0\.png: cannot read image"):
        ds.split("train")[0]


# ------------------------------------------------------------------- unknown configuration keys
def test_unknown_keys_list_every_valid_key():
    from diffdebias.data.registry import get_entry, resolve_options
    from diffdebias.diffusion.train import DiffusionConfig
    from diffdebias.hparams import declared_keys

    for method in ("erm", "lff", "groupdro", "ddb2"):
        with pytest.raises(ConfigError) as info:
            resolve_hparams(method, "colored_fmnist", {"no_such_key": 1})
        listed = str(info.value).split("valid keys: ")[1].split(", ")
        assert listed == sorted(declared_keys(method)) + (["gen.KEY (a DiffusionConfig field)"] if method == "ddb2" else [])
    with pytest.raises(ConfigError) as info:
        DiffusionConfig.from_overrides({"learning_rate": 1})
    assert set(str(info.value).split("valid keys: ")[1].split(", ")) == set(DiffusionConfig().to_dict())
    with pytest.raises(ConfigError, match="valid options: bias_mode, cache, color_std, seed, val_fraction, val_mode"):
        resolve_options(get_entry("colored_fmnist"), {"colour": 1})


@pytest.mark.parametrize("args", [
    ["run", "erm", "--dataset", "colored_fmnist", "--set", "learning_rate=1"],
    ["diffusion", "train", "--dataset", "colored_fmnist", "--set", "learning_rate=1"],
])
def test_cli_unknown_key_is_a_clear_error(args, tmp_path):
    from click.testing import CliRunner

    from diffdebias.cli import main

    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "learning_rate" in res.output and "valid keys:" in res.output and "lr" in res.output
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_choices_come_from_the_registries_and_stay_lazy():
    """Choices are read from the registries (never copied by hand); importing the CLI does not import them."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from diffdebias.cli import main
    from diffdebias.recipes import METHODS

    res = CliRunner().invoke(main, ["run", "nope", "--dataset", "colored_fmnist"])
    assert res.exit_code == 2 and f"unknown method 'nope'; valid: {', '.join(METHODS)}" in res.output
    code = "import sys, diffdebias.cli; print(any(m in sys.modules for m in ('diffdebias.recipes', 'diffdebias.bench.launch', 'diffusers')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_generator_settings_are_hyperparameters_checked_like_the_others():
    from diffdebias.bench import expand, get_preset

    hp = resolve_hparams("diffubias", "colored_fmnist", {"gen.max_steps": "30", "gen.preset": "cpu-tiny", "gen.snapshot_steps": "2,4"})
    assert hp["gen"] == {"max_steps": 30, "preset": "cpu-tiny", "snapshot_steps": [2, 4]}
    with pytest.raises(ConfigError, match=r"unknown diffusion setting 'gen.maxsteps'; valid keys: gen.allow_long, .*gen.max_steps"):
        resolve_hparams("ddb2", "colored_fmnist", {"gen.maxsteps": 30})
    with pytest.raises(ConfigError, match=r"setting 'gen.max_steps': cannot read 'x' as int"):
        resolve_hparams("ddb1", "colored_fmnist", {"gen.max_steps": "x"})
    with pytest.raises(ConfigError, match="unknown hyperparameter 'gen.max_steps' for method 'erm'"):
        resolve_hparams("erm", "colored_fmnist", {"gen.max_steps": 30})
    specs = expand(get_preset("smoke"), extra={"gen.max_steps": 7})  # bench --set: only where a method trains a generator
    assert {s.method for s in specs if s.overrides.get("gen.max_steps") == 7} == {"ddb2", "diffubias"}
