"""`diffdebias ddm eval`: fairness and quality of any folder of generated samples.

Samples: a folder with `images.npy` (uint8 N x C x H x W, e.g. from `diffdebias diffusion sample`)
and optionally `labels.npy` (the condition each sample was generated for), or image files
(png / jpg) directly in the folder (unconditional) or in sub-folders named by the integer
condition. Samples are resized to the real dataset's image size.

Two classifiers are trained on the REAL data (with `audit.train_judges`, cached; the
attribute labels are used for evaluation only): the attribute classifier (ERM on b) and an
in-domain classifier of the class y (on the dataset's attribute-invariant view where it has one,
e.g. the channel maximum for colour, so quality is measured apart from the attribute). Each one's
accuracy on the real test split is reported next to the numbers it produced.

Quality: `fd_inclf`, the Frechet distance between the in-domain classifier's penultimate
features of the samples and of the real test split (an in-domain Frechet distance, NOT FID), and
`fid`, the true FID (torchmetrics, Inception-v3 2048-d pool features) only when a local Inception
weights file is given (torch-fidelity's `pt_inception-2015-12-05` state dict, .pth or safetensors).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.base import BiasedDataset, TensorSplit, load_image
from ..audit import VIEWS, Judge, Judges, train_judges
from ..errors import ConfigError, DatasetError
from ..state import load_weights
from .metrics import bootstrap_proportions, fairness_discrepancy, frechet_distance, statistical_parity_difference

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_samples(folder: Path, channels: int, size: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """uint8 images (N, C, H, W) and the condition of each sample (None when unconditional)."""
    folder = Path(folder)
    if (folder / "images.npy").is_file():
        try:
            images = np.load(folder / "images.npy", allow_pickle=False)
            labels = np.load(folder / "labels.npy", allow_pickle=False).astype(np.int64) if (folder / "labels.npy").is_file() else None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{folder}: cannot read images.npy / labels.npy ({exc}); write them with numpy.save") from None
        if images.dtype != np.uint8 or images.ndim != 4 or (labels is not None and labels.shape != (len(images),)):
            raise DatasetError(f"{folder / 'images.npy'}: expected uint8 (N, C, H, W) and, if present, labels.npy with one integer per image")
        return torch.from_numpy(images), labels
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if files and subdirs:
        raise DatasetError(f"{folder}: holds both image files and sub-folders; put all samples either directly in it or in per-condition sub-folders")
    if subdirs:
        bad = [p.name for p in subdirs if not p.name.isdigit()]
        if bad:
            raise DatasetError(f"{folder}: sub-folder '{bad[0]}' is not an integer condition id; name the sub-folders 0, 1, ...")
        pairs = [(p, int(d.name)) for d in subdirs for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        pairs = [(p, -1) for p in files]
    if not pairs:
        raise DatasetError(f"{folder}: no samples found; expected images.npy, image files, or sub-folders 0/, 1/ ... of image files")
    images = torch.stack([load_image(p, size, channels) for p, _ in pairs])
    conds = np.array([c for _, c in pairs], dtype=np.int64)
    return images, (conds if subdirs else None)


class _Penultimate:
    """Captures the input of a classifier's last Linear layer (its penultimate features)."""

    def __init__(self, model: nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"{type(model).__name__} has no final Linear layer to take features from")
        self.features: list[torch.Tensor] = []
        self.handle = linears[-1].register_forward_hook(lambda _m, inp, _out: self.features.append(inp[0].detach().float().cpu()))

    def take(self) -> np.ndarray:
        self.handle.remove()
        return torch.cat(self.features).numpy()


def inclf_features(judge: Judge, split: TensorSplit) -> np.ndarray:
    hook = _Penultimate(judge.model)
    judge.logits(split)
    return hook.take()


def inception_fid(samples: torch.Tensor, real: torch.Tensor, weights: Path) -> float:
    """True FID (torchmetrics, 2048-d Inception pool features) with Inception weights from a local file."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        raise ConfigError("FID needs torchmetrics and torch-fidelity: pip install torchmetrics torch-fidelity") from None
    state = load_weights(weights)  # safetensors, or torch.load(weights_only=True): never unpickled
    with tempfile.TemporaryDirectory() as tmp:
        # torchmetrics reads the file itself; give it the verified tensors, re-saved by us
        path = Path(tmp) / "inception.pt"
        torch.save(state, path)
        try:
            metric = FrechetInceptionDistance(feature=2048, normalize=False, feature_extractor_weights_path=str(path))
        except RuntimeError as exc:
            raise ConfigError(f"{weights}: not Inception-v3 FID weights ({str(exc).splitlines()[0]}); use torch-fidelity's pt_inception-2015-12-05 file") from None

    def rgb(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    for chunk in torch.split(rgb(real), 64):
        metric.update(chunk, real=True)
    for chunk in torch.split(rgb(samples), 64):
        metric.update(chunk, real=False)
    return float(metric.compute())


def evaluate_samples(
    images: torch.Tensor,
    conditions: np.ndarray | None,
    data: BiasedDataset,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    fid_weights: Path | None = None,
    judges: Judges | None = None,
) -> dict:
    """FD with bootstrap CIs (overall and per condition), SPD where conditions are given, quality."""
    if data.num_bias < 2 or not data.split("train").has_bias_labels:
        raise DatasetError(f"dataset '{data.name}' has no attribute labels; `ddm eval` needs a real dataset whose b is the attribute")
    if fid_weights is not None and not Path(fid_weights).is_file():
        raise ConfigError(f"--fid-inception {fid_weights}: file not found; pass a local Inception-v3 weights file (no downloads are made)")
    judges = judges or train_judges(data)
    k = data.num_bias
    n = len(images)
    cond = conditions if conditions is not None else np.full(n, -1)
    split = TensorSplit("samples", images, np.zeros(n, dtype=np.int64), np.full(n, -1), data.spec)
    attr = judges.bias.predict(split)
    attr_acc = round(float(judges.bias.test_acc), 2)
    out: dict = {"num_samples": n, "num_groups": k, "group_names": data.bias_names, "attribute_classifier_test_acc": attr_acc}
    out["overall"] = bootstrap_proportions(attr, k, n_boot, seed=seed)
    if conditions is not None:
        per = {str(int(c)): bootstrap_proportions(attr[cond == c], k, n_boot, seed=seed) for c in np.unique(cond)}
        out["per_condition"] = per
        out["fd_cond_mean"] = round(float(np.mean([fairness_discrepancy(attr[cond == c], k) for c in np.unique(cond)])), 4)
        if len(per) >= 2:
            out["spd"] = round(statistical_parity_difference(attr, cond, k), 4)
    view = data.info.get("bias_invariant_view")
    test = data.split("test")
    real = VIEWS[view](test) if view else test
    fake = VIEWS[view](split) if view else split
    out["fd_inclf"] = round(frechet_distance(inclf_features(judges.label, fake), inclf_features(judges.label, real)), 4)
    out["inclf"] = {"what": "in-domain Frechet distance: penultimate features of a class classifier trained on the real data, vs the real test split (not FID)",
                    "view": view, "test_acc": round(float(judges.label.test_acc), 2)}  # fmt: skip
    if fid_weights is not None:
        real_u8 = torch.stack([test.load_uint8(i) for i in range(len(test))])
        out["fid"] = round(inception_fid(images, real_u8, Path(fid_weights)), 4)
    return out


def evaluate_folder(folder: Path, data: BiasedDataset, **kwargs) -> dict:
    images, conditions = load_samples(folder, data.spec.channels, data.spec.size)
    report = evaluate_samples(images, conditions, data, **kwargs)
    report["samples"] = str(folder)
    meta = Path(folder) / "meta.json"
    if meta.is_file():
        report["samples_meta"] = json.loads(meta.read_text())
    return report
