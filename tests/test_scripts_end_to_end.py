"""The scripts end to end on the tiny synthetic benchmark: the bash scripts of the whole pipeline,
every method of the catalogue trained, extract_feat's files, and scripts/test.sh's self/cross-test
JSON (with backfill endpoints)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bct.config.methods import method_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYN = os.path.join(REPO, "configs", "synthetic")
# The method scripts/train_new.sh trains when METHOD is not set.
_SCRIPT_METHOD = re.search(r"^bct_env METHOD (\w+)", open(os.path.join(REPO, "scripts", "train_new.sh")).read(),
                           flags=re.M).group(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    from bct.tools import make_synthetic
    make_synthetic.main(["--out", str(root), "--size", "tiny"])
    return root


def _run(cmd, env=None):
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="2", **(env or {}))
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _common(tiny, out):
    return ["TRAIN.ROOT", f"{tiny}/GLDv2", "OUTPUT", str(out), "TRAIN.BATCH_SIZE", "4", "TRAIN.EPOCHS", "1",
            "TRAIN.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "0", "TRAIN.MAX_ITERS", "2", "EVAL.INPUT_SIZE", "32",
            "EVAL.NUM_WORKERS", "0", "VAL.ROOT", f"{tiny}/ROxfordParis", "DEVICE", "cpu",
            "OLD_MODEL.NUM_CLASSES", "3", "NEW_MODEL.NUM_CLASSES", "10",
            "OLD_MODEL.PRETRAINED", "False", "NEW_MODEL.PRETRAINED", "False",
            "COMP_LOSS.RADIUS_FILE", f"{out}/stats/radius.json", "COMP_LOSS.ANGLE_FILE", f"{out}/stats/angle.json",
            "EXTRACT.SAVE_DIR", f"{out}/stats", "EVAL.CACHE_DIR", f"{out}/cache"]


def _lists(tiny):
    return (f"{tiny}/GLDv2/gldv2_train_old_30percent_class.txt", f"{tiny}/GLDv2/gldv2_train_new_100percent_class.txt")


@pytest.mark.slow
def test_scripts_run_the_whole_pipeline(tiny, tmp_path):
    old_list, new_list = _lists(tiny)
    common = _common(tiny, tmp_path)
    old_ckpt = f"{tmp_path}/resnet18/old_30class/model_final.pth"
    _run(["bash", "scripts/train_old.sh", *common, "TRAIN.LIST_FILE", old_list],
         {"CONFIG": f"{SYN}/old_model.yml", "GPUS": "0"})
    assert os.path.isfile(old_ckpt)
    _run(["bash", "scripts/extract_feat.sh", *common, "TRAIN.LIST_FILE", old_list, "OLD_MODEL.MODEL_PATH", old_ckpt],
         {"CONFIG": f"{SYN}/extract_feat.yml", "GPUS": "0"})
    radius = json.load(open(f"{tmp_path}/stats/radius.json"))
    angle = json.load(open(f"{tmp_path}/stats/angle.json"))
    old_classes = {line.split()[1] for line in open(old_list)}
    assert set(radius) == set(angle) == old_classes
    assert all(len(v["center"]) == 256 and v["radius"] == sorted(v["radius"]) for v in radius.values())
    assert np.load(f"{tmp_path}/stats/feats.npy").shape[1] == 256
    # Without ImageNet weights (PRETRAINED=False) the new model starts from the old model's backbone,
    # published once under OUTPUT/<arch>/start/ and named by the old model's digest.
    no_weights = [v for i in range(0, len(common), 2) if not common[i].endswith(".PRETRAINED")
                  for v in common[i:i + 2]]
    out = _run(["bash", "scripts/train_new.sh", *no_weights, "TRAIN.LIST_FILE", new_list,
                "OLD_MODEL.MODEL_PATH", old_ckpt, "TRAIN.VAL_FREQ", "1"],
               {"CONFIG_DIR": SYN, "GPUS": "0", "PRETRAINED": "False"})
    assert "new model from the old model's backbone" in out
    import torch
    from bct.utils.fileio import file_digest
    start = f"{tmp_path}/resnet18/start/old_backbone_{file_digest(old_ckpt)[:12]}.pth"
    old_state = torch.load(old_ckpt, map_location="cpu", weights_only=False)["model"]
    start_state = torch.load(start, map_location="cpu")
    assert start_state.keys() == {k[len("backbone."):] for k in old_state if k.startswith("backbone.")}
    assert all(torch.equal(start_state[k], old_state["backbone." + k]) for k in start_state)
    new_ckpt = f"{tmp_path}/resnet18/new_advbct/model_final.pth"
    assert start in open(f"{tmp_path}/resnet18/new_advbct/config.yaml").read()
    log = open(f"{tmp_path}/resnet18/new_advbct/log.txt").read()
    for term in ("loss_ce", "loss_boundary", "loss_adv", "alpha", "epoch_weight", "stat_violator_frac",
                 "stat_mean_radius", "val_self_mAP_M", "val_cross_mAP_M"):
        assert term in log, term
    out = _run(["bash", "scripts/test.sh", "landmark", "roxford5k", f"{tiny}/ROxfordParis", "EVAL.INPUT_SIZE", "32",
                "EVAL.NUM_WORKERS", "0", "EVAL.PARTIAL_BACKFILL", "True", "EVAL.CACHE_DIR", f"{tmp_path}/cache"],
               {"NEW_MODEL_PATH": new_ckpt, "OLD_MODEL_PATH": old_ckpt, "SAVE_DIR": f"{tmp_path}/eval", "GPUS": "0"})
    assert "cross-test M(new, old): E:" in out
    res = json.load(open(f"{tmp_path}/eval/roxford5k.json"))
    for key in ("self", "cross", "old_self"):
        assert set(res[key]) >= {"easy", "medium", "hard"} and 0 <= res[key]["medium"]["map"] <= 1
        assert set(res[key]["medium"]["mp"]) == {"1", "5", "10"}
    assert res["models"]["new"]["path"] == new_ckpt and len(res["models"]["old"]["sha256"]) == 64
    curve = res["backfill_detail"]
    assert [p["ratio"] for p in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve[0]["medium"] == pytest.approx(res["cross"]["medium"]["map"])
    assert curve[-1]["medium"] == pytest.approx(res["self"]["medium"]["map"])
    # A user's own set (here a copy of ROxford under another name) through the "own" form.
    import shutil
    own = tmp_path / "own"
    shutil.copytree(f"{tiny}/ROxfordParis/roxford5k", own / "shoes")
    os.rename(own / "shoes" / "gnd_roxford5k.pkl", own / "shoes" / "gnd_shoes.pkl")
    _run(["bash", "scripts/test.sh", "own", "shoes", str(own), "EVAL.INPUT_SIZE", "32", "EVAL.NUM_WORKERS", "0",
          "EVAL.CACHE_DIR", f"{tmp_path}/cache"],
         {"NEW_MODEL_PATH": new_ckpt, "OLD_MODEL_PATH": old_ckpt, "SAVE_DIR": f"{tmp_path}/eval", "GPUS": "0"})
    shoes = json.load(open(f"{tmp_path}/eval/shoes.json"))
    assert shoes["dataset"] == "shoes" and shoes["self"] == res["self"] and shoes["cross"] == res["cross"]
    # The scripts refuse to train over a finished run of other settings, and reuse one of the same.
    proc = subprocess.run(["bash", "scripts/train_old.sh", "--reuse", *common, "TRAIN.LIST_FILE", old_list,
                           "TRAIN.MAX_ITERS", "1"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=REPO, CONFIG=f"{SYN}/old_model.yml", GPUS="0"))
    assert proc.returncode == 2 and "TRAIN.MAX_ITERS: was 2, now 1" in proc.stderr.strip().splitlines()[-1]
    out = _run(["bash", "scripts/train_old.sh", "--reuse", *common, "TRAIN.LIST_FILE", old_list],
               {"CONFIG": f"{SYN}/old_model.yml", "GPUS": "0"})
    assert "reusing" in out


@pytest.mark.slow
@pytest.mark.catalogue
@pytest.mark.parametrize("method", [m for m in method_names() if m != _SCRIPT_METHOD])
def test_every_method_trains(tiny, tmp_path, method):
    """Each method's synthetic config trains a couple of iterations and writes a new-model checkpoint
    (the scripts' default method is trained by test_scripts_run_the_whole_pipeline)."""
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.loading import load_checkpoint
    from bct.models.build import build_model
    from bct.config import load_cfg
    from bct.tools import extract_feat, train
    old_list, new_list = _lists(tiny)
    common = _common(tiny, tmp_path)
    old_cfg = load_cfg(f"{SYN}/old_model.yml", common)
    old = build_model(old_cfg, "old")
    save_checkpoint(f"{tmp_path}/old.pth", {"model": old.state_dict(), "meta": old.meta})
    extract_feat.main(["--cfg", f"{SYN}/extract_feat.yml", *common, "TRAIN.LIST_FILE", old_list,
                       "OLD_MODEL.MODEL_PATH", f"{tmp_path}/old.pth"])
    train.main(["--cfg", f"{SYN}/new_{method}.yml", *common, "TRAIN.LIST_FILE", new_list,
                "OLD_MODEL.MODEL_PATH", f"{tmp_path}/old.pth"])
    ckpt = load_checkpoint(f"{tmp_path}/resnet18/new_{method}/model_final.pth")
    assert ckpt["meta"]["role"] == "new" and ckpt["meta"]["num_classes"] == 10
    assert not any(k.startswith("old_model") for k in ckpt["model"])  # the frozen old model is never saved
    if load_cfg(f"{SYN}/new_{method}.yml").TRAIN.TYPE != "base":  # a method trained against the old model
        assert ckpt["meta"]["old_model_path"] == f"{tmp_path}/old.pth"


@pytest.mark.slow
def test_test_tool_refuses_wrong_arch(tiny, tmp_path):
    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model
    cfg = load_cfg("", ["NEW_MODEL.PRETRAINED", "False"])
    m = build_model(cfg, "new")
    save_checkpoint(f"{tmp_path}/m.pth", {"model": m.state_dict(), "meta": m.meta})
    proc = subprocess.run([sys.executable, "-m", "bct.tools.test", "NEW_MODEL.MODEL_PATH", f"{tmp_path}/m.pth",
                           "NEW_MODEL.ARCH", "resnet50", "EVAL.ROOT", f"{tiny}/ROxfordParis"],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: checkpoint") and "NEW_MODEL.ARCH='resnet50'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_test_tool_evaluates_several_sets_in_one_process(tiny, tmp_path):
    """--datasets loads the models once and writes the same per-set JSON as one call per set;
    --summary writes the old/new/cross table."""
    import torch
    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model
    from bct.tools import test as test_tool
    from bct.utils.errors import BadInputError
    for role, seed in (("new", 0), ("old", 1)):
        torch.manual_seed(seed)
        m = build_model(load_cfg("", [f"{role.upper()}_MODEL.PRETRAINED", "False"]), role)
        save_checkpoint(f"{tmp_path}/{role}.pth", {"model": m.state_dict(), "meta": m.meta})
    opts = ["NEW_MODEL.MODEL_PATH", f"{tmp_path}/new.pth", "OLD_MODEL.MODEL_PATH", f"{tmp_path}/old.pth",
            "EVAL.INPUT_SIZE", "32", "EVAL.NUM_WORKERS", "0", "EVAL.ROOT", f"{tiny}/ROxfordParis",
            "EVAL.GLDV2_ROOT", f"{tiny}/GLDv2", "EVAL.CACHE_DIR", f"{tmp_path}/cache", "DEVICE", "cpu"]
    many = test_tool.main(["--datasets", "rparis6k,roxford5k,gldv2", "--summary", *opts,
                           "EVAL.SAVE_DIR", f"{tmp_path}/many"])
    assert list(many) == ["rparis6k", "roxford5k", "gldv2"]
    for name in many:
        assert os.path.isfile(f"{tmp_path}/many/{name}.json")
    summary = open(f"{tmp_path}/many/summary.md").read()
    assert summary.count("\n") == 5 and "ROxford" in summary and "GLDv2" in summary
    one = test_tool.main([*opts, "EVAL.DATASET", "roxford5k", "EVAL.SAVE_DIR", f"{tmp_path}/one"])
    assert one["headline"] == pytest.approx(many["roxford5k"]["headline"])
    with pytest.raises(BadInputError, match="NAME or NAME=ROOT"):
        test_tool.main(["--datasets", "roxford5k,EVAL.ROOT", *opts, "NEW_MODEL.MODEL_PATH", f"{tmp_path}/none.pth"])


@pytest.mark.slow
def test_data_generation_runs_without_torch(tmp_path):
    """The demo draws the benchmark while torch is still installing: make_synthetic and summarize
    must neither import torch nor need it (here torch is made unimportable)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from bct.tools import make_synthetic, summarize\n"
            "from bct.tools.common import run\n"
            f"run(make_synthetic.main, ['--out', {str(tmp_path / 'syn')!r}, '--size', 'tiny', '--workers', '1'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(tmp_path / "syn" / "synthetic_meta.json")
