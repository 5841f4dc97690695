"""Stationary representations (the fixed d-Simplex classifier, LOSS.TYPE simplex) against the paper's
equations, written as per-sample loops: regular simplex prototypes, the cross-entropy over them, and the
same prototypes for every generation."""
import math
import os

import pytest
import torch

from bct.config import load_cfg
from bct.config.methods import load_method_cfg, method_names
from bct.models.build import build_model, build_model_from_meta
from bct.models.heads import simplex_prototypes
from bct.pipeline.comparison import old_model_values
from bct.utils.errors import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTING = os.path.join(REPO, "configs", "synthetic")
# The catalogue's methods that use the fixed classifier (found by their config, not by name).
SIMPLEX_METHODS = [m for m in method_names() if load_method_cfg(SETTING, m).LOSS.TYPE == "simplex"]


@pytest.mark.parametrize("k,dim", [(2, 1), (5, 4), (7, 10), (30, 29)])
def test_prototypes_are_a_regular_simplex(k, dim):
    p = simplex_prototypes(k, dim).double()
    assert p.shape == (k, dim)
    for i in range(k):
        assert abs(p[i].norm().item() - 1.0) < 1e-6
        for j in range(k):
            if i != j:  # every pair at the same, most negative, cosine: -1/(k-1)
                assert abs(float(p[i] @ p[j]) + 1.0 / (k - 1)) < 1e-6
    assert p.sum(0).abs().max() < 1e-6  # centred at the origin
    assert p[:, k - 1:].abs().max() == 0 if dim > k - 1 else True


def test_too_few_dimensions_is_one_clear_line():
    with pytest.raises(ValueError, match="needs 9 dimensions"):
        simplex_prototypes(10, 8)
    meta = {"arch": "resnet18", "emb_dim": 8, "num_classes": 10, "loss_type": "simplex", "simplex_classes": 10}
    with pytest.raises(BadInputError, match="needs 9 dimensions; the embedding has 8"):
        build_model_from_meta(meta)
    meta.update(emb_dim=12, num_classes=11)
    with pytest.raises(BadInputError, match="cannot hold 11 classes"):
        build_model_from_meta(meta)


def test_cross_entropy_over_the_fixed_prototypes_matches_a_loop():
    torch.manual_seed(0)
    meta = {"arch": "resnet18", "emb_dim": 6, "num_classes": 4, "loss_type": "simplex", "simplex_classes": 7}
    clf = build_model_from_meta(meta).classifier
    assert not list(clf.parameters())  # nothing to learn: no optimiser ever sees the prototypes
    z = torch.randn(5, 6)
    y = torch.tensor([0, 3, 1, 2, 3])
    got = torch.nn.functional.cross_entropy(clf(z, y), y)
    p = simplex_prototypes(7, 6)
    want = 0.0
    for i in range(5):  # -log softmax over every prototype, the future classes' included
        logits = [float(z[i] @ p[k]) for k in range(7)]
        want += -(logits[y[i]] - math.log(sum(math.exp(v) for v in logits))) / 5
    assert abs(got.item() - want) < 1e-5


@pytest.mark.parametrize("method", SIMPLEX_METHODS)
def test_old_and_new_models_share_the_prototypes(method):
    """The method's own old model (old_model.yml + METHOD.OLD_MODEL_KEYS) and its new model have the same
    fixed classifier for the classes they share: compatible by construction."""
    new_cfg = load_method_cfg(SETTING, method, ["NEW_MODEL.PRETRAINED", "False"])
    values = old_model_values(new_cfg)
    assert values["LOSS.TYPE"] == "simplex"
    old_opts = [x for kv in values.items() for x in (kv[0], str(kv[1]))] + ["OLD_MODEL.PRETRAINED", "False"]
    old_cfg = load_cfg(os.path.join(SETTING, "old_model.yml"), old_opts)
    old, new = build_model(old_cfg, "old"), build_model(new_cfg, "new")
    assert old.meta["num_classes"] < new.meta["num_classes"]
    assert torch.equal(old.classifier.weight, new.classifier.weight)
    k = new.classifier.weight.shape[0]
    assert new.meta["emb_dim"] >= k - 1


@pytest.mark.slow
@pytest.mark.parametrize("method", SIMPLEX_METHODS)
def test_the_old_and_new_models_train_and_reload(method, tmp_path):
    from bct.models.loading import load_model
    from bct.engine.trainer import Trainer, output_dir
    from bct.utils.logger import setup_logger
    from helpers import make_image_list, train_opts

    setup_logger("")
    data = str(tmp_path / "data")
    old_list = make_image_list(data, n_classes=3, per_class=4, name="old.txt")
    new_list = make_image_list(data, n_classes=6, per_class=4, name="new.txt")
    keys = ["LOSS.SIMPLEX_CLASSES", "6", "MODEL.EMB_DIM", "8", "TRAIN.MAX_ITERS", "2"]
    values = old_model_values(load_method_cfg(SETTING, method, keys))
    old_cfg = load_cfg(os.path.join(SETTING, "old_model.yml"), train_opts(data, old_list, tmp_path / "o", 3) + keys +
                       [x for kv in values.items() for x in (kv[0], str(kv[1]))])
    Trainer(old_cfg, torch.device("cpu")).train()
    old = os.path.join(output_dir(old_cfg), "model_final.pth")
    new_cfg = load_method_cfg(SETTING, method, train_opts(data, new_list, tmp_path / "n", 6, role="new") + keys +
                              ["OLD_MODEL.MODEL_PATH", old, "OLD_MODEL.NUM_CLASSES", "3"])
    Trainer(new_cfg, torch.device("cpu")).train()
    a, b = load_model(old), load_model(os.path.join(output_dir(new_cfg), "model_final.pth"))
    assert torch.equal(a.classifier.weight, b.classifier.weight)  # the fixed prototypes, never trained
    assert a.classifier.weight.shape == (6, 8) and a.meta["simplex_classes"] == 6
