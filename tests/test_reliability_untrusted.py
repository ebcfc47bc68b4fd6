"""Untrusted files: weights are never unpickled, and dataset files never lead outside the dataset root."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import diffdebias
from diffdebias.data import load_dataset
from diffdebias.data import injected as injected_mod
from diffdebias.data.base import ImageSpec
from diffdebias.diffusion.models import build_unet
from diffdebias.diffusion.train import load_unet
from diffdebias.errors import DatasetError, RunError
from diffdebias.models import build_model
from diffdebias.state import load_state, load_weights

SRC = Path(diffdebias.__file__).resolve().parent


class Payload:
    """Unpickling this object creates `marker` (stands in for arbitrary code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def crafted(tmp_path):
    """A torch file whose unpickling would create a marker file; the payload is shown to work."""
    probe = tmp_path / "probe_marker"
    pickle.loads(pickle.dumps(Payload(probe))).close()
    assert probe.exists()  # an unsafe loader WOULD run it
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "evil": Payload(marker)}, path)
    return path, marker


def test_static_guard_no_unsafe_deserialisation_in_the_code_base():
    """Weights only through safetensors or torch.load(weights_only=True); no pickle anywhere."""
    offences = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offences.append(f"{path}: {call}")
        for cls, call in re.findall(r"(\w+)\.(from_pretrained\([^)]*\))", text):
            # Processors, tokenizers and schedulers hold no weights; diffdebias's own Generator loads an
            # exported folder through UNet2DModel.from_pretrained(use_safetensors=True), which this guard checks
            if not cls.endswith(("Processor", "Tokenizer", "Scheduler")) and cls != "Generator" and "use_safetensors=True" not in call:
                offences.append(f"{path}: {cls}.{call}")
        for bad in ("import pickle", "pickle.load", "allow_pickle=True", "import dill", "import joblib", "cloudpickle"):
            if bad in text:
                offences.append(f"{path}: {bad}")
        for call in re.findall(r"np\.load\([^)]*\)", text):
            if "allow_pickle=False" not in call:
                offences.append(f"{path}: {call}")
    assert not offences, offences


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's safe unpickler, refusing our payload
def test_crafted_pickle_is_never_executed_by_weight_loaders(crafted, tmp_path):
    path, marker = crafted
    with pytest.raises(RunError, match="evil.pt: cannot load weights"):
        load_weights(path)
    with pytest.raises(RunError, match="evil.pt: cannot load weights"):  # --set pretrained=evil.pt
        build_model("resnet18", 2, ImageSpec(32, 3, (0.5,) * 3, (0.5,) * 3), pretrained=str(path))
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(path.read_bytes())
    with pytest.raises(RunError, match="cannot load weights"):
        load_weights(disguised)
    with pytest.raises(RunError, match="checkpoint cannot be read"):  # --resume from a planted checkpoint
        load_state(disguised)
    assert not marker.exists()


def test_crafted_pickle_beside_a_diffusion_model_is_never_executed(crafted, tmp_path):
    path, marker = crafted
    folder = tmp_path / "gen" / "unet_ema"
    build_unet("cpu-tiny", 3, 3, 8).save_config(folder)
    (folder / "diffusion_pytorch_model.bin").write_bytes(path.read_bytes())  # a pickle, where diffusers would look
    with pytest.raises(RunError, match="cannot load the UNet"):
        load_unet(tmp_path / "gen")
    assert not marker.exists()


def test_crafted_pickle_in_arrays_is_never_executed(tmp_path):
    marker = tmp_path / "marker"
    evil = np.array([Payload(marker)] * 3, dtype=object)
    syn = tmp_path / "syn"
    syn.mkdir()
    np.save(syn / "images.npy", np.zeros((3, 3, 4, 4), np.uint8))
    np.save(syn / "labels.npy", evil, allow_pickle=True)
    (syn / "meta.json").write_text("{}")
    with pytest.raises(DatasetError, match="synthetic set cannot be read"):
        load_dataset("synthetic", root=syn)
    cache = tmp_path / "cache.npz"
    np.savez(cache, key=np.array("k"), train_x=evil)
    assert injected_mod._load_cache(cache, "k") is None  # a cache entry that fails to verify: rebuilt
    assert not marker.exists()


# ------------------------------------------------------------------ paths from metadata files
def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    return secret


def _link_inside(root: Path, rel: str, target: Path) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).symlink_to(target)
    return rel


ESCAPES = ["../outside/secret.png", "img/../../outside/secret.png", "ABSOLUTE", "LINK"]


def _escape(value: str, root: Path, secret: Path) -> str:
    if value == "ABSOLUTE":
        return str(secret)
    if value == "LINK":  # a symbolic link inside the root that points outside it
        return _link_inside(root, "img/link.png", secret)
    return value


@pytest.mark.parametrize("value", ESCAPES)
def test_folder_csv_refuses_paths_leaving_the_root(tmp_path, value):
    root = tmp_path / "ds"
    root.mkdir()
    bad = _escape(value, root, _outside(tmp_path))
    rows = [f"0,{bad},0,0,0", "1,img/a.png,1,0,0", "2,img/b.png,2,1,1"]
    (root / "metadata.csv").write_text("id,filename,split,y,a\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: field 'filename' .*(leaves the dataset root|absolute path)"):
        load_dataset("folder_csv", root=root)


@pytest.mark.parametrize("value", ESCAPES)
def test_waterbirds_refuses_paths_leaving_the_root(tmp_path, value):
    root = tmp_path / "wb"
    root.mkdir()
    bad = _escape(value, root, _outside(tmp_path))
    rows = [f"0,{bad},0,0,0", "1,a/b.jpg,1,1,1", "2,a/c.jpg,0,2,0"]
    (root / "metadata.csv").write_text("img_id,img_filename,y,split,place\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: field 'img_filename' .*(leaves the dataset root|absolute path)"):
        load_dataset("waterbirds", root=root)


@pytest.mark.parametrize("value", ["../../outside/secret.png", "ABSOLUTE", "LINK"])
def test_celeba_refuses_paths_leaving_the_root(tmp_path, value):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    secret = _outside(tmp_path)
    bad = {"ABSOLUTE": str(secret), "LINK": _link_inside(root / "img_align_celeba", "link.jpg", secret)}.get(value, value)
    ids = [bad, "000002.jpg", "000003.jpg"]
    (root / "list_eval_partition.csv").write_text("image_id,partition\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, (0, 1, 2))))
    (root / "list_attr_celeba.csv").write_text("image_id,Blond_Hair,Male\n" + "".join(f"{i},1,-1\n" for i in ids))
    with pytest.raises(DatasetError, match=r"list_eval_partition.csv: field 'image_id' .*(leaves the dataset root|absolute path)"):
        load_dataset("celeba", root=root)


def test_folder_layouts_refuse_links_leaving_their_folder(tmp_path):
    """cmnist-style and UrbanCars folders: labels come from names, so the escape is a symlink."""
    secret = _outside(tmp_path)
    cm = tmp_path / "cmnist"
    for folder in ("1pct/align", "1pct/conflict", "valid", "test"):
        (cm / folder).mkdir(parents=True)
        (cm / folder / "0_1_1.png").write_bytes(b"")
    _link_inside(cm, "test/9_2_2.png", secret)
    with pytest.raises(DatasetError, match=r"test/9_2_2.png: a symbolic link to .*secret.png, outside"):
        load_dataset("cmnist", root=cm, ratio=1.0)

    uc = tmp_path / "urbancars"
    names = [f"obj-{o}_bg-{b}_co_occur_obj-{c}" for o in ("urban", "country") for b in ("urban", "country") for c in ("urban", "country")]
    for split in ("bg-0.95_co_occur_obj-0.95/train", "bg-0.5_co_occur_obj-0.5/val", "bg-0.5_co_occur_obj-0.5/test"):
        for name in names:
            (uc / split / name).mkdir(parents=True)
            (uc / split / name / "1.jpg").write_bytes(b"")
    load_dataset("urbancars", root=uc)  # the layout itself loads
    _link_inside(uc, f"bg-0.5_co_occur_obj-0.5/val/{names[0]}/2.jpg", secret)
    with pytest.raises(DatasetError, match="2.jpg: a symbolic link to .*outside"):
        load_dataset("urbancars", root=uc)
    # a link that stays inside its folder is fine
    (uc / f"bg-0.5_co_occur_obj-0.5/val/{names[0]}/2.jpg").unlink()
    _link_inside(uc, f"bg-0.5_co_occur_obj-0.5/val/{names[0]}/2.jpg", uc / f"bg-0.5_co_occur_obj-0.5/val/{names[0]}/1.jpg")
    load_dataset("urbancars", root=uc)
