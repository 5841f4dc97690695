"""Faults with real processes: killed and interrupted training, killed extraction and evaluation,
and a two-process gloo world that loses a rank.

Every run is a separate OS process that receives real signals. The processes are forked from this
test process after torch and the tools are imported (a fresh `python -m` pays several seconds of
imports per start, which these tests would pay a dozen times; test_bad_inputs.py and
test_scripts_end_to_end.py run the real command lines). Each child sends its output to a file, uses one
intra-op thread and enters the tool through bct.tools.common.run exactly as `python -m` does; the
distributed ranks run a test-local wrapper script (written by the test, never part of the
package) that adds the failure and then runs bct.tools.train. What is checked:

- SIGKILL at a seeded random moment, and SIGKILL while a checkpoint is being written: the newest
  checkpoint that last_checkpoint names always loads, a temporary file is never taken for a
  checkpoint, and --resume ends with parameters equal (torch.equal) to an uninterrupted run
  (CPU, DETERMINISTIC True);
- SIGTERM in the middle of an epoch: exit 130, ckpt_interrupted.pth, identical final parameters;
- SIGKILL of extract_feat and of the test tool while they write: no partial file under a final
  name, and a re-run completes (reusing what was complete);
- a rank that dies or hangs: the survivor stops with one line within BCT_DIST_TIMEOUT.
"""
import glob
import json
import os
import pickle
import random
import signal
import stat
import time

import numpy as np
import pytest
import torch
from PIL import Image

import bct.tools.extract_feat  # noqa: F401  imported here once, so that forked runs start at once
import bct.tools.test  # noqa: F401
import bct.tools.train  # noqa: F401
from bct.models.loading import load_checkpoint
from helpers import free_port as _free_port
from helpers import RUN_LIMIT, finish, make_image_list, start, text, train_opts, wait_for  # noqa: F401

try:  # the trainer's TensorBoard writer and the search backend, imported lazily by the tools
    import faiss  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401
except ImportError:
    pass

# Every test here runs real processes and signals them.
pytestmark = pytest.mark.slow

SIZE = 24
# A small torchvision model keeps each run and each checkpoint (14 MB) short; the fault handling
# does not depend on the architecture. Its dropout also checks that resuming restores the RNG.
ARCH = "mobilenet_v3_small"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Training: 16 images, batch 4, 3 epochs x 4 iterations, deterministic CPU
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return root, make_image_list(str(root), n_classes=4, per_class=4, size=SIZE)


def train_argv(data, out):
    root, lst = data
    return train_opts(root, lst, out, 4, **{
        "OLD_MODEL.ARCH": ARCH, "TRAIN.BATCH_SIZE": 4, "TRAIN.EPOCHS": 3, "TRAIN.INPUT_SIZE": SIZE,
        "DETERMINISTIC": True,
        "PRINT_FREQ": 1, "TRAIN.OPTIMIZER.BASE_LR": 0.05, "TRAIN.LR_SCHEDULER.MILESTONES": "[2]"})


def run_dir(out):
    return os.path.join(out, ARCH, "t")


class Reference:
    """The uninterrupted run, started at once in the background and awaited when first needed."""

    def __init__(self, data, out):
        self.out = out
        self.proc = start("train", train_argv(data, out), out / "stdout.txt")
        self._model = None

    def path(self, name="model_final.pth"):
        if self.proc.is_alive() or self.proc.exitcode is None:
            assert finish(self.proc) == 0, text(self.out / "stdout.txt")[-3000:]
        assert self.proc.exitcode == 0
        return os.path.join(run_dir(self.out), name)

    def model(self):
        if self._model is None:
            self._model = load_checkpoint(self.path())["model"]
        return self._model


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    ref = Reference(data, tmp_path_factory.mktemp("reference"))
    yield ref
    if ref.proc.is_alive():
        finish(ref.proc)


def assert_consistent_after_kill(folder):
    """What a crash may leave: the pointer names a whole checkpoint, every final name loads."""
    pointer = os.path.join(folder, "last_checkpoint")
    if os.path.isfile(pointer):
        name = open(pointer).read().strip()
        assert name.endswith(".pth") and not name.endswith(".tmp"), name
        assert load_checkpoint(os.path.join(folder, name))["meta"]["arch"] == ARCH
    for path in glob.glob(os.path.join(folder, "*.pth")):
        load_checkpoint(path)  # raises on a partial file
    return [os.path.basename(p) for p in glob.glob(os.path.join(folder, ".*.tmp"))]


def assert_same_parameters(out, reference):
    final = load_checkpoint(os.path.join(run_dir(out), "model_final.pth"))
    assert final["epoch"] == 3
    ref = reference.model()
    assert set(final["model"]) == set(ref)
    different = [k for k in ref if not torch.equal(ref[k], final["model"][k])]
    assert different == [], different[:5]


def test_sigterm_mid_epoch_then_sigkill_while_saving(data, reference, tmp_path):
    out = tmp_path / "run"
    folder = run_dir(out)
    log = os.path.join(folder, "log.txt")
    # 1. SIGTERM during epoch 1: the current step ends, ckpt_interrupted.pth is written, exit 130.
    proc = start("train", train_argv(data, out), tmp_path / "a.txt")
    assert wait_for(lambda: "epoch 1 iter 1/4" in text(log), proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc) == 130, text(tmp_path / "a.txt")[-3000:]
    assert "stopped (rank 0)" in text(tmp_path / "a.txt")
    assert open(os.path.join(folder, "last_checkpoint")).read().strip() == "ckpt_interrupted.pth"
    ckpt = load_checkpoint(os.path.join(folder, "ckpt_interrupted.pth"))
    assert ckpt["epoch"] == 0 and 1 <= ckpt["iteration"] <= 4
    # 2. Resume, and SIGKILL while ckpt_epoch_2.pth is being written (its temporary file exists).
    proc = start("train", ["--resume", *train_argv(data, out)], tmp_path / "b.txt")
    writing = os.path.join(folder, ".ckpt_epoch_2.pth.*.tmp")
    assert wait_for(lambda: glob.glob(writing), proc), "the resumed run ended before writing ckpt_epoch_2.pth"
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL
    assert f"resumed from {folder}/ckpt_interrupted.pth at epoch 1, iteration {ckpt['iteration']}" in text(log)
    leftovers = assert_consistent_after_kill(folder)
    assert any(n.startswith(".ckpt_epoch_2.pth.") for n in leftovers)
    assert not os.path.exists(os.path.join(folder, "ckpt_epoch_2.pth"))
    assert open(os.path.join(folder, "last_checkpoint")).read().strip() == "ckpt_epoch_1.pth"
    # 3. Resume again: from ckpt_epoch_1.pth, never from the temporary file; same end point.
    proc = start("train", ["--resume", *train_argv(data, out)], tmp_path / "c.txt")
    assert finish(proc) == 0, text(tmp_path / "c.txt")[-3000:]
    assert f"resumed from {folder}/ckpt_epoch_1.pth at epoch 2, iteration 0" in text(log)
    assert_same_parameters(out, reference)


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_moment_then_resume(data, reference, tmp_path, seed):
    """The moment is drawn from the seed: after step k of 12 (k <= 9, so the run is never over) plus
    up to 50 ms, which lands inside a later step or inside a checkpoint write."""
    out = tmp_path / "run"
    folder = run_dir(out)
    rng = random.Random(seed)
    epoch, it = divmod(rng.randint(1, 9) - 1, 4)
    proc = start("train", train_argv(data, out), tmp_path / "a.txt")
    assert wait_for(lambda: f"epoch {epoch + 1} iter {it + 1}/4" in text(os.path.join(folder, "log.txt")), proc)
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL
    assert_consistent_after_kill(folder)
    proc = start("train", ["--resume", *train_argv(data, out)], tmp_path / "b.txt")
    assert finish(proc) == 0, text(tmp_path / "b.txt")[-3000:]
    assert_same_parameters(out, reference)


def test_written_files_get_the_usual_permissions(reference):
    """Atomic writes go through mkstemp (mode 0600); the final files must get the umask's mode so
    that a group can read checkpoints and results."""
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model_final.pth", "last_checkpoint", "config.yaml"):
        path = os.path.join(run_dir(reference.out), name)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask, name


# --------------------------------------------------------------------------------------------
# extract_feat and the test tool killed while they write
# --------------------------------------------------------------------------------------------

def extract_argv(data, old_ckpt, save_dir):
    root, lst = data
    opts = {"OLD_MODEL.MODEL_PATH": old_ckpt, "OLD_MODEL.ARCH": ARCH, "OLD_MODEL.NUM_CLASSES": 4,
            "TRAIN.LIST_FILE": lst, "TRAIN.ROOT": root,
            "TRAIN.INPUT_SIZE": SIZE, "EVAL.BATCH_SIZE": 2, "EVAL.NUM_WORKERS": 0, "EXTRACT.SAVE_DIR": save_dir,
            "DEVICE": "cpu"}
    return [str(x) for kv in opts.items() for x in kv]


def _check_stats_folder(folder, n):
    """Each output is absent or whole; returns the names present."""
    present = []
    for name in ("radius.json", "angle.json"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            assert set(json.load(open(path))) == {"0", "1", "2", "3"}
            present.append(name)
    for name, shape in (("feats.npy", (n, 256)), ("labels.npy", (n,))):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            assert np.load(path).shape == shape
            present.append(name)
    return present


def test_extract_feat_killed_then_rerun(data, reference, tmp_path):
    old = reference.path()  # the reference run's final model serves as the old model
    save = tmp_path / "stats"
    delay = random.Random(0).uniform(0.0, 0.2)  # extraction takes a few tenths of a second
    proc = start("extract_feat", extract_argv(data, old, save), tmp_path / "a.txt")
    assert wait_for(lambda: "embedding 16 images" in text(save / "log.txt"), proc)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    _check_stats_folder(save, 16)
    proc = start("extract_feat", extract_argv(data, old, save), tmp_path / "b.txt")
    assert finish(proc) == 0, text(tmp_path / "b.txt")[-3000:]
    assert _check_stats_folder(save, 16) == ["radius.json", "angle.json", "feats.npy", "labels.npy"]


def _revisited(root, n_db=40, n_q=4):
    img_dir = root / "tiny" / "jpg"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"db{i}" for i in range(n_db)] + [f"q{i}" for i in range(n_q)]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(img_dir / f"{n}.jpg")
    gnd = [{"bbx": [0.0, 0.0, 8.0, 8.0], "easy": [q, q + 4], "hard": [q + 8], "junk": [q + 12]} for q in range(n_q)]
    with open(root / "tiny" / "gnd_tiny.pkl", "wb") as f:
        pickle.dump({"imlist": names[:n_db], "qimlist": names[n_db:], "gnd": gnd}, f)
    return root


def eval_argv(reference, rev, save, cache):
    opts = {"NEW_MODEL.MODEL_PATH": reference.path(), "OLD_MODEL.MODEL_PATH": reference.path("ckpt_epoch_1.pth"),
            "NEW_MODEL.ARCH": ARCH, "OLD_MODEL.ARCH": ARCH, "EVAL.DATASET": "tiny", "EVAL.ROOT": rev,
            "EVAL.INPUT_SIZE": SIZE, "EVAL.BATCH_SIZE": 4,
            "EVAL.NUM_WORKERS": 0, "EVAL.SAVE_DIR": save, "EVAL.CACHE_DIR": cache, "DEVICE": "cpu"}
    return [str(x) for kv in opts.items() for x in kv]


def _check_cache(cache):
    """Every final name in the cache is a whole array; returns the keys with features and mask."""
    complete = []
    for path in glob.glob(os.path.join(cache, "*.npy")):
        arr = np.load(path)
        if path.endswith(".ok.npy"):
            assert arr.shape == (40,) and arr.dtype == bool
        else:
            assert arr.shape == (40, 256) and np.allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-4)
            if os.path.exists(path[:-4] + ".ok.npy"):
                complete.append(os.path.basename(path)[:-4])
    return complete


def test_test_tool_killed_while_caching_then_rerun(reference, tmp_path):
    rev = _revisited(tmp_path / "rev")
    clean = start("test", eval_argv(reference, rev, tmp_path / "clean", tmp_path / "clean_cache"), tmp_path / "c.txt")
    cache, save = tmp_path / "cache", tmp_path / "eval"
    proc = start("test", eval_argv(reference, rev, save, cache), tmp_path / "a.txt")

    def old_gallery_being_written():
        # The new-model gallery is cached (features + mask) and the old-model gallery's file is open.
        done = glob.glob(os.path.join(cache, "*.ok.npy"))
        open_files = [p for p in glob.glob(os.path.join(cache, ".*.tmp")) if ".ok.npy." not in p]
        return bool(done and open_files)
    assert wait_for(old_gallery_being_written, proc), "the run ended before caching the old gallery"
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL
    assert len(_check_cache(cache)) == 1
    assert not os.path.exists(save / "tiny.json")
    proc = start("test", eval_argv(reference, rev, save, cache), tmp_path / "b.txt")
    assert finish(proc) == 0, text(tmp_path / "b.txt")[-3000:]
    assert text(tmp_path / "b.txt").count("reusing cached features") == 1
    assert len(_check_cache(cache)) == 2
    assert finish(clean) == 0, text(tmp_path / "c.txt")[-3000:]
    rerun, fresh = json.load(open(save / "tiny.json")), json.load(open(tmp_path / "clean" / "tiny.json"))
    for part in ("self", "cross", "old_self"):
        assert rerun[part] == fresh[part]


# --------------------------------------------------------------------------------------------
# Two-process gloo world that loses a rank
# --------------------------------------------------------------------------------------------

WRAPPER = '''"""Test-local entry point for a two-rank world: the rank named by DIE_RANK leaves abruptly
(os._exit, no clean-up) at its DIE_AT-th training step, and every rank writes the time it ended
to END_FILE. Everything else is bct.tools.train as `python -m` runs it."""
import os
import sys
import time

from bct.engine import trainer


def stamp():
    with open(os.environ["END_FILE"], "w") as f:
        f.write(repr(time.time()))


if os.environ.get("RANK") == os.environ.get("DIE_RANK"):
    real_step = trainer.Trainer.step

    def step(self, images, labels, epoch, it, params, idx=None):
        if epoch * self.iters_per_epoch + it >= int(os.environ["DIE_AT"]):
            stamp()
            os._exit(7)
        return real_step(self, images, labels, epoch, it, params, idx)

    trainer.Trainer.step = step

from bct.tools import train  # noqa: E402
from bct.tools.common import run  # noqa: E402

try:
    run(train.main, sys.argv[1:])
finally:
    stamp()
'''


def dist_argv(data, out):
    root, lst = data
    return train_opts(root, lst, out, 4, **{"OLD_MODEL.ARCH": ARCH, "TRAIN.BATCH_SIZE": 2, "TRAIN.EPOCHS": 2,
                                            "TRAIN.INPUT_SIZE": SIZE, "PRINT_FREQ": 1})


def dist_env(rank, port, timeout):
    return {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "BCT_DIST_TIMEOUT": str(timeout)}


def assert_survivor_message(err):
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: rank 0: a collective operation failed"), err[-3000:]
    assert "BCT_DIST_TIMEOUT" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in err


def test_survivor_stops_when_a_rank_dies(data, tmp_path):
    """Both ranks run the test-local wrapper script; rank 1 leaves at its third step."""
    wrapper = tmp_path / "dying_rank.py"
    wrapper.write_text(WRAPPER)
    port, timeout = _free_port(), 30
    procs = [start(str(wrapper), dist_argv(data, tmp_path / "out"), tmp_path / f"log{rank}.txt",
                   dict(dist_env(rank, port, timeout), DIE_RANK="1", DIE_AT="2", END_FILE=str(tmp_path / f"end{rank}")))
             for rank in (0, 1)]
    try:
        codes = (finish(procs[0], limit=RUN_LIMIT + timeout), finish(procs[1], limit=10))
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join()
    assert codes == (1, 7), (codes, text(tmp_path / "log0.txt")[-3000:])
    waited = float(text(tmp_path / "end0")) - float(text(tmp_path / "end1"))
    assert waited < timeout, waited  # a dead peer is noticed at once, not after the timeout
    log = text(tmp_path / "log0.txt")
    assert "epoch 1 iter 2/" in log
    assert_survivor_message(log)


def _hang_hook():
    """Rank 1 stops answering at its second step (a stuck data mount, a deadlock): it sleeps."""
    from bct.engine import trainer
    if os.environ["RANK"] != "1":
        return
    real_step = trainer.Trainer.step

    def step(self, images, labels, epoch, it, params, idx=None):
        if epoch * self.iters_per_epoch + it >= 1:
            time.sleep(RUN_LIMIT)
        return real_step(self, images, labels, epoch, it, params, idx)
    trainer.Trainer.step = step


@pytest.mark.slow
def test_survivor_stops_within_the_timeout_when_a_rank_hangs(data, tmp_path):
    port, timeout = _free_port(), 4
    procs = [start("train", dist_argv(data, tmp_path / "out"), tmp_path / f"log{rank}.txt",
                   dist_env(rank, port, timeout), _hang_hook) for rank in (0, 1)]
    try:
        assert wait_for(lambda: "epoch 1 iter 1/" in text(tmp_path / "log0.txt"), procs[0])
        began = time.time()
        code = finish(procs[0], limit=timeout + 40)
        waited = time.time() - began
    finally:
        if procs[1].is_alive():
            os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].join()
    assert code == 1 and waited < timeout + 20, (code, waited)
    assert_survivor_message(text(tmp_path / "log0.txt"))
