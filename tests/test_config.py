"""Config loading: every shipped config loads, errors name the key, _BASE_ and overrides work, older
key names map with a note, and the method catalogue builds every new-model config."""
import glob
import os

import pytest

from bct.config import load_cfg
from bct.config.methods import load_method_cfg, method_names
from bct.utils.errors import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in glob.glob(os.path.join(REPO, "configs", "**", "*.yml"), recursive=True)
                 if not f.endswith("Base-new.yml"))
SETTINGS = sorted(os.path.dirname(f) for f in glob.glob(os.path.join(REPO, "configs", "**", "Base-new.yml"),
                                                          recursive=True))
# The output folder of every (setting, method): the names the results and scripts rely on.
TAG_SUFFIX = {"configs": "", "configs/data_split": "_data", "configs/r50": "_r50", "configs/synthetic": "",
              "configs/synthetic/data_split": "_data", "configs/synthetic/r50": "_r50", "configs/own": ""}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_config_loads(path):
    cfg = load_cfg(path)
    # The old model's size, or a method that trains its own old model of its size (the d-Simplex).
    assert cfg.MODEL.EMB_DIM == 256 or "MODEL.EMB_DIM" in cfg.METHOD.OLD_MODEL_KEYS


@pytest.mark.catalogue
@pytest.mark.parametrize("setting,method", [(s, m) for s in SETTINGS for m in method_names()],
                         ids=lambda v: os.path.relpath(v, REPO) if os.path.isabs(v) else v)
def test_every_method_loads_in_every_setting_with_its_tag(setting, method):
    rel = os.path.relpath(setting, REPO)
    cfg = load_method_cfg(setting, method)
    assert cfg.TAG == f"new_{method}{TAG_SUFFIX[rel]}"
    assert cfg.METHOD.NAME == method and cfg.METHOD.TITLE
    # The old model's size, or the method trains its own old model of its size (the d-Simplex).
    assert cfg.MODEL.EMB_DIM == 256 or "MODEL.EMB_DIM" in cfg.METHOD.OLD_MODEL_KEYS
    # The file path of the settings' former stubs names the same config.
    assert load_cfg(os.path.join(setting, f"new_{method}.yml")) == cfg


@pytest.mark.catalogue
def test_every_comp_loss_in_configs_is_registered():
    from bct.losses import COMP_LOSS_REGISTRY, import_modules
    cfgs = [load_cfg(p) for p in CONFIGS] + [load_method_cfg(s, m) for s in SETTINGS for m in method_names()]
    for c in cfgs:
        import_modules(c.MODULES)
    used = {c.COMP_LOSS.TYPE for c in cfgs} | {t for c in cfgs for t in c.COMP_LOSS.EXTRA_TERMS}
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
        assert os.path.normpath(n.COMP_LOSS.RADIUS_FILE) == os.path.normpath(os.path.join(e.EXTRACT.SAVE_DIR, "radius.json"))
        assert os.path.normpath(n.COMP_LOSS.ANGLE_FILE) == os.path.normpath(os.path.join(e.EXTRACT.SAVE_DIR, "angle.json"))
        assert n.OLD_MODEL.MODEL_PATH == e.OLD_MODEL.MODEL_PATH
        assert n.OLD_MODEL.NUM_CLASSES == e.OLD_MODEL.NUM_CLASSES


def test_advbct_config_is_the_papers():
    cfg = load_cfg(os.path.join(REPO, "configs/new_advbct.yml"))
    assert (cfg.TRAIN.TYPE, cfg.COMP_LOSS.TYPE, cfg.COMP_LOSS.ELASTIC_BOUNDARY, cfg.COMP_LOSS.THRESHOLD) == \
        ("compatible", "bct_limit", True, 1.0)
    assert cfg.COMP_LOSS.EXTRA_TERMS == ["adversarial"]
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


def test_older_key_names_map_with_one_note_and_dead_keys_are_ignored(tmp_path):
    old = _write_yaml(tmp_path / "old.yml", {
        "TRAIN": {"FILE_DIR": "a.txt", "THRESHOLD": 1.5, "DATASET_TYPE": "landmark"},
        "EVAL": {"OLD_SAVE_FILE": "r.json", "OLD_ANGLE_FILE": "g.json", "HOT_REFRESH": True,
                 "DATASET_TYPE": "landmark", "DATASET_NAME": "roxford5k"},
        "UPGRADE_LOSS": {"TYPE": "base", "WEIGHT": 1.0}})
    notes = []
    cfg = load_cfg(old, notes=notes)
    assert (cfg.TRAIN.LIST_FILE, cfg.COMP_LOSS.THRESHOLD, cfg.COMP_LOSS.RADIUS_FILE, cfg.COMP_LOSS.ANGLE_FILE,
            cfg.EVAL.PARTIAL_BACKFILL) == ("a.txt", 1.5, "r.json", "g.json", True)
    assert len(notes) == 1 and "\n" not in notes[0]
    for part in ("TRAIN.FILE_DIR -> TRAIN.LIST_FILE", "EVAL.OLD_SAVE_FILE -> COMP_LOSS.RADIUS_FILE",
                 "EVAL.HOT_REFRESH -> EVAL.PARTIAL_BACKFILL", "TRAIN.THRESHOLD -> COMP_LOSS.THRESHOLD",
                 "UPGRADE_LOSS ignored", "TRAIN.DATASET_TYPE ignored", "EVAL.DATASET_NAME ignored"):
        assert part in notes[0]
    # Renamed keys follow the usual order: a later layer wins in either name (both names in one layer must
    # agree: test_an_old_key_name_and_its_new_name_with_different_values_are_refused), and a wrong value
    # names the old key.
    assert load_cfg(old, ["TRAIN.LIST_FILE", "b.txt"], notes=[]).TRAIN.LIST_FILE == "b.txt"
    with pytest.raises(BadInputError, match=r"TRAIN\.THRESHOLD expects float"):
        load_cfg("", ["TRAIN.THRESHOLD", "high"], notes=[])
    # A checkpoint's stored config with the old names rebuilds under the new ones.
    from bct.config.loader import cfg_from_yaml_text
    assert cfg_from_yaml_text("EVAL:\n  OLD_SAVE_FILE: r.json\nTRAIN:\n  THRESHOLD: 1.0\n").COMP_LOSS.RADIUS_FILE == "r.json"


def test_training_settings_keep_the_statistics_files():
    from bct.config.loader import training_settings
    a = load_cfg(os.path.join(REPO, "configs/synthetic/new_advbct.yml"))
    b = load_cfg(os.path.join(REPO, "configs/synthetic/new_advbct.yml"), ["COMP_LOSS.RADIUS_FILE", "other.json"])
    c = load_cfg(os.path.join(REPO, "configs/synthetic/new_advbct.yml"), ["EVAL.BATCH_SIZE", "3", "METHOD.TITLE", "X"])
    assert training_settings(a) != training_settings(b)
    assert training_settings(a) == training_settings(c)


def test_key_value_written_with_equals_is_named():
    with pytest.raises(BadInputError, match=r"TRAIN\.EPOCHS=2: overrides are KEY VALUE pairs separated by a space.*"
                                            r"write TRAIN\.EPOCHS 2"):
        load_cfg("", ["TRAIN.EPOCHS=2", "TAG", "r3"])
    # A value may hold '=' (a path).
    assert load_cfg("", ["TAG", "a=b"]).TAG == "a=b"


def test_section_given_as_key_says_section():
    with pytest.raises(BadInputError, match=r"TRAIN is a section, not a key; give one of its keys, e\.g\. TRAIN\.\w+"):
        load_cfg("", ["TRAIN", "5"])
    with pytest.raises(BadInputError, match=r"TAG is a key, not a section"):
        load_cfg("", ["TAG.X", "5"])


@pytest.mark.parametrize("given,closest", [("TRAIN.LR", "TRAIN.OPTIMIZER.BASE_LR"), ("TRAIN.EPOCH", "TRAIN.EPOCHS"),
                                           ("TRAIN.EMB_DIM", "MODEL.EMB_DIM"), ("EVAL.DATASETS", "EVAL.DATASET"),
                                           ("TRAIN.BATCHSIZE", "TRAIN.BATCH_SIZE")])
def test_closest_key_hint(given, closest):
    with pytest.raises(BadInputError, match=rf"unknown config key {given} \(closest valid key: {closest}\)"):
        load_cfg("", [given, "1"])


def _terms(opts):
    """The run's terms as the trainer builds them (the names are checked there, not when a yaml loads)."""
    from bct.losses.registry import term_names
    return term_names(load_cfg("", ["TRAIN.TYPE", "compatible", *opts]))


def test_comp_loss_type_is_checked_against_the_registry_where_terms_are_built():
    with pytest.raises(BadInputError, match=r"COMP_LOSS.TYPE 'bct_limt' is not a registered compatibility loss "
                                            r"\(did you mean 'bct_limit'\?\).*valid names: .*hot_refresh"):
        _terms(["COMP_LOSS.TYPE", "bct_limt"])
    with pytest.raises(BadInputError, match=r"COMP_LOSS.EXTRA_TERMS 'adversary' .*did you mean 'adversarial'"):
        _terms(["COMP_LOSS.TYPE", "bct", "COMP_LOSS.EXTRA_TERMS", "['adversary']"])
    with pytest.raises(BadInputError, match=r"MODULES: cannot import no_such_module_here"):
        _terms(["COMP_LOSS.TYPE", "bct", "MODULES", "['no_such_module_here']"])
    with pytest.raises(BadInputError, match=r"TRAIN.TYPE compatible needs COMP_LOSS.TYPE or COMP_LOSS.EXTRA_TERMS"):
        _terms([])


def test_a_loss_registered_in_a_module_named_by_modules_can_be_selected(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "cfg_toy_loss.py").write_text(
        "import torch.nn as nn\n"
        "from bct.losses import register_comp_loss\n"
        "@register_comp_loss('cfg_toy')\n"
        "class Toy(nn.Module):\n"
        "    @classmethod\n"
        "    def from_config(cls, cfg, old_classifier=None, stats=None):\n"
        "        return cls()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BadInputError, match="'cfg_toy' is not a registered"):
        _terms(["COMP_LOSS.TYPE", "cfg_toy"])
    assert _terms(["MODULES", "['cfg_toy_loss']", "COMP_LOSS.TYPE", "cfg_toy"]) == ["cfg_toy"]


@pytest.mark.catalogue
def test_method_catalogue():
    from bct.config.methods import PAPER_ORDER, method_title, methods_dir
    names = method_names()
    paper = [n for n in PAPER_ORDER if n in names]  # the paper's order first, then the others by name
    assert names[:len(paper)] == paper and names[len(paper):] == sorted(names[len(paper):])
    assert all(method_title(n) for n in names)
    assert "oracle" not in method_names(include_oracle=False)
    assert os.path.samefile(methods_dir(), os.path.join(REPO, "bct", "methods"))
    assert [method_title(m) for m in ("advbct", "hot_refresh")] == ["AdvBCT", "Hot-refresh"]
    with pytest.raises(BadInputError, match=r"method 'advbtc' is not in the catalogue .*valid names: oracle, bct"):
        load_method_cfg(os.path.join(REPO, "configs"), "advbtc")
    cfg = load_method_cfg(os.path.join(REPO, "configs/synthetic"), "unibct", ["TRAIN.EPOCHS", "2"])
    assert (cfg.TRAIN.CLIP_GRAD, cfg.TRAIN.EPOCHS) == (5.0, 2)  # the setting's override file, then opts
    assert load_method_cfg(os.path.join(REPO, "configs/synthetic/data_split"), "unibct").TRAIN.CLIP_GRAD == 0.0


def test_reference_adv_compatible_means_the_adversarial_term():
    from bct.losses import term_names
    ref = load_cfg("", ["TRAIN.TYPE", "adv_compatible", "COMP_LOSS.TYPE", "bct_limit"])
    ours = load_method_cfg(os.path.join(REPO, "configs"), "advbct")
    assert term_names(ref) == term_names(ours) == ["bct_limit", "adversarial"]


def test_an_old_key_name_and_its_new_name_with_different_values_are_refused(tmp_path):
    """As two spellings of one architecture: which would win depends on their order, so they must agree."""
    with pytest.raises(BadInputError, match=r"^command line: TRAIN.FILE_DIR 'a.txt' \(the older name of TRAIN.LIST_FILE\) "
                                            r"and TRAIN.LIST_FILE 'b.txt' disagree; keep only TRAIN.LIST_FILE$"):
        load_cfg("", ["TRAIN.LIST_FILE", "b.txt", "TRAIN.FILE_DIR", "a.txt"], notes=[])
    path = tmp_path / "c.yml"
    path.write_text("EVAL:\n  PARTIAL_BACKFILL: False\n  HOT_REFRESH: True\n")
    with pytest.raises(BadInputError, match=r"c.yml: EVAL.HOT_REFRESH True \(the older name of EVAL.PARTIAL_BACKFILL\) "
                                            r"and EVAL.PARTIAL_BACKFILL False disagree"):
        load_cfg(str(path), notes=[])
    # The same value twice, or the two names in two layers (the later one wins as usual), load.
    assert load_cfg("", ["TRAIN.FILE_DIR", "a.txt", "TRAIN.LIST_FILE", "a.txt"], notes=[]).TRAIN.LIST_FILE == "a.txt"
    base = tmp_path / "base.yml"
    base.write_text("TRAIN:\n  FILE_DIR: a.txt\n")
    child = tmp_path / "child.yml"
    child.write_text("_BASE_: base.yml\nTRAIN:\n  LIST_FILE: b.txt\n")
    assert load_cfg(str(child), notes=[]).TRAIN.LIST_FILE == "b.txt"
    assert load_cfg(str(base), ["TRAIN.LIST_FILE", "c.txt"], notes=[]).TRAIN.LIST_FILE == "c.txt"
