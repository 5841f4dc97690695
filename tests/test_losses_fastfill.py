"""FastFill (the transformation of bct.models.transformation, its loss, the 'uncertainty' backfill order)
against the paper's equations, written as per-sample loops, and on vectors where the answer is known."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bct.index.orders import ORDERS, plan_order
from bct.losses.fastfill import COSINE_SCALE, fastfill_loss
from bct.models.transformation import FastFillTransform
from bct.pipeline.fastfill import area
from bct.utils.errors import BadInputError


def test_loss_matches_a_loop():
    torch.manual_seed(0)
    est, target = torch.randn(4, 5), F.normalize(torch.randn(4, 5), dim=1)
    log_var, labels, w = torch.randn(4), torch.tensor([0, 2, 1, 2]), torch.randn(3, 5)
    got = fastfill_loss(est, log_var, target, labels, w, disc_weight=0.5)["loss_fastfill"].item()
    want = 0.0
    for i in range(4):
        l2 = sum((float(est[i, d]) - float(target[i, d])) ** 2 for d in range(5))
        cos = [float(est[i] @ w[k]) / float(est[i].norm() * w[k].norm()) for k in range(3)]
        logits = [COSINE_SCALE * c for c in cos]
        ce = -(logits[labels[i]] - math.log(sum(math.exp(v) for v in logits)))
        s = float(log_var[i])
        want += (math.exp(-s) * (l2 + 0.5 * ce) + s) / 4
    assert abs(got - want) < 1e-4
    plain = fastfill_loss(est, log_var, target)["loss_fastfill"].item()  # no classifier: the L2 part alone
    assert abs(plain - float(((torch.exp(-log_var) * (est - target).pow(2).sum(1)) + log_var).mean())) < 1e-5


def test_the_transformation_learns_the_map_and_is_unsure_where_it_cannot():
    """New = a fixed rotation of old, except for a quarter of the rows whose new embedding is unrelated:
    the trained h predicts the others closely and gives the unrelated ones the larger sigma^2."""
    gen = torch.Generator().manual_seed(0)
    n, d = 400, 8
    old = F.normalize(torch.randn(n, d, generator=gen), dim=1)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    new = old @ q
    noisy = torch.zeros(n, dtype=torch.bool)
    noisy[torch.randperm(n, generator=gen)[:n // 4]] = True
    new[noisy] = F.normalize(torch.randn(int(noisy.sum()), d, generator=gen), dim=1)
    torch.manual_seed(0)
    h = FastFillTransform(d, d, hidden=64)
    opt = torch.optim.Adam(h.parameters(), lr=3e-3)
    for _ in range(300):
        h.train()
        est, log_var = h(old)
        loss = fastfill_loss(est, log_var, new)["loss_fastfill"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    est, sigma2 = h.transform(old.numpy())
    cos = (est * new.numpy()).sum(1)
    assert cos[~noisy.numpy()].mean() > 0.9
    assert np.median(sigma2[noisy.numpy()]) > 3 * np.median(sigma2[~noisy.numpy()])
    order = plan_order("uncertainty", est, uncertainty=sigma2)
    first = order[: n // 4]
    # The backfill starts with the rows h could not predict: at least twice the quarter a random order gives
    # (0.67-0.8 measured; the training's rounding differs with the thread count).
    assert noisy.numpy()[first].mean() > 0.5


def test_uncertainty_order_is_descending_with_ties_by_row_and_refuses_without_uncertainties():
    assert "uncertainty" in ORDERS
    order = plan_order("uncertainty", np.zeros((5, 2)), uncertainty=[0.2, 1.0, 0.2, 3.0, 1.0])
    assert order.tolist() == [3, 1, 4, 0, 2]
    with pytest.raises(BadInputError, match="needs one uncertainty per row"):
        plan_order("uncertainty", np.zeros((5, 2)))


def test_area_is_the_mean_height_of_the_curve():
    assert area([(0.0, 10.0), (0.5, 20.0), (1.0, 20.0)]) == pytest.approx((15 * 0.5 + 20 * 0.5) / 1.0)
    assert area([(0.0, 4.0), (1.0, 4.0)]) == pytest.approx(4.0)
