"""Did the Bias Amplifier find a bias? A label-free check on the real validation split.

A BA trained on synthetic images errs on real images for two reasons: the image carries a bias the
BA learnt and contradicts it (a bias-conflicting sample), or the synthetic images differ from the
real ones (a domain gap). A model trained on the real data with GCE (the probe, LfF's biased model)
follows the same bias, so it repeats the BA's first kind of mistake, predicting the same wrong
class, and has no reason to repeat the second. `agreement` is the share of the BA's validation
errors where the probe predicts the same wrong class; `chance_agreement` is that share if the two
models erred independently with their own confusions; `lift` is their ratio. A bias was found when
the lift reaches `min_lift`: the absolute agreement is not the statistic, since a weak BA (Corrupted
Fashion-MNIST) errs mostly through the domain gap even where the data are biased (BENCHMARKS.md).
No bias label is read.
"""

from __future__ import annotations

import torch

from ..records import BiasEvidence

DEFAULT_MIN_LIFT = 5.0  # agreement / chance agreement (hparams `bias_evidence_min_lift`)
CONFIDENT = 0.9


def bias_evidence(ba_logits: torch.Tensor, probe_logits: torch.Tensor, y: torch.Tensor, min_lift: float = DEFAULT_MIN_LIFT) -> BiasEvidence:
    """Evidence from the BA's and the probe's logits on the same (validation) samples with classes `y`."""
    ba_prob = torch.softmax(ba_logits.float(), 1)
    ba_pred, probe_pred = ba_prob.argmax(1), probe_logits.argmax(1)
    wrong = ba_pred != y
    agreement = float((probe_pred[wrong] == ba_pred[wrong]).float().mean()) if wrong.any() else 0.0
    k = ba_logits.shape[1]
    # P(probe predicts c' | class c) for c' != c, from its own confusion matrix
    confusion = torch.zeros(k, k).index_put_((y, probe_pred), torch.ones(len(y)), accumulate=True)
    confusion = confusion / confusion.sum(1, keepdim=True).clamp_min(1)
    chance = float(confusion[y[wrong], ba_pred[wrong]].mean()) if wrong.any() else 0.0
    confident = float((ba_prob.max(1).values[wrong] >= CONFIDENT).float().mean()) if wrong.any() else 0.0
    return BiasEvidence(
        ba_val_error=round(100 * float(wrong.float().mean()), 2), probe_val_error=round(100 * float((probe_pred != y).float().mean()), 2),
        agreement=round(100 * agreement, 2), chance_agreement=round(100 * chance, 2), confident_errors=round(100 * confident, 2),
        lift=round(agreement / max(chance, 1e-4), 2), found=agreement >= min_lift * max(chance, 1e-4), min_lift=min_lift,
    )  # fmt: skip
