"""Faults of storage and state: feature caches that must know what they hold, one training per output
folder, operating-system errors (a file-size limit, a full disk, a read-only folder) as one line,
and --resume after the config changed.

As in test_bad_inputs_files.py every case asserts the exit code, the one line (or, for a case that
must succeed, the log line that says what happened) and that the outputs of an earlier run are
unchanged. A real file-size limit and a real second process holding the lock run as forked
processes (test_faults_processes.py's helpers); a full disk and a read-only file system, which a test
cannot make without privileges, are injected at the lowest write call.
"""
import errno
import json
import os
import resource
import signal

import numpy as np
import pytest
import torch

from helpers import (FORK, WORLD_ARCH as ARCH, copy_of, eval_argv, extract_argv, finish,  # noqa: F401
                     invoke, refused, revisited_set as _revisited, snapshot, start, text, train_argv)

pytestmark = pytest.mark.usefixtures("one_thread")


def run_dir(out):
    return out / ARCH / "t"


# --------------------------------------------------------------------------------------------
# 3. Caches know what they hold
# --------------------------------------------------------------------------------------------

def _eval_new_only(w, out, rev, cache, **extra):
    return eval_argv(w, out, **{"EVAL.ROOT": rev, "OLD_MODEL.MODEL_PATH": "", "EVAL.CACHE_DIR": cache,
                                "EVAL.SKIP_BAD_IMAGES": True, **extra})


def test_repaired_image_gets_fresh_features(w, tmp_path, capsys):
    rev = tmp_path / "rev"
    _revisited(rev)
    image = rev / "tiny" / "jpg" / "db2.jpg"
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 3])  # truncated: skipped with a zero feature
    cache = tmp_path / "cache"
    code, err, out = invoke(capsys, "test", _eval_new_only(w, tmp_path / "a", rev, cache))
    assert code == 0 and "1 of 6 gallery images could not be read" in out, err
    image.write_bytes(good)  # repaired
    code, err, out = invoke(capsys, "test", _eval_new_only(w, tmp_path / "b", rev, cache))
    assert code == 0, err
    assert "reusing cached features" not in out and "could not be read" not in out
    code, err, _ = invoke(capsys, "test", _eval_new_only(w, tmp_path / "fresh", rev, tmp_path / "fresh_cache"))
    assert code == 0, err
    repaired, fresh = (json.load(open(tmp_path / d / "tiny.json")) for d in ("b", "fresh"))
    assert repaired["self"] == fresh["self"] and repaired["skipped_images"] == 0


@pytest.mark.parametrize("damage", ["truncated_features", "mask_of_another_length", "empty_mask"])
def test_damaged_cache_entry_is_rebuilt_with_one_info_line(w, tmp_path, capsys, damage):
    rev = tmp_path / "rev"
    _revisited(rev)
    cache = tmp_path / "cache"
    code, err, _ = invoke(capsys, "test", _eval_new_only(w, tmp_path / "a", rev, cache))
    assert code == 0, err
    (feat,) = [p for p in cache.iterdir() if not p.name.endswith(".ok.npy")]
    mask = feat.with_name(feat.name[:-4] + ".ok.npy")
    if damage == "truncated_features":
        feat.write_bytes(feat.read_bytes()[:300])
    elif damage == "mask_of_another_length":
        np.save(mask, np.ones(5, dtype=bool))
    else:
        mask.write_bytes(b"")
    code, err, out = invoke(capsys, "test", _eval_new_only(w, tmp_path / "b", rev, cache))
    assert code == 0, err
    assert out.count(f"cache entry {feat} is damaged") == 1 and "extracting the features again" in out
    first, again = (json.load(open(tmp_path / d / "tiny.json")) for d in ("a", "b"))
    assert first["self"] == again["self"]
    assert np.load(feat).shape == (6, 256) and np.load(mask).shape == (6,)


def _hold(folder, held, release):
    """A second process that claims `folder` and keeps it until `release` is set."""
    from bct.engine.lock import OutputLock
    with OutputLock(str(folder)):
        held.set()
        release.wait(120)


@pytest.mark.slow
def test_second_training_in_a_held_folder_is_refused(w, earlier, tmp_path, capsys):
    out, _ = copy_of(earlier, "train", tmp_path)
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(run_dir(out), held, release))
    holder.start()
    try:
        assert held.wait(60)
        before = snapshot(out)
        line = refused(invoke(capsys, "train", ["--resume", *train_argv(w, w.list, out)]), 2, out, before,
                       f"output folder {run_dir(out)} is in use by another training run (pid {holder.pid} on host",
                       "choose another TAG or OUTPUT")
        assert str(run_dir(out) / "train.lock") in line
    finally:
        release.set()
        holder.join(60)
    assert not (run_dir(out) / "train.lock").exists()


@pytest.mark.slow
def test_lock_of_a_killed_run_is_taken_over(w, earlier, tmp_path, capsys):
    """SIGKILL leaves train.lock behind, but the kernel has released its flock: the next run
    takes the folder over with one info line, and removes the lock when it ends."""
    out, _ = copy_of(earlier, "train", tmp_path)
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(run_dir(out), held, release))
    holder.start()
    assert held.wait(60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(60)
    assert (run_dir(out) / "train.lock").exists()
    before = snapshot(out)
    code, err, _ = invoke(capsys, "train", ["--resume", *train_argv(w, w.list, out)])
    assert code == 0, err
    log = open(run_dir(out) / "log.txt").read()
    assert f"(pid {holder.pid} on host" in log and "has ended; taking the folder over" in log
    assert not (run_dir(out) / "train.lock").exists()
    assert snapshot(out)[f"{ARCH}/t/ckpt_epoch_1.pth"] == before[f"{ARCH}/t/ckpt_epoch_1.pth"]


def test_lock_is_released_when_a_run_fails(w, earlier, tmp_path, capsys):
    out, before = tmp_path / "fresh", {}  # a run of its own: a folder of another run's settings is refused
    (tmp_path / "bad").mkdir()
    for i in range(4):
        (tmp_path / "bad" / f"e{i}.jpg").write_bytes(b"")
    lst = tmp_path / "bad.txt"
    lst.write_text("".join(f"bad/e{i}.jpg {i}\n" for i in range(4)))
    argv = train_argv(w, lst, out, **{"TRAIN.SKIP_BAD_IMAGES": True, "TRAIN.ROOT": tmp_path})
    refused(invoke(capsys, "train", argv), 2, out, before, "epoch 1 took no optimiser step")
    assert not (run_dir(out) / "train.lock").exists()


# --------------------------------------------------------------------------------------------
# 4. Operating-system errors are one line too
# --------------------------------------------------------------------------------------------

def _limit_file_size(limit):
    def hook():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return hook


@pytest.mark.slow
def test_checkpoint_over_the_file_size_limit(w, earlier, tmp_path):
    """A real failed write: the process may not write files over 1 MB, a checkpoint is ~7 MB."""
    out, before = copy_of(earlier, "train", tmp_path)
    # The earlier run's settings: a run of other settings would be refused before it writes.
    proc = start("train", train_argv(w, w.list, out, **{"TRAIN.MAX_ITERS": 1}), tmp_path / "log.txt",
                 hook=_limit_file_size(1 << 20))
    assert finish(proc) == 2, text(tmp_path / "log.txt")[-3000:]
    log = text(tmp_path / "log.txt")
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert "Traceback" not in log and len(errors) == 1 and log.rstrip().endswith(errors[0]), log[-3000:]
    assert errors[0] == (f"error: {run_dir(out) / 'ckpt_epoch_1.pth'}: file too large for the file system or for "
                         "the process's file-size limit (ulimit -f) (EFBIG); raise the limit or write to another "
                         "disk; earlier files are intact")
    assert snapshot(out) == before
    assert not [n for n in os.listdir(run_dir(out)) if n.endswith(".tmp")]


class _FullDisk:
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_disk_after(calls, write):
    """`write` of a file wrapper whose file fails with ENOSPC from its `calls`-th write on, as a
    file on a disk that fills up does."""
    count = {"n": 0}

    def failing(self, data):
        count["n"] += 1
        if count["n"] < calls:
            return write(self, data)
        real, self.f = self.f, _FullDisk()
        try:
            return write(self, data)
        finally:
            self.f = real
    return failing


def test_full_disk_while_saving_a_checkpoint(w, earlier, tmp_path, capsys, monkeypatch):
    from bct.engine import checkpoint
    monkeypatch.setattr(checkpoint._KeepWriteError, "write", _full_disk_after(3, checkpoint._KeepWriteError.write))
    out, before = copy_of(earlier, "train", tmp_path)
    refused(invoke(capsys, "train", train_argv(w, w.list, out, **{"TRAIN.MAX_ITERS": 1})), 2, out, before,
            f"error: {run_dir(out) / 'ckpt_epoch_1.pth'}: no space left on the device (ENOSPC); free some space")


def test_full_disk_while_writing_statistics(w, earlier, tmp_path, capsys, monkeypatch):
    """radius.json and angle.json are already written (under temporary names) when feats.npy
    fails: none of the five outputs may change."""
    def save(f, arr):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np, "save", save)
    out, before = copy_of(earlier, "stats", tmp_path)
    refused(invoke(capsys, "extract_feat", extract_argv(w, w.list, out)), 2, out, before,
            f"error: {out / 'feats.npy'}: no space left on the device (ENOSPC)")


def test_read_only_file_system_for_results(w, earlier, tmp_path, capsys, monkeypatch):
    import tempfile

    def mkstemp(prefix="", suffix="", dir=None):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
    out, before = copy_of(earlier, "eval", tmp_path)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    refused(invoke(capsys, "test", eval_argv(w, out, **{"OLD_MODEL.MODEL_PATH": ""})), 2, out, before,
            f"error: {out}: the file system is read-only (EROFS); write to a writable folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root")
def test_folder_without_write_permission(w, earlier, tmp_path, capsys):
    out, before = copy_of(earlier, "eval", tmp_path)
    os.chmod(out, 0o555)
    try:
        refused(invoke(capsys, "test", eval_argv(w, out, **{"OLD_MODEL.MODEL_PATH": ""})), 2, out, before,
                "permission denied (EACCES)")
    finally:
        os.chmod(out, 0o755)


def test_output_below_a_file(w, tmp_path, capsys):
    (tmp_path / "output").write_text("not a folder\n")
    before = snapshot(tmp_path)
    refused(invoke(capsys, "train", train_argv(w, w.list, tmp_path / "output")), 2, tmp_path, before,
            f"error: {tmp_path / 'output'}", "a part of the path is a file, not a folder (ENOTDIR)")


def test_summary_written_over_a_folder(earlier, tmp_path, capsys):
    folder, before = copy_of(earlier, "eval", tmp_path)
    (folder / "summary.md").mkdir()
    before = snapshot(folder)
    refused(invoke(capsys, "summarize", [folder, "--out", folder / "summary.md"]), 2, folder, before,
            f"error: argument --out: {folder / 'summary.md'}: is a folder, not a file (EISDIR)")


# --------------------------------------------------------------------------------------------
# 7. --resume after the config changed
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, shown", [
    ({"TRAIN.OPTIMIZER.NAME": "adamw"}, "TRAIN.OPTIMIZER.NAME 'sgd' -> 'adamw'"),
    ({"TRAIN.OPTIMIZER.BASE_LR": 0.5}, "TRAIN.OPTIMIZER.BASE_LR 0.01 -> 0.5"),
    ({"LOSS.TYPE": "arcface", "TRAIN.OPTIMIZER.WEIGHT_DECAY": 0.0},
     "LOSS.TYPE 'softmax' -> 'arcface', TRAIN.OPTIMIZER.WEIGHT_DECAY 0.0005 -> 0.0"),
], ids=["optimiser", "learning_rate", "loss_and_weight_decay"])
def test_resume_with_a_key_the_saved_state_depends_on(w, earlier, tmp_path, capsys, extra, shown):
    out, before = copy_of(earlier, "train", tmp_path)
    argv = ["--resume", *train_argv(w, w.list, out, **{"TRAIN.EPOCHS": 2, **extra})]
    refused(invoke(capsys, "train", argv), 2, out, before,
            f"--resume: the config differs from the one {run_dir(out) / 'ckpt_epoch_1.pth'} was written with in "
            f"{shown}", "set them back to the checkpoint's values or start a fresh run under another TAG")


def test_resume_with_other_keys_changed_goes_on_and_says_so(w, earlier, tmp_path, capsys):
    out, before = copy_of(earlier, "train", tmp_path)
    argv = ["--resume", *train_argv(w, w.list, out, **{"TRAIN.EPOCHS": 2, "TRAIN.LR_SCHEDULER.MILESTONES": "[1]"})]
    code, err, _ = invoke(capsys, "train", argv)
    assert code == 0, err
    log = open(run_dir(out) / "log.txt").read()
    assert "--resume: config keys changed since" in log and "TRAIN.EPOCHS 1 -> 2" in log
    assert "TRAIN.LR_SCHEDULER.MILESTONES [5, 10, 20] -> [1]" in log
    assert snapshot(out)[f"{ARCH}/t/ckpt_epoch_1.pth"] == before[f"{ARCH}/t/ckpt_epoch_1.pth"]
    assert torch.load(run_dir(out) / "model_final.pth", weights_only=True)["epoch"] == 2


def test_resume_from_an_optimiser_state_that_does_not_fit(w, earlier, tmp_path, capsys):
    out, _ = copy_of(earlier, "train", tmp_path)
    path = run_dir(out) / "ckpt_epoch_1.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["optimizer"]["param_groups"].append(dict(ckpt["optimizer"]["param_groups"][0], params=[10 ** 6]))
    torch.save(ckpt, path)
    before = snapshot(out)
    refused(invoke(capsys, "train", ["--resume", *train_argv(w, w.list, out, **{"TRAIN.EPOCHS": 2})]), 2, out,
            before, f"--resume: the optimiser or scheduler state in {path} does not fit this run (ValueError")
