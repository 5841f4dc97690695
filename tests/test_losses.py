"""Compatibility losses, their maths and the old-class statistics (docs/method.md).

Every loss is checked against an independent per-sample loop on a small batch with 5 old classes
(one with a single inlier, one absent from the statistics) and 3 new ones, plus its degenerate
batch and a backward pass.
"""
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.config.defaults import get_cfg_defaults
from bct.losses import (
    AdversarialLoss,
    HotRefreshLoss,
    Progress,
    build_comp_loss,
    build_terms,
    load_old_stats,
)
from bct.losses.functional import (
    arcface_logits,
    boundary_hinge,
    dann_alpha,
    elastic_radius,
    epoch_weight,
    grad_reverse,
    safe_acos,
    topk_negatives,
)
from bct.utils.errors import BadInputError
from helpers import catalogue_terms

torch.set_num_threads(1)
# Every term a catalogue method trains with (a method added to the catalogue joins these tests).
TERMS = catalogue_terms()

D, C_OLD, C_NEW = 6, 5, 8
# Old classes 0-2 are valid, 3 has a single inlier, 4 is absent from the files; 5-7 are new.
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 7, 2])
RADII = {0: [0.05, 0.1, 0.2, 0.3, 0.4], 1: [1.85, 1.9], 2: [0.02, 0.03, 0.04], 3: [0.0]}
# In the angle file class 2 has a single inlier: LCE skips it although bct_limit does not.
ANGLES = {0: [0.3, 0.5, 0.9], 1: [0.2, 0.4], 2: [0.7], 3: [0.0]}


def _centres():
    g = torch.Generator().manual_seed(0)
    c = F.normalize(torch.randn(4, D, generator=g), dim=1) * torch.tensor([[0.7], [0.5], [0.8], [1.0]])
    return c


def _write(path, values, centres):
    data = {str(k): {"center": centres[k].tolist(), "radius": v} for k, v in values.items()}
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture()
def files(tmp_path):
    c = _centres()
    return _write(tmp_path / "radius.json", RADII, c), _write(tmp_path / "angle.json", ANGLES, c)


@pytest.fixture()
def stats(files):
    return load_old_stats(files[0], files[1], num_classes=C_OLD, emb_dim=D)


def _feats(seed=1, n=len(LABELS)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g) * 3.0, torch.randn(n, D, generator=g) * 3.0


class _Linear(nn.Module):
    def __init__(self, num_classes, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(num_classes, D, generator=g))

    def forward(self, emb, labels=None):
        return emb @ self.weight.t()


def _cfg(loss_type, **comp):
    cfg = get_cfg_defaults()
    cfg.COMP_LOSS.TYPE = loss_type
    cfg.OLD_MODEL.NUM_CLASSES = C_OLD
    cfg.NEW_MODEL.NUM_CLASSES = C_NEW
    cfg.MODEL.EMB_DIM = D
    for k, v in comp.items():
        cfg.COMP_LOSS[k] = v
    return cfg


def _loss_terms(out):
    return sum(v for k, v in out.items() if k.startswith("loss_"))


def _unit(v):
    return v / v.norm()


# ------------------------------------------------------------------ functional maths


def test_grad_reverse_is_identity_forward_and_scaled_negation_backward():
    x = torch.randn(4, 3, requires_grad=True)
    g = torch.randn(4, 3)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * g).sum().backward()
    assert torch.allclose(x.grad, -0.3 * g)


def test_schedules():
    assert dann_alpha(0.0) == 0.0
    assert dann_alpha(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_alpha(1.0) == pytest.approx(0.9999092)
    assert epoch_weight(0, 30) == pytest.approx(31 / 30)
    assert epoch_weight(29, 30) == pytest.approx(2 / 30)


def test_elastic_radius_moves_from_r_max_toward_threshold():
    r_max = torch.tensor([0.3, 0.9])
    w = torch.tensor([0.0, 2.0])
    expected = [0.3 + (0.5 - 0.3) * 0.5, 0.9 + (0.5 - 0.9) / (1 + math.exp(-2.0))]
    assert torch.allclose(elastic_radius(r_max, w, 0.5), torch.tensor(expected))
    assert torch.allclose(elastic_radius(r_max, torch.full((2,), -30.0), 0.5), r_max)


def test_boundary_hinge_averages_violators_only_and_zero_keeps_the_graph():
    dist = torch.tensor([0.5, 0.1, 0.9, 2.0], requires_grad=True)
    radius = torch.tensor([0.3, 0.2, 0.4, 0.1])
    loss, n = boundary_hinge(dist, radius, torch.tensor([True, True, True, False]))
    assert n.item() == 2 and loss.item() == pytest.approx((0.2 + 0.5) / 2)
    loss, n = boundary_hinge(dist, radius + 5.0)
    assert n.item() == 0 and loss.item() == 0.0
    loss.backward()
    assert torch.equal(dist.grad, torch.zeros(4))


def test_safe_acos_is_finite_at_the_ends():
    x = torch.tensor([-1.0, 1.0, 1.0000001, 0.0], requires_grad=True)
    y = safe_acos(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert y[3].item() == pytest.approx(math.pi / 2)


def test_topk_negatives_fills_missing_negatives_with_minus_inf():
    sim = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.4, 0.6, 0.8]])
    mask = torch.tensor([[True, False, True, False], [True, True, True, True]])
    top = topk_negatives(sim, mask, 3)
    assert top[0, :2].tolist() == pytest.approx([0.5, 0.1]) and top[0, 2] == float("-inf")
    assert top[1].tolist() == pytest.approx([0.8, 0.6, 0.4])
    assert topk_negatives(sim, mask, 0).shape == (2, 4)


def test_arcface_logits_match_the_formula():
    cos = torch.tensor([[0.5, -0.2, 0.9], [0.1, 0.3, -0.99]])
    out = arcface_logits(cos, torch.tensor([0, -1]), s=30.0, m=0.3)
    assert out[0, 0].item() == pytest.approx(30 * math.cos(math.acos(0.5) + 0.3), rel=1e-5)
    assert torch.allclose(out[0, 1:], 30 * cos[0, 1:]) and torch.allclose(out[1], 30 * cos[1])
    # Past pi - m the target falls back to cos - m sin m, so the margin never helps the target.
    back = arcface_logits(cos, torch.tensor([0, 2]), s=1.0, m=0.3)
    assert back[1, 2].item() == pytest.approx(-0.99 - 0.3 * math.sin(0.3), rel=1e-5)


# ------------------------------------------------------------------ statistics


def test_load_old_stats_tables(stats):
    assert stats.num_classes == C_OLD and stats.centers.shape == (C_OLD, D)
    assert stats.r_min.tolist() == pytest.approx([0.05, 1.85, 0.02, 0.0, 0.0])
    assert stats.r_median.tolist() == pytest.approx([0.2, 1.9, 0.03, 0.0, 0.0])
    assert stats.r_max.tolist() == pytest.approx([0.4, 1.9, 0.04, 0.0, 0.0])
    assert stats.valid.tolist() == [True, True, True, False, False]
    assert stats.present.tolist() == [True, True, True, True, False]
    assert stats.theta_max.tolist() == pytest.approx([0.9, 0.4, 0.7, 0.0, 0.0])
    assert stats.theta_valid.tolist() == [True, True, False, False, False]
    assert torch.equal(stats.centers[4], torch.zeros(D))


def test_load_old_stats_errors_are_one_line_and_actionable(tmp_path, files):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(BadInputError, match=r"nope\.json.*scripts/extract_feat\.sh"):
        load_old_stats(missing, num_classes=C_OLD, emb_dim=D)
    with pytest.raises(BadInputError, match=r"class 3 .*OLD_MODEL\.NUM_CLASSES = 3"):
        load_old_stats(files[0], num_classes=3, emb_dim=D)
    with pytest.raises(BadInputError, match=r"radius\.json: class 0 has a 6-d centre, expected MODEL\.EMB_DIM = 8"):
        load_old_stats(files[0], num_classes=C_OLD, emb_dim=8)
    with pytest.raises(BadInputError, match=r"angle\.json.*class 7"):
        bad = _write(tmp_path / "angle.json", {7: [0.1, 0.2]}, torch.zeros(8, D))
        load_old_stats(files[0], bad, num_classes=C_OLD, emb_dim=D)
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(BadInputError, match="non-empty"):
        load_old_stats(str(tmp_path / "empty.json"), num_classes=C_OLD, emb_dim=D)
    (tmp_path / "broken.json").write_text('{"0": {"center": [1,\n')
    with pytest.raises(BadInputError, match=r"not valid JSON \(line 2"):
        load_old_stats(str(tmp_path / "broken.json"), num_classes=C_OLD, emb_dim=D)
    with pytest.raises(BadInputError) as info:
        load_old_stats(missing, num_classes=C_OLD, emb_dim=D)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ registry


def test_registry_rejects_unknown_names_with_the_valid_list():
    from bct.losses import comp_loss_names
    with pytest.raises(BadInputError, match="did you mean 'bct_limit'") as e:
        build_comp_loss(_cfg("bct_limt"))
    assert str(e.value).split("valid names: ")[1].startswith(", ".join(comp_loss_names()))


@pytest.mark.catalogue
@pytest.mark.parametrize("name", ["none", *TERMS])
def test_registry_builds_every_loss_and_reads_stats_from_the_config(files, name):
    from bct.losses import comp_loss_class
    cfg = _cfg(name)
    cfg.COMP_LOSS.RADIUS_FILE, cfg.COMP_LOSS.ANGLE_FILE = files
    old_cls = _Linear(C_OLD, 5).requires_grad_(False)
    f_new, f_old = _feats()
    f_new.requires_grad_(True)
    loss = build_comp_loss(cfg, old_classifier=old_cls)
    out = loss(f_new, f_old, LABELS, _Linear(C_NEW, 6), progress=Progress())
    assert (out == {}) == (name == "none")
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
    if name != "none":
        _loss_terms(out).backward()
        assert torch.isfinite(f_new.grad).all()
    if comp_loss_class(name).NEEDS_STATS:
        cfg.COMP_LOSS.RADIUS_FILE = files[0] + ".missing"
        with pytest.raises(BadInputError, match="COMP_LOSS.RADIUS_FILE"):
            build_comp_loss(cfg)


# ------------------------------------------------------------------ losses against loops


def _check_degenerate(loss, labels, new_classifier):
    """A batch with no usable sample: finite zero terms and a working backward."""
    f_new = torch.randn(len(labels), D, requires_grad=True)
    out = loss(f_new, torch.randn(len(labels), D), labels, new_classifier)
    total = _loss_terms(out)
    assert total.item() == 0.0
    total.backward()
    assert f_new.grad is not None and torch.equal(f_new.grad, torch.zeros_like(f_new))


def test_bct_loss_matches_loop():
    old_cls = _Linear(C_OLD, 5).requires_grad_(False)
    loss = build_comp_loss(_cfg("bct", WEIGHT=2.0), old_classifier=old_cls)
    f_new, f_old = _feats()
    f_new.requires_grad_(True)
    out = loss(f_new, f_old, LABELS, _Linear(C_NEW, 6))
    terms = []
    for f, y in zip(f_new.detach(), LABELS.tolist()):
        if y < C_OLD:
            logits = old_cls.weight @ f
            terms.append(-torch.log_softmax(logits, 0)[y])
    assert out["loss_bct"].item() == pytest.approx(2.0 * float(sum(terms) / len(terms)), rel=1e-5)
    out["loss_bct"].backward()
    assert torch.isfinite(f_new.grad).all()
    assert torch.equal(f_new.grad[LABELS >= C_OLD], torch.zeros(3, D))
    assert old_cls.weight.grad is None and list(loss.parameters()) == [] and loss.state_dict() == {}
    _check_degenerate(loss, torch.tensor([5, 6, 7]), _Linear(C_NEW, 6))


def test_lce_loss_matches_loop(stats):
    loss = build_comp_loss(_cfg("lce"), stats=stats)
    new_cls = _Linear(C_NEW, 6)
    f_new, f_old = _feats()
    f_new.requires_grad_(True)
    out = loss(f_new, f_old, LABELS, new_cls)
    boundary, align, n = 0.0, 0.0, 0
    for f, y in zip(f_new.detach(), LABELS.tolist()):
        if y < C_OLD and y in ANGLES and len(ANGLES[y]) > 1:
            c = _unit(stats.centers[y])
            angle = math.acos(max(-1.0, min(1.0, float(c @ _unit(f)))))
            boundary += max(angle - ANGLES[y][-1], 0.0)
            align += 1.0 - float(c @ _unit(new_cls.weight[y].detach()))
            n += 1
    assert n == 3
    assert out["loss_lce_boundary"].item() == pytest.approx(boundary / n, rel=1e-5)
    assert out["loss_lce_align"].item() == pytest.approx(align / n, rel=1e-5)
    _loss_terms(out).backward()
    assert torch.isfinite(f_new.grad).all() and torch.isfinite(new_cls.weight.grad).all()
    assert new_cls.weight.grad[2:].abs().sum() == 0
    _check_degenerate(loss, torch.tensor([2, 3, 4, 6]), new_cls)


def test_uni_bct_loss_matches_loop_and_masks_absent_classes(stats):
    s, m = 30.0, 0.3
    loss = build_comp_loss(_cfg("uni_bct", ARC_SCALE=s, ARC_MARGIN=m), stats=stats)
    f_new, f_old = _feats()
    f_new.requires_grad_(True)
    out = loss(f_new, f_old, LABELS, _Linear(C_NEW, 6))
    present = [k for k in range(C_OLD) if k in RADII]
    terms = []
    for f, y in zip(f_new.detach(), LABELS.tolist()):
        if y not in present:
            continue
        logits = []
        for k in present:
            cos = float(_unit(f) @ _unit(stats.centers[k]))
            if k == y:
                theta = math.acos(cos)
                cos = math.cos(theta + m) if theta + m < math.pi else cos - m * math.sin(m)
            logits.append(s * cos)
        logits = torch.tensor(logits, dtype=torch.float64)
        terms.append(-torch.log_softmax(logits, 0)[present.index(y)].item())
    assert len(terms) == 6
    assert out["loss_uni_bct"].item() == pytest.approx(sum(terms) / len(terms), rel=1e-4)
    out["loss_uni_bct"].backward()
    assert torch.isfinite(f_new.grad).all()
    _check_degenerate(loss, torch.tensor([4, 5, 7]), _Linear(C_NEW, 6))


def _hot_refresh_loop(f_new, f_old, labels, temperature, k):
    z, zo = F.normalize(f_new, dim=1), F.normalize(f_old, dim=1)
    out = []
    for i in range(len(labels)):
        neg_o = sorted((float(z[i] @ zo[j]) for j in range(len(labels)) if labels[j] != labels[i]), reverse=True)
        neg_n = sorted((float(z[i] @ z[j]) for j in range(len(labels)) if labels[j] != labels[i]), reverse=True)
        logits = torch.tensor([float(z[i] @ zo[i])] + neg_o[:k] + neg_n[:k], dtype=torch.float64) / temperature
        out.append(-torch.log_softmax(logits, 0)[0].item())
    return out


def test_hot_refresh_matches_loop_with_few_negatives_and_temperature():
    # Label 0 appears 5 times in 8 samples: its anchors have only 3 negatives for k = 4.
    labels = torch.tensor([0, 0, 1, 0, 2, 0, 3, 0])
    f_new, f_old = _feats(seed=3, n=8)
    for temperature, k in ((0.01, 4), (0.5, 2), (0.1, 0)):
        loss = build_comp_loss(_cfg("hot_refresh", TEMPERATURE=temperature, TOPK_NEG=k, WEIGHT=0.5))
        per = loss.per_anchor(f_new, f_old, labels)
        expected = _hot_refresh_loop(f_new, f_old, labels, temperature, k if k > 0 else 99)
        assert torch.allclose(per.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-4)
        out = loss(f_new, f_old, labels, None)
        assert out["loss_hot_refresh"].item() == pytest.approx(0.5 * sum(expected) / 8, rel=1e-4)


def test_hot_refresh_without_negatives_is_zero_and_backward_is_finite():
    loss = HotRefreshLoss(0.01, 10)
    f_new = torch.randn(4, D, requires_grad=True)
    out = loss(f_new, torch.randn(4, D), torch.tensor([2, 2, 2, 2]), None)
    assert out["loss_hot_refresh"].item() == 0.0
    out["loss_hot_refresh"].backward()
    assert torch.isfinite(f_new.grad).all()
    f_new = torch.randn(4, D, requires_grad=True)
    loss(f_new, torch.randn(4, D), torch.tensor([0, 1, 1, 1]), None)["loss_hot_refresh"].backward()
    assert torch.isfinite(f_new.grad).all() and f_new.grad.abs().sum() > 0


def _boundary_loop(f_new, labels, stats, radius_of):
    total, n_viol, n_valid, radii = 0.0, 0, 0, []
    for f, y in zip(f_new, labels.tolist()):
        if y >= C_OLD or y not in RADII or len(RADII[y]) <= 1:
            continue
        n_valid += 1
        r = radius_of(y)
        radii.append(r)
        d = float((_unit(f) - stats.centers[y]).norm())
        if d > r:
            total += d - r
            n_viol += 1
    return (total / n_viol if n_viol else 0.0), n_viol / n_valid, sum(radii) / len(radii)


@pytest.mark.parametrize("choice,pick", [("min", lambda r: r[0]), ("median", lambda r: r[len(r) // 2]),
                                         ("max", lambda r: r[-1])])
def test_boundary_loss_fixed_radius_matches_loop(stats, choice, pick):
    loss = build_comp_loss(_cfg("bct_limit", RADIUS=choice), stats=stats)
    assert list(loss.parameters()) == []
    f_new, f_old = _feats()
    out = loss(f_new, f_old, LABELS, None)
    value, frac, mean_r = _boundary_loop(f_new, LABELS, stats, lambda y: pick(RADII[y]))
    assert out["loss_boundary"].item() == pytest.approx(value, rel=1e-5)
    assert out["stat_violator_frac"].item() == pytest.approx(frac)
    assert out["stat_mean_radius"].item() == pytest.approx(mean_r, rel=1e-5)


def test_elastic_boundary_matches_loop_and_trains_only_violating_classes(stats):
    cfg = _cfg("bct_limit", ELASTIC_BOUNDARY=True)
    cfg.COMP_LOSS.THRESHOLD = 1.95
    torch.manual_seed(0)
    loss = build_comp_loss(cfg, stats=stats)
    w = loss.elastic_w
    assert w.shape == (C_OLD,) and (w.abs() <= 1).all()
    assert [n for n, _ in loss.named_parameters()] == ["elastic_w"] and list(loss.state_dict()) == ["elastic_w"]
    f_new, f_old = _feats()
    # Samples of classes 0 and 2 point away from their centre: d = 1 + ||c|| (1.7, 1.8) exceeds
    # any radius they can reach for |w| <= 1 (at most 1.53 and 1.43). Class 1's radius stays
    # in [1.9, 1.95], beyond any distance of its sample (at most 1.5).
    away = (LABELS == 0) | (LABELS == 2)
    f_new[away] = -2.0 * stats.centers[LABELS[away]]
    f_new.requires_grad_(True)
    out = loss(f_new, f_old, LABELS, None)

    def radius_of(y):
        r_max = RADII[y][-1]
        return r_max + (1.95 - r_max) / (1 + math.exp(-w[y].item()))

    value, frac, mean_r = _boundary_loop(f_new.detach(), LABELS, stats, radius_of)
    assert out["loss_boundary"].item() == pytest.approx(value, rel=1e-5)
    assert frac == pytest.approx(4 / 5) and out["stat_violator_frac"].item() == pytest.approx(frac)
    assert out["stat_mean_radius"].item() == pytest.approx(mean_r, rel=1e-5)
    out["loss_boundary"].backward()
    # Classes 3 (one inlier) and 4 (absent) are skipped.
    assert (w.grad[[0, 2]] != 0).all() and (w.grad[[1, 3, 4]] == 0).all()
    assert torch.isfinite(f_new.grad).all()
    assert torch.equal(f_new.grad[[1, 3, 4, 5, 6, 8]], torch.zeros(6, D))
    _check_degenerate(loss, torch.tensor([1, 3, 4, 7]), None)


@pytest.mark.catalogue
@pytest.mark.parametrize("name", TERMS)
def test_losses_compute_in_fp32_for_half_inputs(stats, name):
    # Autocast may hand fp16 embeddings over; the losses compute in fp32 and stay finite. A term with
    # a network of its own (AdvBCT's discriminator) runs it under autocast, as training does.
    import contextlib
    f_new, f_old = _feats()
    loss = build_comp_loss(_cfg(name), old_classifier=_Linear(C_OLD, 5).requires_grad_(False), stats=stats)
    networked = any(p.dim() > 1 for p in loss.parameters())
    with torch.autocast("cpu", dtype=torch.float16) if networked else contextlib.nullcontext():
        out = loss(f_new.half(), f_old.half(), LABELS, _Linear(C_NEW, 6), progress=Progress())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for k, v in out.items() if k.startswith("loss_"))


# ------------------------------------------------------------------ adversarial term


def test_adversarial_loss_value_and_gradient_reversal():
    torch.manual_seed(0)
    f_new = torch.randn(8, D, requires_grad=True)
    f_old = torch.randn(8, D) + 2.0
    adv = AdversarialLoss(D, 5, "separate")
    # The schedule comes from where training stands: epoch 1 of 2 (weight (2 - 0 + 1) / 2 = 1.5),
    # 3 of 20 iterations done (alpha = dann_alpha(0.15)).
    alpha = dann_alpha(0.15)
    out = adv(f_new, f_old, None, None, Progress(epoch=0, epochs=2, iteration=3, iters_per_epoch=10))
    assert (out["alpha"], out["epoch_weight"]) == (pytest.approx(alpha), 1.5)
    disc = adv.discriminator
    new_ce = F.cross_entropy(disc(f_new), torch.zeros(8, dtype=torch.long))
    old_ce = F.cross_entropy(disc(f_old), torch.ones(8, dtype=torch.long))
    assert out["loss_adv"].item() == pytest.approx(1.5 * (new_ce + old_ce).item(), rel=1e-5)
    assert 0.0 <= out["stat_disc_acc"].item() <= 1.0

    out["loss_adv"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in adv.parameters())
    grad_through_grl = f_new.grad.clone()
    f_new.grad = None
    (1.5 * new_ce).backward()
    assert torch.allclose(grad_through_grl, -alpha * f_new.grad, atol=1e-6)


def test_discriminator_modes_differ_in_batchnorm_statistics():
    torch.manual_seed(0)
    f_new, f_old = torch.randn(8, D, requires_grad=True), torch.randn(8, D) + 2.0
    sep, joint = AdversarialLoss(D, 5, "separate"), AdversarialLoss(D, 5, "joint")
    joint.load_state_dict(sep.state_dict())
    late = Progress(epoch=1, epochs=2, iteration=9, iters_per_epoch=10)
    out_sep = sep(f_new, f_old, None, None, late)
    out_joint = joint(f_new, f_old, None, None, late)
    assert torch.isfinite(out_sep["loss_adv"]) and torch.isfinite(out_joint["loss_adv"])
    # Separate calls normalise each domain with its own batch statistics, the joint call with
    # shared ones: the losses and the running statistics differ.
    assert out_sep["loss_adv"].item() != pytest.approx(out_joint["loss_adv"].item())
    assert not torch.allclose(sep.discriminator.bn.running_mean, joint.discriminator.bn.running_mean)
    (out_sep["loss_adv"] + out_joint["loss_adv"]).backward()
    assert torch.isfinite(f_new.grad).all()


def test_adversarial_term_is_registered_and_reads_the_config():
    cfg = _cfg("none", DISC_MODE="joint", DISC_HIDDEN=7, EXTRA_TERMS=["adversarial"])
    cfg.TRAIN.TYPE = "compatible"
    terms = build_terms(cfg)
    assert list(terms) == ["comp_loss", "adv_loss"]  # checkpoints keep the discriminator under adv_loss.*
    adv = terms["adv_loss"]
    assert adv.mode == "joint" and adv.discriminator.fc1.weight.shape == (7, D) and adv.NEEDS_OLD_FEATURES
    # The reference's TRAIN.TYPE adv_compatible adds the same term.
    cfg.COMP_LOSS.EXTRA_TERMS = []
    cfg.TRAIN.TYPE = "adv_compatible"
    assert list(build_terms(cfg)) == ["comp_loss", "adv_loss"]
    cfg.COMP_LOSS.DISC_MODE = "both"
    with pytest.raises(BadInputError, match="COMP_LOSS.DISC_MODE 'both'"):
        build_terms(cfg)


class _CountingOld(nn.Module):
    """A frozen "old model" that counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.flatten(1)[:, :D]


class _TinyNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = _Linear(C_NEW, 7)

    def forward(self, x, labels=None, with_logits=False):
        f = x.flatten(1)[:, :D] * 2.0
        return f, self.classifier(f)


@pytest.mark.catalogue
@pytest.mark.parametrize("loss_type,adv", [*[(t, False) for t in TERMS], ("bct", True)])
def test_old_model_runs_only_when_a_term_reads_its_features(stats, loss_type, adv):
    from bct.engine.tasks import CompatTask
    from bct.losses import comp_loss_class
    runs_old = adv or comp_loss_class(loss_type).NEEDS_OLD_FEATURES

    old = _CountingOld()
    comp = build_comp_loss(_cfg(loss_type), old_classifier=_Linear(C_OLD, 5).requires_grad_(False), stats=stats)
    terms = {"comp_loss": comp, **({"adv_loss": AdversarialLoss(D, 4)} if adv else {})}
    task = CompatTask(_TinyNew(), old, terms)
    out, feat_old = task(torch.randn(len(LABELS), D), LABELS, progress=Progress())
    assert old.calls == int(runs_old) and (feat_old is not None) == runs_old
    assert all(torch.isfinite(v) for k, v in out.items() if k.startswith("loss_"))
