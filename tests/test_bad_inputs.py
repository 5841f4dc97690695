"""Bad inputs through the real entry points (bct.tools.train / extract_feat / test, wrapped by
bct.tools.common.run exactly as `python -m` runs them).

Every refused input must end in ONE line `error: ...` on stderr that names the file, list line or
config key and says what was expected (exit 2), a run that cannot go on exits 1 with one line, and
inputs that are odd but valid (greyscale, CMYK, RGBA, 16-bit, palette images; broken images under
*.SKIP_BAD_IMAGES) simply work, with the skipped count in the log. docs/troubleshooting.md lists
the same cases for users.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (WORLD_ARCH as ARCH, WORLD_PX as SIZE, eval_argv, expect_error, extract_argv,  # noqa: F401
                     invoke, revisited_set as _revisited, stats_file as _stats, train_argv,
                     train_new_argv, write_list)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------
# A shared tiny world: 8 labelled images, an old and a new checkpoint, old-class statistics and a
# revisited-format test set. Built once; every test writes its own broken variant next to it.
# --------------------------------------------------------------------------------------------

def _truncate(src, dst, keep=0.5):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return str(dst)


# --------------------------------------------------------------------------------------------
# Lists and dataset roots (training entry point)
# --------------------------------------------------------------------------------------------

LIST_CASES = {
    # id: (list lines given the world's 8 lines, expected fragments)
    "empty_list": (lambda L: [], ["the list is empty", "relative/path.jpg label"]),
    "malformed_line": (lambda L: [L[0], L[1].split()[0], *L[2:]], [":2: expected 2 fields", "got 1"]),
    "non_integer_label": (lambda L: [L[0], L[1].split()[0] + " two", *L[2:]], [":2: label 'two' is not an integer"]),
    "negative_label": (lambda L: [L[0], L[1], L[2].split()[0] + " -1", *L[3:]], [":3: label -1 is negative"]),
    "label_out_of_range": (lambda L: [*L[:5], L[5].split()[0] + " 9", *L[6:]],
                           [":6: label 9 is out of range for NUM_CLASSES = 4", "OLD_MODEL.NUM_CLASSES to 10"]),
    "duplicate_image": (lambda L: [*L, L[2]], [":9: path img/c1_0.jpg already listed at line 3"]),
    "absolute_path": (lambda L: [L[0], "/etc/hostname 0", *L[1:]], [":2: path '/etc/hostname' is absolute"]),
    "dotdot_path": (lambda L: [L[0], L[1], "img/../../secret.jpg 1", *L[2:]],
                    [":3: path 'img/../../secret.jpg' contains '..'", "leave the image root"]),
}


@pytest.mark.parametrize("case", sorted(LIST_CASES))
def test_bad_training_list_names_file_and_line(w, tmp_path, capsys, case):
    make, fragments = LIST_CASES[case]
    lst = write_list(tmp_path, make(w.lines))
    msg = expect_error(invoke(capsys, "train", train_argv(w, lst, tmp_path / "out")), 2, *fragments)
    assert lst in msg


def test_missing_list_file(w, tmp_path, capsys):
    expect_error(invoke(capsys, "train", train_argv(w, tmp_path / "nope.txt", tmp_path / "out")), 2,
                 f"list file {tmp_path / 'nope.txt'} does not exist", "make_synthetic")


def test_list_that_is_not_text(w, tmp_path, capsys):
    lst = tmp_path / "binary.txt"
    lst.write_bytes(b"img/c0_0.jpg 0\n\xff\xfe\x00 1\n")
    expect_error(invoke(capsys, "train", train_argv(w, lst, tmp_path / "out")), 2,
                 f"{lst}: not a UTF-8 text file")


def test_missing_dataset_root(w, tmp_path, capsys):
    argv = train_argv(w, w.list, tmp_path / "out", **{"TRAIN.ROOT": tmp_path / "no_such_root"})
    expect_error(invoke(capsys, "train", argv), 2, f"image root {tmp_path / 'no_such_root'}", "is not a folder",
                 "set the ROOT key")


def test_batch_larger_than_the_list(w, tmp_path, capsys):
    argv = train_argv(w, w.list, tmp_path / "out", **{"TRAIN.BATCH_SIZE": 16})
    expect_error(invoke(capsys, "train", argv), 2, "8 images cannot fill one batch of TRAIN.BATCH_SIZE 16")


# --------------------------------------------------------------------------------------------
# Broken image files: the list line is named; with several loader workers too
# --------------------------------------------------------------------------------------------

def _break(w, tmp_path, kind):
    """A 4-line list (one batch of 4) whose line 3 is a broken image of `kind`; returns (list, image path)."""
    rel = f"broken/{kind}.jpg"
    path = w.root / rel
    path.parent.mkdir(exist_ok=True)
    good = w.root / w.lines[0].split()[0]
    if kind == "truncated":
        _truncate(good, path, 0.6)
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "not_an_image":
        path.write_text("this is a text file, not a JPEG\n")
    lines = [w.lines[0], w.lines[2], f"{rel} 2" if kind != "missing" else "img/gone.jpg 2", w.lines[6]]
    return write_list(tmp_path, lines), str(w.root / ("img/gone.jpg" if kind == "missing" else rel))


@pytest.mark.parametrize("kind, reason, workers", [
    ("missing", "image file not found", 0),
    ("truncated", "cannot decode the image", 0),
    ("zero_bytes", "image file is empty (0 bytes)", 0),
    ("not_an_image", "cannot decode the image", 0),
    # A loader worker re-raises the error with its traceback inside the message; still one line.
    ("missing", "image file not found", 1),
    ("truncated", "cannot decode the image", 1),
])
def test_broken_image_names_file_and_line(w, tmp_path, capsys, kind, reason, workers):
    lst, img = _break(w, tmp_path, kind)
    argv = train_argv(w, lst, tmp_path / "out", **{"TRAIN.NUM_WORKERS": workers})
    msg = expect_error(invoke(capsys, "train", argv), 2, f"{img} (line 3 of {lst})", reason)
    assert "Traceback" not in msg and "DataLoader worker" not in msg


# --------------------------------------------------------------------------------------------
# Odd but valid images: every PIL mode trains and extracts
# --------------------------------------------------------------------------------------------

def _odd_images(root):
    """Images in modes the reference crashed on; returns (relative path, mode) pairs."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (SIZE, SIZE + 6, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    (root / "odd").mkdir(exist_ok=True)
    made = {
        "odd/grey.jpg": base.convert("L"),
        "odd/cmyk.jpg": base.convert("CMYK"),
        "odd/rgba.png": base.convert("RGBA"),
        "odd/grey16.png": Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
        "odd/palette.png": base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "odd/palette_alpha.gif": base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "odd/grey_alpha.png": base.convert("LA"),
        "odd/bilevel.png": base.convert("1"),
    }
    out = []
    for rel, img in made.items():
        kwargs = {"transparency": 0} if rel.endswith(".gif") else {}
        img.save(root / rel, **kwargs)
        out.append((rel, Image.open(root / rel).mode))
    return out


def test_odd_image_modes_train_and_extract(w, tmp_path, capsys):
    odd = _odd_images(w.root)
    modes = {m for _, m in odd}
    assert {"L", "CMYK", "RGBA", "P", "LA", "1"} <= modes and any(m.startswith("I") for m in modes)
    lst = write_list(tmp_path, [f"{rel} {i % 4}" for i, (rel, _) in enumerate(odd)])
    # Two full iterations of 4 cover all 8 images.
    code, err, _ = invoke(capsys, "train", train_argv(w, lst, tmp_path / "out", **{"TRAIN.MAX_ITERS": 0}))
    assert code == 0, err
    assert os.path.isfile(tmp_path / "out" / ARCH / "t" / "model_final.pth")
    code, err, _ = invoke(capsys, "extract_feat", extract_argv(w, lst, tmp_path / "stats"))
    assert code == 0, err
    feats = np.load(tmp_path / "stats" / "feats.npy")
    assert feats.shape == (8, 256) and np.isfinite(feats).all()
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# SKIP_BAD_IMAGES: broken images are counted and reported, the run completes
# --------------------------------------------------------------------------------------------

def _list_with_two_broken(w, tmp_path):
    """8 lines, 2 of them broken: batch 4 with drop_last draws every line in one epoch."""
    (w.root / "skip").mkdir(exist_ok=True)
    _truncate(w.root / w.lines[1].split()[0], w.root / "skip" / "cut.jpg", 0.5)
    (w.root / "skip" / "empty.jpg").write_bytes(b"")
    return write_list(tmp_path, [*w.lines[:3], "skip/cut.jpg 1", *w.lines[3:5], "skip/empty.jpg 2", w.lines[6]])


def test_skip_bad_images_in_training_and_extraction(w, tmp_path, capsys):
    lst = _list_with_two_broken(w, tmp_path)
    out = tmp_path / "out"
    argv = train_argv(w, lst, out, **{"TRAIN.SKIP_BAD_IMAGES": True, "TRAIN.MAX_ITERS": 0})
    code, err, stdout = invoke(capsys, "train", argv)
    assert code == 0, err
    log = open(out / ARCH / "t" / "log.txt").read()
    assert "epoch 1: skipped 2 unreadable images (TRAIN.SKIP_BAD_IMAGES)" in log
    assert os.path.isfile(out / ARCH / "t" / "model_final.pth")
    code, err, stdout = invoke(capsys, "extract_feat", extract_argv(w, lst, tmp_path / "stats",
                                                                     **{"EVAL.SKIP_BAD_IMAGES": True}))
    assert code == 0, err
    assert "2 unreadable images left out of the statistics (EVAL.SKIP_BAD_IMAGES)" in stdout
    assert np.load(tmp_path / "stats" / "feats.npy").shape == (6, 256)


def test_skip_bad_images_in_the_test_tool(w, tmp_path, capsys):
    rev = tmp_path / "rev"
    _revisited(rev)
    (rev / "tiny" / "jpg" / "db3.jpg").write_bytes(b"")
    (rev / "tiny" / "jpg" / "q1.jpg").unlink()
    argv = eval_argv(w, tmp_path / "eval", **{"EVAL.ROOT": rev, "EVAL.SKIP_BAD_IMAGES": True,
                                              "OLD_MODEL.MODEL_PATH": ""})
    code, err, stdout = invoke(capsys, "test", argv)
    assert code == 0, err
    assert "1 of 2 query images could not be read" in stdout and "1 of 6 gallery images could not be read" in stdout
    assert json.load(open(tmp_path / "eval" / "tiny.json"))["skipped_images"] == 2
    # Without the switch the same set stops at the first broken file (the gallery is embedded first), naming it.
    expect_error(invoke(capsys, "test", eval_argv(w, tmp_path / "eval2", **{"EVAL.ROOT": rev})), 2,
                 str(rev / "tiny" / "jpg" / "db3.jpg"), "image file is empty")


def test_skip_bad_images_survives_a_batch_with_one_good_image(w, tmp_path, capsys):
    (w.root / "skip1").mkdir(exist_ok=True)
    for i in range(3):
        (w.root / "skip1" / f"e{i}.jpg").write_bytes(b"")
    lst = write_list(tmp_path, [w.lines[0], "skip1/e0.jpg 1", "skip1/e1.jpg 2", "skip1/e2.jpg 3"])
    argv = train_argv(w, lst, tmp_path / "out", **{"TRAIN.SKIP_BAD_IMAGES": True})
    # The only batch is skipped without a BatchNorm crash; an epoch without a single optimiser step
    # is then refused rather than saved as a trained model.
    expect_error(invoke(capsys, "train", argv), 2, "epoch 1 took no optimiser step", "4 skipped")
    assert not os.path.exists(tmp_path / "out" / ARCH / "t" / "model_final.pth")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def test_unknown_key_on_the_command_line(w, tmp_path, capsys):
    argv = train_argv(w, w.list, tmp_path / "out") + ["TRAIN.EPOCH", "3"]
    expect_error(invoke(capsys, "train", argv), 2, "command line: unknown config key TRAIN.EPOCH",
                 "closest valid key: TRAIN.EPOCHS")


def test_unknown_key_in_a_yaml_file(w, tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("TRAIN:\n  BATCH_SIZ: 4\n")
    expect_error(invoke(capsys, "train", ["--cfg", cfg, *train_argv(w, w.list, tmp_path / "out")]), 2,
                 f"config {cfg}: unknown config key TRAIN.BATCH_SIZ", "TRAIN.BATCH_SIZE")


@pytest.mark.parametrize("key, value, words", [
    ("TRAIN.EPOCHS", "two", "key TRAIN.EPOCHS expects int (currently "),
    ("TRAIN.EPOCHS", "2.5", "key TRAIN.EPOCHS expects int"),
    ("TRAIN.SKIP_BAD_IMAGES", "maybe", "key TRAIN.SKIP_BAD_IMAGES expects bool"),
    ("TRAIN.LR_SCHEDULER.MILESTONES", "5", "key TRAIN.LR_SCHEDULER.MILESTONES expects list"),
])
def test_wrong_value_type(w, tmp_path, capsys, key, value, words):
    argv = train_argv(w, w.list, tmp_path / "out") + [key, value]
    expect_error(invoke(capsys, "train", argv), 2, "command line:", words)


def test_wrong_value_type_in_yaml(w, tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("TRAIN:\n  OPTIMIZER:\n    BASE_LR: fast\n")
    expect_error(invoke(capsys, "train", ["--cfg", cfg]), 2,
                 f"config {cfg}: key TRAIN.OPTIMIZER.BASE_LR expects float")


def test_missing_base_file(w, tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("_BASE_: 'Base-missing.yml'\nTAG: x\n")
    expect_error(invoke(capsys, "train", ["--cfg", cfg]), 2,
                 f"config {cfg.resolve()}: _BASE_ file {tmp_path / 'Base-missing.yml'} does not exist")


@pytest.mark.parametrize("extra, words", [
    (["TRAIN.TYPE", "adversarial"], "config: TRAIN.TYPE is 'adversarial'; expected one of base, compatible"),
    (["TRAIN.EPOCHS"], "overrides come as KEY VALUE pairs; TRAIN.EPOCHS has no value"),
    (["OLD_MODEL.ARCH", "resnet19"], "OLD_MODEL.ARCH 'resnet19' is not a torchvision classification model"),
    (["OLD_MODEL.PRETRAINED", "True", "OLD_MODEL.PRETRAINED_PATH", "/no/weights.pth"],
     "OLD_MODEL.PRETRAINED_PATH: weight file /no/weights.pth does not exist"),
    pytest.param(["DEVICE", "cuda"], "DEVICE cuda was asked for but no CUDA device is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")),
])
def test_other_config_mistakes(w, tmp_path, capsys, extra, words):
    expect_error(invoke(capsys, "train", train_argv(w, w.list, tmp_path / "out") + extra), 2, words)


def test_missing_config_file(capsys):
    expect_error(invoke(capsys, "train", ["--cfg", "no/such/config.yml"]), 2,
                 "--cfg: no/such/config.yml does not exist")


def test_invalid_yaml(tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("TRAIN:\n  EPOCHS: [1, 2\n")
    expect_error(invoke(capsys, "train", ["--cfg", cfg]), 2, f"config {cfg}: not valid yaml")


# --------------------------------------------------------------------------------------------
# Statistics and checkpoints (train_new, extract_feat, test)
# --------------------------------------------------------------------------------------------

def test_missing_statistics_file(w, tmp_path, capsys):
    argv = train_new_argv(w, tmp_path / "out", **{"COMP_LOSS.RADIUS_FILE": tmp_path / "none" / "radius.json"})
    expect_error(invoke(capsys, "train", argv), 2,
                 f"COMP_LOSS.RADIUS_FILE = '{tmp_path / 'none' / 'radius.json'}': old-class statistics file not found",
                 "bash scripts/extract_feat.sh")


@pytest.mark.parametrize("case, words", [
    ("more_classes", "class 4 is outside 0..3 (2 of its 6 ids are), expected ids below OLD_MODEL.NUM_CLASSES = 4"),
    ("other_emb_dim", "class 0 has a 128-d centre, expected MODEL.EMB_DIM = 256"),
    ("not_json", "not valid JSON (line 1"),
])
def test_statistics_that_do_not_fit(w, tmp_path, capsys, case, words):
    path = tmp_path / "radius.json"
    if case == "more_classes":
        _stats(path, range(6))
    elif case == "other_emb_dim":
        _stats(path, range(4), dim=128)
    else:
        path.write_text('{"0": {"center": [0.1, ')
    argv = train_new_argv(w, tmp_path / "out", **{"COMP_LOSS.RADIUS_FILE": path})
    expect_error(invoke(capsys, "train", argv), 2, f"{path}: {words}")


def test_statistics_for_fewer_classes_are_accepted(w, tmp_path, capsys):
    """Classes absent from radius.json are simply invalid for the boundary loss (documented)."""
    argv = train_new_argv(w, tmp_path / "out", **{"COMP_LOSS.RADIUS_FILE": _stats(tmp_path / "r.json", [0, 2])})
    code, err, _ = invoke(capsys, "train", argv)
    assert code == 0, err


@pytest.mark.parametrize("case, words", [
    ("other_arch", f"has arch='{ARCH}' but the config says OLD_MODEL.ARCH='resnet34'"),
    ("other_classes", "has num_classes=4 but the config says OLD_MODEL.NUM_CLASSES=5"),
    ("truncated", "cannot read checkpoint"),
    ("not_bct", "is neither a bct checkpoint (no 'model'/'meta' entries) nor one of the reference"),
    ("missing", "does not exist"),
    ("empty_path", "OLD_MODEL.MODEL_PATH is empty: give the old model's checkpoint"),
])
def test_old_checkpoint_that_does_not_fit(w, tmp_path, capsys, case, words):
    extra = {}
    path = w.old
    if case == "other_arch":
        extra = {"OLD_MODEL.ARCH": "resnet34"}
    elif case == "other_classes":
        extra = {"OLD_MODEL.NUM_CLASSES": 5}
        _stats(tmp_path / "r5.json", range(5))
        extra["COMP_LOSS.RADIUS_FILE"] = tmp_path / "r5.json"
    elif case == "truncated":
        path = _truncate(w.old, tmp_path / "cut.pth", 0.7)
    elif case == "not_bct":
        path = str(tmp_path / "plain.pth")
        torch.save(torch.load(w.old, weights_only=True)["model"], path)
    elif case == "missing":
        path = str(tmp_path / "gone.pth")
    else:
        path = ""
    argv = train_new_argv(w, tmp_path / "out", **{"OLD_MODEL.MODEL_PATH": path, **extra})
    msg = expect_error(invoke(capsys, "train", argv), 2, words)
    if case != "empty_path":
        assert path in msg


def test_extract_feat_with_a_checkpoint_of_another_class_count(w, tmp_path, capsys):
    argv = extract_argv(w, w.list, tmp_path / "stats", **{"OLD_MODEL.NUM_CLASSES": 7})
    expect_error(invoke(capsys, "extract_feat", argv), 2, f"checkpoint {w.old} has num_classes=4",
                 "OLD_MODEL.NUM_CLASSES=7")


@pytest.mark.parametrize("case, words", [
    ("new_other_arch", "NEW_MODEL.ARCH='resnet50'"),
    ("old_other_arch", "OLD_MODEL.ARCH='resnet34'"),
    ("new_truncated", "NEW_MODEL.MODEL_PATH: cannot read checkpoint"),
    ("new_missing_path", "NEW_MODEL.MODEL_PATH is empty"),
])
def test_test_tool_refuses_checkpoints_that_do_not_fit(w, tmp_path, capsys, case, words):
    extra = {"new_other_arch": {"NEW_MODEL.ARCH": "resnet50"},
             "old_other_arch": {"OLD_MODEL.ARCH": "resnet34"},
             "new_truncated": {"NEW_MODEL.MODEL_PATH": _truncate(w.new, tmp_path / "cut.pth", 0.3)},
             "new_missing_path": {"NEW_MODEL.MODEL_PATH": ""}}[case]
    expect_error(invoke(capsys, "test", eval_argv(w, tmp_path / "eval", **extra)), 2, words)


def test_test_tool_ignores_the_classifier_size(w, tmp_path, capsys):
    """Retrieval uses embeddings only: a NUM_CLASSES that differs from the checkpoint is not an error."""
    argv = eval_argv(w, tmp_path / "eval", **{"NEW_MODEL.NUM_CLASSES": 77, "OLD_MODEL.NUM_CLASSES": 3,
                                              "EVAL.OLD_SELF": False})
    code, err, stdout = invoke(capsys, "test", argv)
    assert code == 0, err
    assert "cross-test M(new, old)" in stdout


def test_resume_from_a_truncated_checkpoint(w, tmp_path, capsys):
    out = tmp_path / "out"
    ckpt_dir = out / ARCH / "t"
    ckpt_dir.mkdir(parents=True)
    _truncate(w.old, ckpt_dir / "ckpt_epoch_1.pth", 0.5)
    (ckpt_dir / "last_checkpoint").write_text("ckpt_epoch_1.pth\n")
    expect_error(invoke(capsys, "train", ["--resume", *train_argv(w, w.list, out)]), 2,
                 f"--resume: cannot read checkpoint {ckpt_dir / 'ckpt_epoch_1.pth'}", "truncated")


# --------------------------------------------------------------------------------------------
# Evaluation data (test tool)
# --------------------------------------------------------------------------------------------

class _MakesAFolder:
    """Unpickling this would call os.mkdir: a stand-in for a pickle that runs code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_gnd_pickle_that_runs_code_is_refused(w, tmp_path, capsys):
    rev = tmp_path / "rev"
    _revisited(rev)
    marker = tmp_path / "pwned"
    with open(rev / "tiny" / "gnd_tiny.pkl", "wb") as f:
        pickle.dump({"imlist": ["db0"], "qimlist": ["q0"], "gnd": [_MakesAFolder(str(marker))]}, f)
    expect_error(invoke(capsys, "test", eval_argv(w, tmp_path / "eval", **{"EVAL.ROOT": rev})), 2,
                 "gnd_tiny.pkl: refused to unpickle posix.mkdir", "numpy arrays")
    assert not marker.exists()


@pytest.mark.parametrize("case, words", [
    ("missing_root", "set tiny: {root} does not exist"),
    ("missing_gnd", "set tiny: no benchmark set in {root}: expected {root}/set.json (your own retrieval set"),
    ("gnd_index_out_of_range", "gnd[1]['easy'] holds indices outside 0..5"),
    ("gldv2_lists_missing", "{root}/gldv2_gallery_list.txt does not exist; run `python -m bct.tools.prepare_gldv2"),
])
def test_bad_evaluation_sets(w, tmp_path, capsys, case, words):
    root = tmp_path / "rev"
    extra = {"EVAL.ROOT": root}
    if case != "missing_root":
        _revisited(root)
    if case == "missing_gnd":
        (root / "tiny" / "gnd_tiny.pkl").unlink()
    elif case == "gnd_index_out_of_range":
        raw = pickle.load(open(root / "tiny" / "gnd_tiny.pkl", "rb"))
        raw["gnd"][1]["easy"] = [0, 6]
        pickle.dump(raw, open(root / "tiny" / "gnd_tiny.pkl", "wb"))
    elif case == "gldv2_lists_missing":
        extra["EVAL.DATASET"] = "gldv2"
    expect_error(invoke(capsys, "test", eval_argv(w, tmp_path / "eval", **extra)), 2, words.format(root=root))


# --------------------------------------------------------------------------------------------
# A run that cannot go on: non-finite loss (exit 1)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lr", ["1e30"])  # an infinite rate is refused by the config check already
def test_non_finite_loss_stops_with_one_line(w, tmp_path, capsys, lr):
    argv = train_argv(w, w.list, tmp_path / "out", **{"TRAIN.OPTIMIZER.BASE_LR": lr})
    # Nothing was saved before the loss diverged: no checkpoint to resume from is advised.
    expect_error(invoke(capsys, "train", argv), 1, "non-finite loss at epoch 1 iteration",
                 "lower TRAIN.OPTIMIZER.BASE_LR", "nothing was saved yet")


# --------------------------------------------------------------------------------------------
# The command line itself: real `python -m` runs, no traceback, one line, the documented exit codes
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def cli(w, tmp_path_factory):
    """Two real command-line runs, started with the module so that they overlap the in-process
    tests: a missing image met by two loader workers (exit 2) and a diverging run (exit 1); the
    test tool's exit 2 from the command line is covered in test_scripts_end_to_end.py. Yields name -> (exit code, stderr, expected
    code, expected words), waiting for a run when it is first asked for."""
    tmp = tmp_path_factory.mktemp("cli")
    lst, img = _break(w, tmp, "missing")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    jobs = {
        "image": (["-m", "bct.tools.train", *train_argv(w, lst, tmp / "a", **{"TRAIN.NUM_WORKERS": 2})],
                  2, f"{img} (line 3 of {lst}): image file not found"),
        "nan": (["-m", "bct.tools.train", *train_argv(w, w.list, tmp / "c", **{"TRAIN.OPTIMIZER.BASE_LR": "1e30"})],
                1, "non-finite loss at epoch 1 iteration 2"),
    }
    procs = {k: subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for k, (argv, _, _) in jobs.items()}
    results = {}

    def result(name):
        if name not in results:
            _, err = procs[name].communicate(timeout=240)
            results[name] = (procs[name].returncode, err, *jobs[name][1:])
        return results[name]
    yield result
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_command_line_bad_input_is_one_line_exit_2(cli):
    code, err, want, words = cli("image")
    expect_error((code, err, ""), want, words)
    assert "Traceback" not in err


@pytest.mark.slow
def test_command_line_non_finite_loss_is_one_line_exit_1(cli):
    code, err, want, words = cli("nan")
    expect_error((code, err, ""), want, words)
