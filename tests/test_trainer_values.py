"""The trainers' arithmetic against values computed by hand (closed forms written out with `math`):
GCE, LfF's relative difficulty weights, Group DRO's group-weight update and JTT's upsampling."""

import math

import numpy as np
import pytest
import torch

from diffdebias.data.wrap import make_dataset
from diffdebias.distributed import current
from diffdebias.hparams import resolve_hparams
from diffdebias.trainers import GroupDRO, TrainerContext, TrainerInputs
from diffdebias.trainers.lff import LossEMA, relative_difficulty
from diffdebias.trainers.losses import per_sample_gce
from diffdebias.trainers.upsample import upsample


def test_gce_value_and_gradient():
    logits, y, q = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True), torch.tensor([0]), 0.7
    p = math.exp(2) / (math.exp(2) + 2)  # softmax of the true class
    expected = -math.log(p) * p**q * q  # LfF's form: CE x q p^q
    loss = per_sample_gce(logits, y, q)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    # its gradient is that of 1 - p^q, i.e. q times that of Zhang & Sabuncu's GCE (1 - p^q) / q
    ref = logits.detach().clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(1 - torch.softmax(ref, 1)[0, 0] ** q, ref)
    assert torch.allclose(grad, grad_ref, atol=1e-6)


def test_lff_weights_from_class_max_normalised_loss_emas():
    labels = torch.tensor([0, 0, 1])
    ema_b, ema_d = LossEMA(3, labels, 2, 0.7), LossEMA(3, labels, 2, 0.7)
    idx, y = torch.tensor([0, 1]), torch.tensor([0, 0])
    # first update sets the EMAs: b = (1, 3), d = (2, 1); class-0 maxima 3 and 2
    w = relative_difficulty(ema_b, ema_d, torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), y, idx, current())
    expected = [(1 / 3) / (1 / 3 + 2 / 2), (3 / 3) / (3 / 3 + 1 / 2)]
    assert w.tolist() == pytest.approx(expected, abs=1e-6)
    # second update, momentum 0.7: b = 0.7 (1, 3) + 0.3 (2, 1) = (1.3, 2.4), d = 0.7 (2, 1) + 0.3 (1, 1) = (1.7, 1.0)
    w = relative_difficulty(ema_b, ema_d, torch.tensor([2.0, 1.0]), torch.tensor([1.0, 1.0]), y, idx, current())
    b, d = (1.3 / 2.4, 2.4 / 2.4), (1.7 / 1.7, 1.0 / 1.7)
    assert w.tolist() == pytest.approx([b[0] / (b[0] + d[0]), b[1] / (b[1] + d[1])], abs=1e-6)


class _FixedLogits(torch.nn.Module):
    """A 'model' whose logits are given (its one parameter keeps the optimiser happy)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.p = logits, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits + 0 * self.p


def test_group_dro_exponentiated_gradient_update():
    images = np.zeros((3, 3, 4, 4), dtype=np.uint8)
    data = make_dataset((images, np.array([0, 0, 1])), (images, np.array([0, 0, 1])))
    hp = {**resolve_hparams("groupdro", "folder_csv"), "eta": 1.0, "group_adj": 0.0}
    trainer = GroupDRO(TrainerContext(data, hp, torch.device("cpu"), TrainerInputs(groups=torch.tensor([0, 0, 1]), num_groups=2)))
    trainer.model = _FixedLogits(torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    loss, stats = trainer.loss(torch.zeros(3, 3, 4, 4), torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]))
    ce_easy, ce_flat = math.log(1 + math.exp(-2)), math.log(2)
    l0, l1 = (ce_easy + ce_flat) / 2, ce_flat  # group means
    q0, q1 = 0.5 * math.exp(l0), 0.5 * math.exp(l1)  # q <- q exp(eta L), from uniform, then normalised
    q0, q1 = q0 / (q0 + q1), q1 / (q0 + q1)
    assert stats["group_weight/0"] == pytest.approx(q0, abs=1e-6) and stats["group_weight/1"] == pytest.approx(q1, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(q0 * l0 + q1 * l1, abs=1e-6)


def test_jtt_upsampling_repeats_the_error_set_lambda_times():
    idx = upsample(5, torch.tensor([1, 3]), 3)
    assert sorted(idx.tolist()) == [0, 1, 1, 1, 2, 3, 3, 3, 4]
    assert torch.equal(upsample(4, torch.tensor([], dtype=torch.long), 50), torch.arange(4))


def test_jtt_loss_weighting_form_weights_the_error_set_loss_lambda_times():
    from diffdebias.recipes.jtt import error_set_inputs
    from diffdebias.trainers import Reweight

    inputs = error_set_inputs(Reweight, 4, torch.tensor([1, 3]), 50)
    assert inputs.loss_weights.tolist() == [1.0, 50.0, 1.0, 50.0] and inputs.indices is None
    images = np.zeros((4, 3, 4, 4), dtype=np.uint8)
    y = np.array([0, 0, 1, 1])
    trainer = Reweight(TrainerContext(make_dataset((images, y), (images, y)), resolve_hparams("jtt_weighted", "folder_csv"),
                                      torch.device("cpu"), inputs))  # fmt: skip
    trainer.model = _FixedLogits(torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))
    loss, _ = trainer.loss(torch.zeros(4, 3, 4, 4), torch.tensor([0, 0, 1, 1]), torch.arange(4))
    ce_easy, ce_flat = math.log(1 + math.exp(-2)), math.log(2)
    assert float(loss.detach()) == pytest.approx((ce_easy + 50 * ce_flat + ce_flat + 50 * ce_easy) / 4, abs=1e-6)  # a mean over the batch


def test_group_balanced_resampling_draws_every_group_equally_often():
    from diffdebias.trainers import GroupBalanced

    images = np.zeros((4, 3, 4, 4), dtype=np.uint8)
    y = np.array([0, 0, 0, 1])
    trainer = GroupBalanced(TrainerContext(make_dataset((images, y), (images, y)), resolve_hparams("resample_oracle", "folder_csv"),
                                           torch.device("cpu"), TrainerInputs(groups=torch.tensor([0, 0, 0, 1]))))  # fmt: skip
    assert trainer.weights.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    drawn = torch.cat([trainer.epoch_indices(torch.Generator().manual_seed(s)) for s in range(500)])
    assert float((drawn == 3).float().mean()) == pytest.approx(0.5, abs=0.03)  # group 1 (one sample) half of the draws


def test_lisa_partners_keep_the_class_or_the_bias_and_mix_the_losses():
    from diffdebias.trainers import LISA

    y, b = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1, 0])
    images = np.zeros((6, 3, 4, 4), dtype=np.uint8)
    hp = resolve_hparams("lisa_oracle", "folder_csv")
    inputs = TrainerInputs(groups=torch.as_tensor(y * 2 + b), bias=torch.as_tensor(b))
    trainer = LISA(TrainerContext(make_dataset((images, y), (images, y)), hp, torch.device("cpu"), inputs))
    torch.manual_seed(0)
    idx = torch.arange(6).repeat(50)
    partner, intra = trainer.partners(idx)
    same_y, same_b = y[partner] == y[idx], b[partner] == b[idx]
    assert (same_y & ~same_b)[intra.numpy()].all() and (~same_y & same_b)[~intra.numpy()].all()
    assert 0.35 < float(intra.float().mean()) < 0.65  # lisa_p_intra_label = 0.5
    trainer.model = _FixedLogits(torch.tensor([[2.0, 0.0]] * 6))
    loss, stats = trainer.loss(torch.zeros(6, 3, 4, 4), torch.as_tensor(y), torch.arange(6))
    ce0, ce1 = math.log(1 + math.exp(-2)), math.log(1 + math.exp(2))  # logits favour class 0
    assert ce0 - 1e-6 < float(loss.detach()) < ce1 + 1e-6 and stats["mixed"] == 1.0  # every sample here has a partner
