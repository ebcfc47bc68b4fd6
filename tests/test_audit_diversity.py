"""The synthetic set's diversity (audit.py): k-NN manifold coverage and pairwise spread on hand-made points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffdebias.audit import audit_summary, diversity, diversity_summary, manifold_coverage, mean_pairwise_distance
from diffdebias.data.base import ImageSpec, TensorSplit


def test_manifold_coverage_counts_queries_inside_the_k_nn_balls():
    ref = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
    # k = 1 radii: 1, 1, 1, 2 (4's nearest other point is 2); 0.5 and 5.5 are inside, 9 is not
    assert manifold_coverage(ref, torch.tensor([[0.5], [5.5], [9.0]]), k=1) == pytest.approx(2 / 3)
    # k = 2 radii: 2, 1, 2, 3 -> 7 is inside 4's ball
    assert manifold_coverage(ref, torch.tensor([[7.0]]), k=2) == 1.0
    assert np.isnan(manifold_coverage(ref[:2], ref, k=3))
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0


def test_diversity_is_one_for_the_real_images_and_zero_spread_for_copies():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.arange(40) % 2
    real = TensorSplit("train", images, y, torch.zeros_like(y), ImageSpec(4, 1, (0.5,), (0.5,)))
    same = diversity(images, y.numpy(), real, 2)
    assert same["spread"] == 1.0 and same["precision"] == 100.0 and same["recall"] == 100.0 and set(same["per_class"]) == {"0", "1"}
    assert diversity_summary(same) == "spread 1.00, k-NN precision 100.0%, recall 100.0%"
    audit = {"conditional_acc": 91.25, "bias_alignment_rate": 88.0, "num_images": 40,
             "class_judge": {"real_test_acc": 90.0}, "bias_judge": {"real_test_acc": 99.5}}  # fmt: skip
    line = "conditional accuracy 91.2%, bias alignment rate 88.0% (40 images; judges on real test: class 90.0%, bias 99.5%)"
    assert audit_summary(audit) == line  # an audit made before diversity was measured
    assert audit_summary({**audit, "diversity": same}) == f"{line}; spread 1.00, k-NN precision 100.0%, recall 100.0%"
    copies = images[y == 0][:1].repeat(40, 1, 1, 1)  # one image of class 0, forty times, all labelled 0
    one = diversity(copies, np.zeros(40, dtype=int), real, 2)
    assert set(one["per_class"]) == {"0"} and one["spread"] == 0.0 and one["recall"] == 5.0  # 1 of 20 real images: the copied one
