"""Config loading: every shipped config loads, errors name the key, _BASE_ and overrides work."""
import glob
import os

import pytest

from bct.config import load_cfg
from bct.utils.errors import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in glob.glob(os.path.join(REPO, "configs", "**", "*.yml"), recursive=True)
                 if os.sep + "methods" + os.sep not in f)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_config_loads(path):
    cfg = load_cfg(path)
    assert cfg.MODEL.EMB_DIM == 256


def test_every_comp_loss_in_configs_is_registered():
    from bct.losses import COMP_LOSS_REGISTRY
    used = {load_cfg(p).COMP_LOSS.TYPE for p in CONFIGS}
    assert used - set(COMP_LOSS_REGISTRY) == set()


def test_new_configs_point_at_extract_feat_outputs():
    """The statistics files of the new-model configs are exactly what the matching extract_feat writes."""
    pairs = [("configs/extract_feat.yml", "configs/new_advbct.yml"),
             ("configs/data_split/extract_feat.yml", "configs/data_split/new_advbct.yml"),
             ("configs/synthetic/extract_feat.yml", "configs/synthetic/new_advbct.yml"),
             ("configs/synthetic/data_split/extract_feat.yml", "configs/synthetic/data_split/new_lce.yml"),
             ("configs/synthetic/r50/extract_feat.yml", "configs/synthetic/r50/new_unibct.yml")]
    for ext, new in pairs:
        e, n = load_cfg(os.path.join(REPO, ext)), load_cfg(os.path.join(REPO, new))
        assert os.path.normpath(n.EVAL.OLD_SAVE_FILE) == os.path.normpath(os.path.join(e.EXTRACT.SAVE_DIR, "radius.json"))
        assert os.path.normpath(n.EVAL.OLD_ANGLE_FILE) == os.path.normpath(os.path.join(e.EXTRACT.SAVE_DIR, "angle.json"))
        assert n.OLD_MODEL.MODEL_PATH == e.OLD_MODEL.MODEL_PATH
        assert n.OLD_MODEL.NUM_CLASSES == e.OLD_MODEL.NUM_CLASSES


def test_advbct_config_is_the_papers():
    cfg = load_cfg(os.path.join(REPO, "configs/new_advbct.yml"))
    assert (cfg.TRAIN.TYPE, cfg.COMP_LOSS.TYPE, cfg.COMP_LOSS.ELASTIC_BOUNDARY, cfg.TRAIN.THRESHOLD) == \
        ("adv_compatible", "bct_limit", True, 1.0)
    assert (cfg.OLD_MODEL.NUM_CLASSES, cfg.NEW_MODEL.NUM_CLASSES) == (24393, 81313)
    assert (cfg.TRAIN.OPTIMIZER.BASE_LR, cfg.TRAIN.LR_SCHEDULER.MILESTONES, cfg.TRAIN.EPOCHS) == (0.1, [5, 10, 20], 30)


def test_unknown_key_names_closest(tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text("TRAIN:\n  EPOCH: 3\n")
    with pytest.raises(BadInputError, match=r"unknown config key TRAIN\.EPOCH .*closest valid key: TRAIN\.EPOCHS"):
        load_cfg(str(p))
    with pytest.raises(BadInputError, match=r"unknown config key TRAIN\.BATCHSIZE .*TRAIN\.BATCH_SIZE"):
        load_cfg("", ["TRAIN.BATCHSIZE", "3"])


def test_type_mismatch_names_key_and_types(tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text("TRAIN:\n  EPOCHS: 'ten'\n")
    with pytest.raises(BadInputError, match=r"TRAIN\.EPOCHS expects int .* got str"):
        load_cfg(str(p))
    with pytest.raises(BadInputError, match=r"TRAIN\.OPTIMIZER\.BASE_LR expects float .* got str"):
        load_cfg("", ["TRAIN.OPTIMIZER.BASE_LR", "fast"])


def test_int_widens_to_float_and_cli_overrides():
    cfg = load_cfg("", ["TRAIN.OPTIMIZER.BASE_LR", "1", "TRAIN.EPOCHS", "7", "TAG", "1e-3",
                        "TRAIN.LR_SCHEDULER.MILESTONES", "[2, 4]"])
    assert cfg.TRAIN.OPTIMIZER.BASE_LR == 1.0 and isinstance(cfg.TRAIN.OPTIMIZER.BASE_LR, float)
    assert load_cfg("", ["TRAIN.OPTIMIZER.WEIGHT_DECAY", "5e-4"]).TRAIN.OPTIMIZER.WEIGHT_DECAY == 5e-4
    assert cfg.TRAIN.EPOCHS == 7 and cfg.TAG == "1e-3" and cfg.TRAIN.LR_SCHEDULER.MILESTONES == [2, 4]


def test_base_inheritance_relative_and_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "Base.yml").write_text("TRAIN:\n  EPOCHS: 3\n  BATCH_SIZE: 5\n")
    (tmp_path / "sub" / "exp.yml").write_text("_BASE_: '../Base.yml'\nTRAIN:\n  EPOCHS: 4\n")
    cfg = load_cfg(str(tmp_path / "sub" / "exp.yml"))
    assert (cfg.TRAIN.EPOCHS, cfg.TRAIN.BATCH_SIZE) == (4, 5)
    (tmp_path / "broken.yml").write_text("_BASE_: 'nowhere.yml'\n")
    with pytest.raises(BadInputError, match=r"_BASE_ file .*nowhere\.yml does not exist"):
        load_cfg(str(tmp_path / "broken.yml"))


def test_bad_choice_and_missing_file():
    with pytest.raises(BadInputError, match="COMP_LOSS.DISC_MODE is 'both'; expected one of separate, joint"):
        load_cfg("", ["COMP_LOSS.DISC_MODE", "both"])
    with pytest.raises(BadInputError, match="config file nothere.yml does not exist"):
        load_cfg("nothere.yml")
    with pytest.raises(BadInputError, match="KEY VALUE pairs"):
        load_cfg("", ["TRAIN.EPOCHS"])


def test_config_is_frozen():
    cfg = load_cfg("")
    with pytest.raises(AttributeError):
        cfg.TRAIN.EPOCHS = 3
