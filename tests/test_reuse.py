"""Reuse that cannot lie (bct.pipeline.records): a finished step is reused only when its record (its
settings and the digests of its input files, never file times) equals the step asked for; a step of
another key, or without a record, is refused with one line naming the first difference, and the files
in its folder stay as they were. Training runs, old-class statistics and the shared pretrained start,
on a tiny list."""
import os
import shutil

import pytest

from bct.config import load_cfg
from bct.pipeline.pretrained import pretrained_start
from bct.pipeline.records import training_record
from bct.pipeline.stats import class_stats
from bct.pipeline.train import train_run
from bct.pipeline.records import differences
from bct.tools import train as train_tool
from bct.tools.common import run
from bct.utils.errors import BadInputError

from helpers import make_image_list, train_opts

ARCH = "mobilenet_v3_small"  # the quickest backbone to train on the CPU


def _cfg(root, lst, out, **extra):
    return load_cfg("", train_opts(root, lst, out, 3, **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1,
                                                          "OLD_MODEL.ARCH": ARCH, **extra}))


def _files(folder):
    return {name: os.path.getmtime(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if name not in ("log.txt", "train.lock")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (the 'demo's' old model) and its list."""
    root = tmp_path_factory.mktemp("reuse")
    lst = make_image_list(str(root), n_classes=3, per_class=4)
    cfg = _cfg(root, lst, root / "out")
    result = train_run(cfg)
    return root, lst, cfg, result


def test_the_same_settings_and_inputs_are_reused(trained):
    root, lst, cfg, first = trained
    before = _files(first.folder)
    again = train_run(_cfg(root, lst, root / "out"), reuse=True)
    assert again.reused and again.path == first.path and _files(first.folder) == before


def test_other_settings_in_the_folder_are_refused_and_left_alone(trained, tmp_path, capsys):
    """A run of other settings in the folder (the demo's 6-epoch model vs a 20-step one trained there by
    another command) is neither reused nor written over: one line names the difference."""
    root, lst, cfg, first = trained
    before = _files(first.folder)
    with pytest.raises(BadInputError, match=r"holds a trained model made with other settings or inputs: "
                                            r"TRAIN.MAX_ITERS: was 1, now 2;"):
        train_run(_cfg(root, lst, root / "out", **{"TRAIN.MAX_ITERS": 2}), reuse=True)
    # The same through the tool, as scripts/demo.sh runs it: exit 2, one line, nothing written.
    argv = train_opts(root, lst, root / "out", 3, **{"TRAIN.EPOCHS": 2, "TRAIN.MAX_ITERS": 1, "OLD_MODEL.ARCH": ARCH})
    with pytest.raises(SystemExit) as code:
        run(train_tool.main, ["--reuse", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and "TRAIN.EPOCHS: was 1, now 2" in err[0]
    assert _files(first.folder) == before


def _copy(trained, tmp_path):
    """The finished run copied to another OUTPUT, with its own copy of the list (same content)."""
    root, lst, cfg, first = trained
    lst2 = str(tmp_path / "list.txt")
    shutil.copy(lst, lst2)
    shutil.copytree(first.folder, tmp_path / "out" / ARCH / "t")
    return root, lst2, tmp_path / "out"


def test_an_input_file_of_other_content_is_refused(trained, tmp_path):
    """Where the list lies does not matter, its content does: a rewritten list is another input."""
    root, lst2, out = _copy(trained, tmp_path)
    assert train_run(_cfg(root, lst2, out), reuse=True).reused
    with open(lst2) as f:
        lines = f.read().splitlines()
    with open(lst2, "w") as f:
        f.write("\n".join(lines[1:]) + "\n")
    with pytest.raises(BadInputError, match=r"TRAIN.LIST_FILE: another file content"):
        train_run(_cfg(root, lst2, out), reuse=True)


def test_a_model_without_its_record_is_refused(trained, tmp_path):
    root, lst2, out = _copy(trained, tmp_path)
    os.remove(out / ARCH / "t" / "run.json")
    with pytest.raises(BadInputError, match=r"no record of the settings and inputs that made it \(run.json missing\)"):
        train_run(_cfg(root, lst2, out), reuse=True)


def test_an_interrupted_run_does_not_resume_on_other_inputs(trained, tmp_path):
    root, lst2, out = _copy(trained, tmp_path)
    os.remove(out / ARCH / "t" / "model_final.pth")  # now an interrupted run
    lines = open(lst2).read().splitlines()
    with open(lst2, "w") as f:
        f.write("\n".join(reversed(lines)) + "\n")  # the same images in another order: another input
    with pytest.raises(BadInputError, match=r"holds a run that read other input files: TRAIN.LIST_FILE"):
        train_run(_cfg(root, lst2, out), resume=True)


def test_the_record_of_a_compatible_run_keeps_every_training_input(tmp_path):
    """The old model, and the statistics files the method reads, enter the record by digest (they were
    once dropped with the evaluation settings); paths alone do not change the key."""
    def stats(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 0\n")
    (tmp_path / "old.pth").write_bytes(b"old model")
    base = {"TRAIN.TYPE": "adv_compatible", "COMP_LOSS.TYPE": "bct_limit", "TRAIN.LIST_FILE": str(lst),
            "OLD_MODEL.MODEL_PATH": str(tmp_path / "old.pth"), "NEW_MODEL.PRETRAINED": False}

    def record(**over):
        opts = {**base, "COMP_LOSS.RADIUS_FILE": stats("r1.json", "{}"), **over}
        return training_record(load_cfg("", [str(x) for kv in opts.items() for x in kv]))
    first = record()
    assert set(first["inputs"]) == {"TRAIN.LIST_FILE", "OLD_MODEL.MODEL_PATH", "COMP_LOSS.RADIUS_FILE"}
    assert record(**{"COMP_LOSS.RADIUS_FILE": stats("r2.json", "{}")})["key"] == first["key"]  # same content
    other = record(**{"COMP_LOSS.RADIUS_FILE": stats("r3.json", '{"0": 1}')})
    assert [d.split(":")[0] for d in differences(first, other)] == ["COMP_LOSS.RADIUS_FILE"]
    lce = record(**{"COMP_LOSS.TYPE": "lce", "TRAIN.TYPE": "compatible", "COMP_LOSS.ANGLE_FILE": stats("a.json", "{}")})
    assert "COMP_LOSS.ANGLE_FILE" in lce["inputs"]
    bct = record(**{"COMP_LOSS.TYPE": "bct", "TRAIN.TYPE": "compatible"})
    assert "COMP_LOSS.RADIUS_FILE" not in bct["inputs"]  # BCT reads no statistics


def test_statistics_are_keyed_by_the_old_model_and_the_list(trained, tmp_path):
    root, lst, cfg, first = trained
    opts = ["OLD_MODEL.MODEL_PATH", first.path, "EXTRACT.SAVE_DIR", str(tmp_path / "stats"), "EVAL.NUM_WORKERS", "0",
            "EVAL.BATCH_SIZE", "4"]
    stats_cfg = load_cfg("", train_opts(root, lst, root / "out", 3, **{"OLD_MODEL.ARCH": ARCH}) + opts)
    assert not class_stats(stats_cfg)["reused"]
    before = _files(tmp_path / "stats")
    assert class_stats(stats_cfg, reuse=True)["reused"] and _files(tmp_path / "stats") == before
    other = tmp_path / "other.pth"
    shutil.copy(first.path, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # another file content: another old model
    with pytest.raises(BadInputError, match=r"holds statistics made with other settings or inputs: "
                                            r"OLD_MODEL.MODEL_PATH: another file content"):
        class_stats(load_cfg("", train_opts(root, lst, root / "out", 3, **{"OLD_MODEL.ARCH": ARCH}) + opts +
                             ["OLD_MODEL.MODEL_PATH", str(other)]), reuse=True)
    assert _files(tmp_path / "stats") == before


def test_the_pretrained_start_is_keyed_by_its_own_settings(trained, tmp_path):
    """The start every config loads is never retrained over by other settings (say TRAIN.MAX_ITERS given to
    the benchmark): those are refused at that file, or get their own file."""
    root, lst, cfg, first = trained
    start = str(tmp_path / "pretrained" / "start.pth")

    def pre(**extra):
        return _cfg(root, lst, tmp_path / "pre", **{"TAG": "x", **extra})
    assert pretrained_start(pre(), start) == start
    before = os.path.getmtime(start)
    assert pretrained_start(pre(), start) == start and os.path.getmtime(start) == before
    with pytest.raises(BadInputError, match=r"holds a pretrained start made with other settings or inputs: "
                                            r"TRAIN.MAX_ITERS: was 1, now 2"):
        pretrained_start(pre(**{"TRAIN.MAX_ITERS": 2}), start)
    own = pretrained_start(pre(**{"TRAIN.MAX_ITERS": 2}), start, keyed=True)
    assert own != start and os.path.isfile(own) and os.path.getmtime(start) == before


def test_train_new_lr_goes_on_from_the_last_checkpoint_at_another_rate(trained, tmp_path, capsys):
    """`train --new-lr LR` is --resume with TRAIN.RESUME_WITH_NEW_LR True and TRAIN.OPTIMIZER.BASE_LR LR: the
    run goes on from its last checkpoint (here on to a second epoch), and its record says so."""
    import torch
    from bct.pipeline.records import read_record
    root, lst2, out = _copy(trained, tmp_path)
    argv = train_opts(root, lst2, out, 3, **{"TRAIN.EPOCHS": 2, "TRAIN.MAX_ITERS": 1, "OLD_MODEL.ARCH": ARCH})
    run(train_tool.main, ["--new-lr", "0.001", *argv])
    folder = out / ARCH / "t"
    assert "TRAIN.RESUME_WITH_NEW_LR: going on with TRAIN.OPTIMIZER.BASE_LR 0.001" in (folder / "log.txt").read_text()
    assert torch.load(folder / "model_final.pth", weights_only=True)["epoch"] == 2
    settings = read_record(str(folder))["settings"]
    assert settings["TRAIN.OPTIMIZER.BASE_LR"] == 0.001 and settings["TRAIN.RESUME_WITH_NEW_LR"] is True
