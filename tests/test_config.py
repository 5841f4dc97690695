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


# The reference's configs, rebuilt here with the key sets of its configs/old_model.yml,
# new_*.yml and test_model.yml (its distributed flags, MODEL.* of the trained model, EVAL.PRINT_FREQ).
_REF_COMMON = {"MULTIPROCESSING_DISTRIBUTED": True, "DIST_URL": "tcp://127.0.0.1:23456", "DISTRIBUTED": True}
_REF_TRAIN = {"DATASET_TYPE": "landmark", "DATASET": "gldv2", "ROOT": "./data/GLDv2", "BATCH_SIZE": 256,
              "EPOCHS": 30, "VAL_FREQ": 1, "INPUT_SIZE": 224}
_REF_EVAL = {"DATASET": "rparis6k", "ROOT": "./data/ROxfordParis/", "SAVE_DIR": "./logs/eval/x", "PRINT_FREQ": 10}


def _reference_new(comp: dict, train_type: str, arch: str = "resnet18", model_arch: str = "resnet18_resnet18") -> dict:
    return {**_REF_COMMON, "TAG": "100class_x", "OUTPUT": "output",
            "MODEL": {"ARCH": model_arch, "NUM_CLASSES": 81313},
            "OLD_MODEL": {"ARCH": arch, "NUM_CLASSES": 24393, "PRETRAINED": True,
                          "PRETRAINED_PATH": f"./output/final_model/{arch}_oldmodel_30class_epoch10.pth.tar"},
            "NEW_MODEL": {"ARCH": arch, "NUM_CLASSES": 81313, "PRETRAINED": True},
            "LOSS": {"TYPE": "softmax"}, "COMP_LOSS": comp, "UPGRADE_LOSS": {"TYPE": "base", "WEIGHT": 1},
            "TRAIN": {**_REF_TRAIN, "FILE_DIR": "./data/GLDv2/gldv2_train_new_100percent_class.txt",
                      "TYPE": train_type},
            "EVAL": {**_REF_EVAL, "OLD_SAVE_FILE": "./preprocess/center/x_radius.json"}}


def _write_yaml(path, data) -> str:
    import yaml
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_reference_old_model_yaml_loads_and_maps_model_keys(tmp_path):
    ref = {**_REF_COMMON, "TAG": "30class",
           "MODEL": {"ARCH": "resnet34", "NUM_CLASSES": 24393, "PRETRAINED": False},
           "TRAIN": {**_REF_TRAIN, "FILE_DIR": "./data/GLDv2/gldv2_train_old_30percent_class.txt"},
           "EVAL": _REF_EVAL}
    notes = []
    cfg = load_cfg(_write_yaml(tmp_path / "old_model.yml", ref), notes=notes)
    assert (cfg.OLD_MODEL.ARCH, cfg.OLD_MODEL.NUM_CLASSES, cfg.OLD_MODEL.PRETRAINED) == ("resnet34", 24393, False)
    assert (cfg.TRAIN.TYPE, cfg.TRAIN.ROLE, cfg.TAG) == ("base", "old", "30class")
    assert len(notes) == 1 and "\n" not in notes[0]
    for part in ("MODEL.ARCH -> OLD_MODEL.ARCH", "MODEL.NUM_CLASSES -> OLD_MODEL.NUM_CLASSES",
                 "DIST_URL ignored", "MULTIPROCESSING_DISTRIBUTED ignored", "EVAL.PRINT_FREQ ignored"):
        assert part in notes[0]


@pytest.mark.parametrize("comp,train_type", [
    ({"TYPE": "bct"}, "compatible"), ({"TYPE": "lce"}, "compatible"), ({"TYPE": "uni_bct"}, "compatible"),
    ({"TYPE": "hot_refresh"}, "compatible"), ({"TYPE": "bct_limit", "ELASTIC_BOUNDARY": True}, "adv_compatible")])
def test_reference_new_model_yamls_load(tmp_path, comp, train_type):
    data = _reference_new(comp, train_type)
    if train_type == "adv_compatible":
        data["TRAIN"]["THRESHOLD"] = 1.0
    notes = []
    cfg = load_cfg(_write_yaml(tmp_path / "new.yml", data), notes=notes)
    assert (cfg.TRAIN.TYPE, cfg.COMP_LOSS.TYPE) == (train_type, comp["TYPE"])
    assert (cfg.OLD_MODEL.ARCH, cfg.NEW_MODEL.ARCH, cfg.NEW_MODEL.NUM_CLASSES) == ("resnet18", "resnet18", 81313)
    assert "MODEL.ARCH ignored" in notes[0] and "MODEL.NUM_CLASSES ignored" in notes[0]
    assert "the trained old model goes in OLD_MODEL.MODEL_PATH" in notes[0]


def test_reference_test_yaml_and_command_line_load(tmp_path):
    data = _reference_new({"TYPE": "hot_refresh"}, "compatible", arch="resnet50", model_arch="resnet50_resne50")
    data["MULTIPROCESSING_DISTRIBUTED"] = False
    cfg = load_cfg(_write_yaml(tmp_path / "test_model.yml", data), notes=[])
    assert cfg.NEW_MODEL.ARCH == "resnet50"
    # The reference's scripts/train_old.sh passes these on the command line.
    notes = []
    cfg = load_cfg(os.path.join(REPO, "configs/old_model.yml"),
                   ["TAG", "30class", "OUTPUT", "output", "MODEL.NUM_CLASSES", "24393", "MODEL.ARCH", "resnet18",
                    "DIST_URL", "tcp://127.0.0.1:23456"], notes=notes)
    assert (cfg.OLD_MODEL.ARCH, cfg.OLD_MODEL.NUM_CLASSES, cfg.TAG) == ("resnet18", 24393, "30class")
    assert notes[0].startswith(os.path.join(REPO, "configs/old_model.yml") + ": reference config keys:")


def test_reference_key_against_bct_key(tmp_path):
    both = _write_yaml(tmp_path / "both.yml", {"MODEL": {"ARCH": "resnet34"}, "OLD_MODEL": {"ARCH": "resnet50"}})
    with pytest.raises(BadInputError, match=r"MODEL\.ARCH 'resnet34' .* and OLD_MODEL\.ARCH 'resnet50' disagree"):
        load_cfg(both)
    # A later level wins: the command line over the file, in either name.
    assert load_cfg(both, ["OLD_MODEL.ARCH", "resnet101"], notes=[]).OLD_MODEL.ARCH == "resnet101"
    assert load_cfg(str(tmp_path / "both.yml"), ["MODEL.ARCH", "resnet101"], notes=[]).OLD_MODEL.ARCH == "resnet101"
    # Keys of the reference that change meaning here are still unknown keys.
    with pytest.raises(BadInputError, match=r"unknown config key MODEL\.PRETRAINED_PATH"):
        load_cfg("", ["MODEL.PRETRAINED_PATH", "x.pth.tar"])


def test_tools_log_the_reference_note_once(tmp_path, capsys):
    import argparse

    from bct.tools.common import setup
    path = _write_yaml(tmp_path / "ref.yml", {"DISTRIBUTED": True, "MODEL": {"ARCH": "resnet18"}})
    setup(argparse.Namespace(cfg=path, opts=["DEVICE", "cpu"]))
    out = capsys.readouterr().out
    assert out.count("reference config keys: DISTRIBUTED ignored") == 1
