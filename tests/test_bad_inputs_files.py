"""Bad input files and values: config values out of range, text files in the wild, steps that would
produce nothing, and statistics / result files that do not hold what they should.

Every case runs a real entry point (through bct.tools.common.run, as `python -m` does) next to the
outputs of an earlier, successful run, and asserts three things: the exit code, one line
`error: ...` that names the file / line / key, and that no earlier output changed (logs aside:
log.txt and TensorBoard events are appended to). Inputs that are odd but valid (a byte-order mark) must simply work.
docs/troubleshooting.md lists the same messages.
"""
import csv
import json
import os
import pickle
import shutil
import signal

import numpy as np
import pytest

from helpers import (copy_of, eval_argv, expect_error, extract_argv, invoke, make_image_list,  # noqa: F401
                     refused, revisited_set as _revisited, snapshot, stats_file as _stats, train_argv, train_new_argv,
                     write_list)

pytestmark = pytest.mark.usefixtures("one_thread")

# Earlier outputs (the `earlier` fixture) and the check that a refused run left them alone
# (snapshot, refused, copy_of) are in conftest.py and helpers.py.

# --------------------------------------------------------------------------------------------
# 1. Config values: range and sense, checked when the config is loaded
# --------------------------------------------------------------------------------------------

CLI_VALUE_CASES = {
    "print_freq_zero": (["PRINT_FREQ", "0"], "PRINT_FREQ is 0; expected an integer >= 1"),
    "save_freq_zero": (["TRAIN.SAVE_FREQ", "0"], "TRAIN.SAVE_FREQ is 0; expected an integer >= 1"),
    "negative_lr": (["TRAIN.OPTIMIZER.BASE_LR", "-0.1"], "TRAIN.OPTIMIZER.BASE_LR is -0.1; expected a number > 0"),
    "infinite_lr": (["TRAIN.OPTIMIZER.BASE_LR", "inf"], "TRAIN.OPTIMIZER.BASE_LR is inf; expected a number > 0"),
    "nan_weight_decay": (["TRAIN.OPTIMIZER.WEIGHT_DECAY", "nan"], "TRAIN.OPTIMIZER.WEIGHT_DECAY is nan"),
    "negative_workers": (["TRAIN.NUM_WORKERS", "-1"], "TRAIN.NUM_WORKERS is -1; expected an integer >= 0"),
    "label_smoothing_2": (["LOSS.LABEL_SMOOTHING", "2"], "LOSS.LABEL_SMOOTHING is 2.0; expected a number in [0.0, 1.0)"),
    "batch_of_one": (["TRAIN.BATCH_SIZE", "1"], "TRAIN.BATCH_SIZE is 1; expected an integer >= 2"),
    "non_numeric_milestones": (["TRAIN.LR_SCHEDULER.MILESTONES", "[a, b]"],
                               "TRAIN.LR_SCHEDULER.MILESTONES is ['a', 'b']; expected a list, each item an integer >= 1"),
    "decreasing_milestones": (["TRAIN.LR_SCHEDULER.MILESTONES", "[10, 5]"],
                              "TRAIN.LR_SCHEDULER.MILESTONES is [10, 5]; expected a list, each item an integer >= 1, "
                              "strictly increasing"),
    "backfill_ratio_above_one": (["EVAL.BACKFILL_RATIOS", "[0.5, 1.5]"],
                                 "EVAL.BACKFILL_RATIOS is [0.5, 1.5]; expected a list, each item a number in [0.0, 1.0]"),
    "momentum_one": (["TRAIN.OPTIMIZER.MOMENTUM", "1.0"], "TRAIN.OPTIMIZER.MOMENTUM is 1.0; expected a number in [0.0, 1.0)"),
}


@pytest.mark.parametrize("case", sorted(CLI_VALUE_CASES))
def test_config_value_out_of_range_on_the_command_line(w, earlier, tmp_path, capsys, case):
    extra, words = CLI_VALUE_CASES[case]
    out, before = copy_of(earlier, "train", tmp_path)
    result = invoke(capsys, "train", train_argv(w, w.list, out) + extra)
    refused(result, 2, out, before, "config: " + words, "(set on the command line)")


def test_topk_zero_in_the_test_tool(w, earlier, tmp_path, capsys):
    out, before = copy_of(earlier, "eval", tmp_path)
    refused(invoke(capsys, "test", eval_argv(w, out, **{"EVAL.TOPK": 0})), 2, out, before,
            "config: EVAL.TOPK is 0; expected an integer >= 1")


def test_bad_value_in_a_yaml_file_names_file_and_line(w, earlier, tmp_path, capsys):
    cfg = tmp_path / "exp.yml"
    cfg.write_text("TAG: t\nTRAIN:\n  EPOCHS: 2\n  SAVE_FREQ: 0\n")
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", ["--cfg", cfg, *train_argv(w, w.list, out)]), 2, out, before,
            f"config: TRAIN.SAVE_FREQ is 0; expected an integer >= 1 (set in config {cfg}, line 4)")


def test_bad_value_inherited_through_base_names_the_base_file(w, earlier, tmp_path, capsys):
    (tmp_path / "Base.yml").write_text("TRAIN:\n  LR_SCHEDULER:\n    DECAY_RATE: 0.0\n")
    cfg = tmp_path / "exp.yml"
    cfg.write_text("_BASE_: Base.yml\nTAG: t\n")
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", ["--cfg", cfg, *train_argv(w, w.list, out)]), 2, out, before,
            "TRAIN.LR_SCHEDULER.DECAY_RATE is 0.0; expected a number in (0.0, 1.0]",
            f"set in config {tmp_path / 'Base.yml'}, line 3")


@pytest.mark.parametrize("text, words", [
    ("_BASE_: 5\n", "_BASE_ must be a file name or a list of file names, got int 5"),
    ("TRAIN:\n  EPOCHS: 2\nTAG: x\nTRAIN:\n  BATCH_SIZE: 4\n",
     "key TRAIN appears twice in the same block (lines 1 and 4); yaml would keep only the second"),
    ("TRAIN:\n  EPOCHS: 2\n  EPOCHS: 3\n", "key EPOCHS appears twice in the same block (lines 2 and 3)"),
    ("TRAIN:\n\tEPOCHS: 2\n", "not valid yaml at line 2, column 1 (found character '\\t'"),
], ids=["base_not_a_name", "two_train_blocks", "key_twice", "tab_indent"])
def test_yaml_structure_mistakes(w, earlier, tmp_path, capsys, text, words):
    cfg = tmp_path / "exp.yml"
    cfg.write_text(text)
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", ["--cfg", cfg, *train_argv(w, w.list, out)]), 2, out, before,
            f"config {cfg}: {words}")


def test_every_default_key_declares_what_it_may_be():
    from bct.config.defaults import get_cfg_defaults
    from bct.config.loader import _all_keys
    from bct.config.defaults import RULES
    from yacs.config import CfgNode as CN
    cfg = get_cfg_defaults()
    leaves = {k for k in _all_keys(cfg) if not isinstance(_get(cfg, k), CN)}
    assert leaves - set(RULES) == set(), "keys without a rule: add RULES[key] = ... after their default"
    assert set(RULES) - leaves == set(), "rules for keys that do not exist"
    for key, rule in RULES.items():
        assert rule.ok(_get(cfg, key)), f"the default of {key} breaks its own rule ({rule.expected})"


def test_compatibility_loss_choices_are_the_registered_losses():
    from bct.config import load_cfg
    from bct.losses import COMP_LOSS_REGISTRY
    from bct.losses.registry import check_terms
    from bct.utils.errors import BadInputError
    for name in COMP_LOSS_REGISTRY:
        check_terms(load_cfg("", ["COMP_LOSS.TYPE", name]))
    with pytest.raises(BadInputError, match="not a registered compatibility loss"):
        check_terms(load_cfg("", ["COMP_LOSS.TYPE", "unknown_loss"]))


def _get(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


# --------------------------------------------------------------------------------------------
# 5. Text files in the wild
# --------------------------------------------------------------------------------------------

def test_yaml_that_is_not_utf8(w, earlier, tmp_path, capsys):
    cfg = tmp_path / "exp.yml"
    cfg.write_bytes(b"TAG: t\n# caf\xe9 au lait\nTRAIN:\n  EPOCHS: 1\n")
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", ["--cfg", cfg, *train_argv(w, w.list, out)]), 2, out, before,
            f"config {cfg}: not a UTF-8 text file (byte 0xe9 at line 2, column 6", "save it as UTF-8")


def test_yaml_with_a_byte_order_mark_loads(tmp_path):
    from bct.config import load_cfg
    cfg = tmp_path / "exp.yml"
    cfg.write_bytes("\ufeffTRAIN:\n  EPOCHS: 3\n".encode("utf-8"))
    assert load_cfg(str(cfg)).TRAIN.EPOCHS == 3


def test_list_that_is_latin1_names_the_line(w, earlier, tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_bytes(("\n".join(w.lines[:2]) + "\nimg/caf\xe9.jpg 1\n").encode("latin-1"))
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", train_argv(w, lst, out)), 2, out, before,
            f"{lst}: not a UTF-8 text file (byte 0xe9 at line 3, column 8")


def test_byte_order_mark_in_an_image_list_is_skipped(w, earlier, tmp_path, capsys):
    lst = tmp_path / "bom.txt"
    lst.write_bytes(("\ufeff" + "\n".join(w.lines) + "\n").encode("utf-8"))
    code, err, _ = invoke(capsys, "extract_feat", extract_argv(w, lst, tmp_path / "stats"))
    assert code == 0, err
    assert np.load(tmp_path / "stats" / "feats.npy").shape == (8, 256)
    from bct.data.lists import read_image_list
    paths, _ = read_image_list(str(lst), str(w.root))
    assert paths[0] == w.lines[0].split()[0]


def test_same_image_written_two_ways_is_a_duplicate(w, earlier, tmp_path, capsys):
    lst = write_list(tmp_path, [*w.lines[:4], "./" + w.lines[2].split()[0] + " 1", *w.lines[4:]])
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", train_argv(w, lst, out)), 2, out, before,
            f"{lst}:5: path './img/c1_0.jpg' (that is img/c1_0.jpg) already listed at line 3")


def test_double_slash_is_the_same_image(w, earlier, tmp_path, capsys):
    lst = write_list(tmp_path, [*w.lines, w.lines[0].split()[0].replace("/", "//") + " 0"])
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", train_argv(w, lst, out)), 2, out, before,
            f"{lst}:9: path 'img//c0_0.jpg' (that is img/c0_0.jpg) already listed at line 1")


def test_named_pipe_in_a_list_is_refused_not_waited_on(w, earlier, tmp_path, capsys):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    root = tmp_path / "root"
    shutil.copytree(w.root / "img", root / "img")
    os.symlink(pipe, root / "img" / "pipe.jpg")
    lst = write_list(tmp_path, [*w.lines[:2], "img/pipe.jpg 1", w.lines[3]])
    out, before = tmp_path / "fresh", {}  # the pipe is met while training: in a folder of its own
    previous = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the loader waited on the named pipe"))
    signal.alarm(60)
    try:
        result = invoke(capsys, "train", train_argv(w, lst, out, **{"TRAIN.ROOT": root}))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    refused(result, 2, out, before, f"{root / 'img' / 'pipe.jpg'} (line 3 of {lst}): is a named pipe, not a regular image file")


# --------------------------------------------------------------------------------------------
# 2. A step that produced nothing does not replace what was good
# --------------------------------------------------------------------------------------------

def _all_unreadable(w, tmp_path, n=4):
    (tmp_path / "bad").mkdir()
    for i in range(n):
        (tmp_path / "bad" / f"e{i}.jpg").write_bytes(b"")
    return write_list(tmp_path, [f"bad/e{i}.jpg {i % 4}" for i in range(n)])


def test_extract_feat_reading_no_image_keeps_the_earlier_statistics(w, earlier, tmp_path, capsys):
    lst = _all_unreadable(w, tmp_path)
    out, before = copy_of(earlier, "stats", tmp_path)
    argv = extract_argv(w, lst, out, **{"EVAL.SKIP_BAD_IMAGES": True, "TRAIN.ROOT": tmp_path})
    refused(invoke(capsys, "extract_feat", argv), 2, out, before,
            f"{lst}: none of its 4 images could be read (EVAL.SKIP_BAD_IMAGES); nothing written")


def test_training_with_no_readable_image_saves_nothing(w, earlier, tmp_path, capsys):
    lst = _all_unreadable(w, tmp_path)
    out, before = tmp_path / "fresh", {}  # met while training: in a folder of its own, which stays empty
    argv = train_argv(w, lst, out, **{"TRAIN.SKIP_BAD_IMAGES": True, "TRAIN.ROOT": tmp_path})
    refused(invoke(capsys, "train", argv), 2, out, before, f"{lst}: epoch 1 took no optimiser step",
            "nothing was saved")


def test_test_tool_with_no_readable_gallery_image_keeps_the_earlier_result(w, earlier, tmp_path, capsys):
    rev = tmp_path / "rev"
    _revisited(rev)
    for i in range(6):
        (rev / "tiny" / "jpg" / f"db{i}.jpg").write_bytes(b"")
    out, before = copy_of(earlier, "eval", tmp_path)
    argv = eval_argv(w, out, **{"EVAL.ROOT": rev, "EVAL.SKIP_BAD_IMAGES": True, "OLD_MODEL.MODEL_PATH": ""})
    refused(invoke(capsys, "test", argv), 2, out, before,
            "tiny database: none of the 6 gallery images could be read (EVAL.SKIP_BAD_IMAGES)", "no result written")


def test_make_synthetic_refuses_a_file_as_out(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    before = snapshot(tmp_path)
    refused(invoke(capsys, "make_synthetic", ["--out", target, "--size", "tiny", "--workers", "1"]), 2, tmp_path,
            before, f"{target}: is a file, not a folder")


def _gld(root):
    """A small GLDv2 root (the fixture of test_prepare_gldv2) with its lists prepared once."""
    from helpers import GLD_SIZES as SIZES, gld_ids as _ids, write_csv as _write_csv
    import random
    rng = random.Random(0)
    train = {lm: _ids(rng, n) for lm, n in SIZES.items()}
    _write_csv(root / "train_clean.csv", ["landmark_id", "images"], [[lm, " ".join(i)] for lm, i in train.items()])
    index = _ids(rng, 8)
    _write_csv(root / "index.csv", ["id"], [[i] for i in index])
    q = _ids(rng, 4)
    _write_csv(root / "retrieval_solution_v2.1.csv", ["id", "images", "Usage"],
               [[q[0], index[1], "Public"], [q[1], f"{index[2]} {index[3]}", "Private"], [q[2], "None", "Ignored"],
                [q[3], index[5], "Private"]])
    from bct.data.prepare import prepare_gldv2
    prepare_gldv2(str(root))
    return index, q


def _rewrite_csv(path, edit):
    rows = list(csv.reader(open(path, newline="")))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


@pytest.mark.parametrize("case, words", [
    ("empty_index", "index.csv: no data rows under the header; nothing written"),
    ("only_ignored_queries", "retrieval_solution_v2.1.csv: no Public query"),
    ("unknown_gallery_image_in_last_row", "retrieval_solution_v2.1.csv:5: image ffffffffffffffff is not in index.csv"),
    ("ratio_without_old_class", "--ratio 0.05 of 14 classes gives no old class"),
    ("latin1_byte_in_train_csv", "train_clean.csv: not a UTF-8 text file (byte 0xe9 at line 3"),
])
def test_prepare_gldv2_failing_late_keeps_every_earlier_list(tmp_path, capsys, case, words):
    root = tmp_path / "gld"
    root.mkdir()
    _gld(root)
    before = snapshot(root)
    argv = ["--root", root]
    if case == "empty_index":
        _rewrite_csv(root / "index.csv", lambda rows: rows[:1])
    elif case == "only_ignored_queries":
        _rewrite_csv(root / "retrieval_solution_v2.1.csv",
                     lambda rows: rows[:1] + [[r[0], "None", "Ignored"] for r in rows[1:]])
    elif case == "unknown_gallery_image_in_last_row":
        _rewrite_csv(root / "retrieval_solution_v2.1.csv", lambda rows: rows[:-1] + [[rows[-1][0], "f" * 16, "Private"]])
    elif case == "ratio_without_old_class":
        argv += ["--ratio", "0.05"]
    else:
        data = open(root / "train_clean.csv", "rb").read().split(b"\n")
        data[2] = data[2].replace(b",", b",\xe9", 1)
        open(root / "train_clean.csv", "wb").write(b"\n".join(data))
    before = {k: v for k, v in before.items() if not k.endswith(".csv")}
    line = expect_error(invoke(capsys, "prepare_gldv2", argv), 2, words)
    assert {k: v for k, v in snapshot(root).items() if not k.endswith(".csv")} == before, line
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]


def test_prepare_gldv2_skips_a_bom_in_the_label_file(tmp_path, capsys):
    root = tmp_path / "gld"
    root.mkdir()
    make_image_list(str(tmp_path), n_classes=4, per_class=3, name="labels.txt")
    text = open(tmp_path / "labels.txt").read()
    (tmp_path / "labels.txt").write_bytes(("\ufeff" + text.replace("img/", "train/")).encode("utf-8"))
    code, err, _ = invoke(capsys, "prepare_gldv2", ["--root", root, "--label-file", tmp_path / "labels.txt",
                                                    "--ratio", "0.5"])
    assert code == 0, err
    for name in os.listdir(root):
        if name.endswith(".txt"):
            assert not open(root / name, "rb").read().startswith(b"\xef\xbb\xbf"), name


# --------------------------------------------------------------------------------------------
# 6. Statistics and results are validated when read
# --------------------------------------------------------------------------------------------

def _stats_with(path, edit):
    _stats(path, range(4))
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity for non-finite floats
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["2"]["radius"].__setitem__(2, float("inf")), "class 2: 'radius' holds Infinity (not finite)"),
    (lambda d: d["1"]["center"].__setitem__(5, float("nan")), "class 1: 'center' holds NaN (not finite)"),
    (lambda d: d["3"]["radius"].__setitem__(0, "0.4"), "class 3: 'radius' holds \"0.4\" (not a number)"),
    (lambda d: d["0"]["radius"].__setitem__(1, None), "class 0: 'radius' holds null (not a number)"),
    (lambda d: d["0"]["radius"].__setitem__(0, -0.5), "class 0: 'radius' holds -0.5, a negative distance"),
], ids=["infinite_radius", "nan_centre", "string_radius", "null_radius", "negative_radius"])
def test_statistics_with_values_that_are_not_finite_numbers(w, earlier, tmp_path, capsys, edit, words):
    path = _stats_with(tmp_path / "radius.json", edit)
    out, before = copy_of(earlier, "train", tmp_path)
    argv = train_new_argv(w, out, **{"COMP_LOSS.RADIUS_FILE": path, "TAG": "t"})
    refused(invoke(capsys, "train", argv), 2, out, before, f"{path}: {words}")


def test_statistics_that_are_not_utf8(w, earlier, tmp_path, capsys):
    path = tmp_path / "radius.json"
    path.write_bytes(b'{"0": {"center": [0.1], "radius": [0.2]}, "\xff": 1}')
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", train_new_argv(w, out, **{"COMP_LOSS.RADIUS_FILE": path})), 2, out, before,
            f"{path}: not a UTF-8 text file (byte 0xff at line 1")


@pytest.mark.parametrize("case, words", [
    ("truncated", "not valid JSON (line "),
    ("null_headline", "headline.self is null, expected a number"),
    ("string_headline", "headline.cross is \"n/a\", expected a number"),
    ("no_self", "expected \"dataset\" (a name) and \"headline\" with at least \"self\""),
])
def test_summarize_refuses_a_broken_result(earlier, tmp_path, capsys, case, words):
    folder, _ = copy_of(earlier, "eval", tmp_path)
    path = folder / "tiny.json"
    data = json.loads(path.read_text())
    if case == "truncated":
        path.write_text(path.read_text()[:40])
    else:
        data["headline"] = {"null_headline": {"self": None}, "string_headline": {"self": 50.0, "cross": "n/a"},
                            "no_self": {"cross": 1.0}}[case]
        path.write_text(json.dumps(data))
    before = snapshot(folder)
    line = refused(invoke(capsys, "summarize", [folder, "--out", folder / "summary.md"]), 2, folder, before,
                   f"{path}: {words}")
    assert "run bct.tools.test again" in line


@pytest.mark.parametrize("lists, words", [
    ({"easy": [], "hard": []}, "the 'easy' and 'hard' lists of all 2 queries are empty"),
], ids=["no_positive_at_all"])
def test_ground_truth_without_positives_is_refused(w, earlier, tmp_path, capsys, lists, words):
    rev = tmp_path / "rev"
    _revisited(rev)
    gnd_file = rev / "tiny" / "gnd_tiny.pkl"
    raw = pickle.load(open(gnd_file, "rb"))
    for g in raw["gnd"]:
        g.update(lists)
    pickle.dump(raw, open(gnd_file, "wb"))
    out, before = copy_of(earlier, "eval", tmp_path)
    refused(invoke(capsys, "test", eval_argv(w, out, **{"EVAL.ROOT": rev})), 2, out, before,
            f"{gnd_file}: no query has a positive image under any protocol ({words})", "mAP", "undefined")


def test_summarize_refuses_results_that_mix(earlier, tmp_path, capsys):
    """Two results for one set (a kept copy), results of two models (a test run interrupted between two
    sets), and a headline outside [0, 100] (a hand edit): one line each, naming the files."""
    folder, _ = copy_of(earlier, "eval", tmp_path)
    result = json.loads((folder / "tiny.json").read_text())
    shutil.copy(folder / "tiny.json", folder / "tiny_before_fix.json")
    refused(invoke(capsys, "summarize", [folder]), 2, folder, snapshot(folder),
            f"{folder} holds two results for tiny: tiny.json and tiny_before_fix.json")
    os.remove(folder / "tiny_before_fix.json")
    other = dict(result, dataset="other", title="other", models={"new": {"path": "b.pth", "sha256": "b" * 64}})
    (folder / "other.json").write_text(json.dumps(other))
    line = refused(invoke(capsys, "summarize", [folder]), 2, folder, snapshot(folder),
                   "are results of different new models", "--mixed")
    assert "other.json" in line and "tiny.json" in line
    code, err, out = invoke(capsys, "summarize", [folder, "--mixed"])
    assert code == 0 and "| other |" in out, err
    os.remove(folder / "other.json")
    (folder / "tiny.json").write_text(json.dumps(dict(result, headline=dict(result["headline"], self=5210.0))))
    refused(invoke(capsys, "summarize", [folder]), 2, folder, snapshot(folder),
            f"{folder / 'tiny.json'}: headline.self is 5210, outside [0, 100] (mAP x100)")


def test_the_test_tool_never_writes_over_a_result_of_other_models(w, earlier, tmp_path, capsys):
    folder, before = copy_of(earlier, "eval", tmp_path)
    other = tmp_path / "other_new.pth"
    shutil.copy(w.new, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # another file: another model
    argv = eval_argv(w, folder, **{"NEW_MODEL.MODEL_PATH": other, "OLD_MODEL.MODEL_PATH": ""})
    refused(invoke(capsys, "test", argv), 2, folder, before, f"{folder / 'tiny.json'} holds the result of another new model")
