"""BT2 (the 'bt2' term, NEW_MODEL.EXTRA_DIMS) against the paper's equations, written as per-sample loops: the
orthonormal basis transformation of the wider embedding, the loss on its old-compatible part, and the
compatible part that meets an old gallery."""
import math

import numpy as np
import pytest
import torch

from bct.config.defaults import get_cfg_defaults
from bct.models.loading import load_model_weights
from bct.losses import build_comp_loss
from bct.models.build import build_model, build_model_from_meta, compatible_part
from bct.models.heads import LinearClassifier


def _cfg(extra=8, emb=6):
    cfg = get_cfg_defaults()
    cfg.defrost()
    cfg.MODEL.EMB_DIM, cfg.NEW_MODEL.EXTRA_DIMS = emb, extra
    cfg.NEW_MODEL.PRETRAINED, cfg.NEW_MODEL.NUM_CLASSES, cfg.OLD_MODEL.NUM_CLASSES = False, 5, 3
    cfg.TRAIN.TYPE, cfg.COMP_LOSS.TYPE, cfg.COMP_LOSS.WEIGHT = "compatible", "bt2", 0.7
    return cfg


def test_the_wider_embedding_goes_through_an_orthonormal_basis():
    torch.manual_seed(0)
    model = build_model(_cfg(), "new").eval()
    assert (model.meta["emb_dim"], model.meta["compatible_dims"]) == (14, 6)
    basis = model.head.basis.weight
    assert torch.allclose(basis @ basis.T, torch.eye(14), atol=1e-5)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        bn = model.head.bn(model.head.fc(model.backbone(x)))
        emb = model(x)
    assert emb.shape == (4, 14)
    assert torch.allclose(torch.cdist(emb, emb), torch.cdist(bn, bn), atol=1e-4)  # an isometry


def test_a_checkpoint_rebuilds_the_same_embedding():
    torch.manual_seed(1)
    model = build_model(_cfg(), "new").eval()
    again = build_model_from_meta(model.meta)
    load_model_weights(again, model.state_dict(), "mem")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), again.eval()(x), atol=1e-6)


def test_term_matches_a_loop():
    torch.manual_seed(2)
    cfg = _cfg()
    old_clf = LinearClassifier(6, 3)
    term = build_comp_loss(cfg, old_classifier=old_clf)
    feat_new, feat_old = torch.randn(5, 14), torch.randn(5, 6)
    labels = torch.tensor([0, 4, 2, 1, 3])  # 4 and 3 are new classes
    out = term(feat_new, feat_old, labels, None)
    w = old_clf.weight.detach()
    ce, n_old, align = 0.0, 0, 0.0
    for i in range(5):
        c = feat_new[i, :6]
        if labels[i] < 3:
            logits = [float(c @ w[k]) for k in range(3)]
            ce += -(logits[labels[i]] - math.log(sum(math.exp(v) for v in logits)))
            n_old += 1
        align += 1 - float(c @ feat_old[i]) / float(c.norm() * feat_old[i].norm())
    assert abs(out["loss_bt2_influence"].item() - 0.7 * ce / n_old) < 1e-5
    assert abs(out["loss_bt2_align"].item() - 0.7 * align / 5) < 1e-5


def test_gradients_reach_only_the_compatible_part():
    cfg = _cfg()
    term = build_comp_loss(cfg, old_classifier=LinearClassifier(6, 3))
    feat_new = torch.randn(4, 14, requires_grad=True)
    out = term(feat_new, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), None)
    (out["loss_bt2_influence"] + out["loss_bt2_align"]).backward()
    assert feat_new.grad[:, 6:].abs().max() == 0 and feat_new.grad[:, :6].abs().max() > 0


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_the_compatible_part_meets_the_old_gallery(kind):
    meta = {"emb_dim": 5, "compatible_dims": 2}
    feats = np.array([[3.0, 4.0, 1.0, 1.0, 1.0], [0.0, 2.0, 5.0, 0.0, 0.0]], dtype=np.float32)
    x = feats if kind == "numpy" else torch.from_numpy(feats)
    part = np.asarray(compatible_part(x, meta))
    assert np.allclose(part, [[0.6, 0.8], [0.0, 1.0]])
    assert compatible_part(x, {"emb_dim": 5}) is x  # other models: as they are


@pytest.mark.slow
def test_bt2_trains_against_an_old_model_and_reloads(tmp_path):
    import os

    from bct.config import load_cfg
    from bct.config.methods import load_method_cfg, method_names
    from bct.models.loading import load_model
    from bct.engine.trainer import Trainer, output_dir
    from bct.utils.logger import setup_logger
    from helpers import make_image_list, train_opts

    setting = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "synthetic")
    method = next(m for m in method_names() if load_method_cfg(setting, m).COMP_LOSS.TYPE == "bt2")
    setup_logger("")
    data = str(tmp_path / "data")
    old_list = make_image_list(data, n_classes=3, per_class=4, name="old.txt")
    new_list = make_image_list(data, n_classes=6, per_class=4, name="new.txt")
    old_cfg = load_cfg(os.path.join(setting, "old_model.yml"), train_opts(data, old_list, tmp_path / "o", 3) +
                       ["TRAIN.MAX_ITERS", "2"])
    Trainer(old_cfg, torch.device("cpu")).train()
    old = os.path.join(output_dir(old_cfg), "model_final.pth")
    cfg = load_method_cfg(setting, method, train_opts(data, new_list, tmp_path / "n", 6, role="new") +
                          ["OLD_MODEL.MODEL_PATH", old, "OLD_MODEL.NUM_CLASSES", "3", "TRAIN.MAX_ITERS", "2"])
    hist = Trainer(cfg, torch.device("cpu")).train()
    assert hist[max(hist)]["loss_bt2_align"] > 0
    model = load_model(os.path.join(output_dir(cfg), "model_final.pth"))
    assert model.meta["emb_dim"] == 256 + cfg.NEW_MODEL.EXTRA_DIMS and model.meta["compatible_dims"] == 256
