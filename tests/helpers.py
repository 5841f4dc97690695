"""Helpers shared by the tests (import them with `from helpers import ...`; fixtures live in
conftest.py): a tiny fabricated image-list dataset (class-dependent patterns, 32 px) and the KEY
VALUE overrides of a seconds-long CPU training run on it; the terms of the method catalogue; the
bad-input world (checkpoints, statistics, a revisited set; the argv of each entry point, running a
tool as `python -m` does, the one-line error check, snapshots of earlier outputs); forked runs; the
gallery-index test models; GLDv2 CSV fabrication; the list of tools; own.sh on a real image set."""
import csv
import hashlib
import importlib
import json
import multiprocessing
import os
import pickle
import pkgutil
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import bct.tools

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_image_list(root, n_classes=4, per_class=6, size=32, seed=0, name="train.txt", first_label=0):
    """Write per-class patterned JPEGs under root/img and a 'path label' list; returns the list path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    lines = []
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(n_classes):
        freq = 1 + c
        for j in range(per_class):
            base = (np.sin(xx * freq / 4.0 + j * 0.3) * np.cos(yy * (c % 3 + 1) / 5.0) + 1) * 120
            img = np.stack([base, np.roll(base, c * 3, axis=0), base[::-1]], -1)
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            rel = f"img/c{c + first_label}_{j}.jpg"
            Image.fromarray(img).save(os.path.join(root, rel), quality=92)
            lines.append(f"{rel} {c + first_label}")
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def train_opts(root, list_path, out, num_classes, role="old", **extra):
    """KEY VALUE overrides for a seconds-long CPU training run on a tiny list."""
    key = "OLD_MODEL" if role == "old" else "NEW_MODEL"
    opts = {
        "TRAIN.ROOT": str(root), "TRAIN.LIST_FILE": str(list_path), f"{key}.NUM_CLASSES": str(num_classes),
        f"{key}.PRETRAINED": "False", "TRAIN.BATCH_SIZE": "8", "TRAIN.EPOCHS": "2", "TRAIN.INPUT_SIZE": "32",
        "TRAIN.NUM_WORKERS": "0", "OUTPUT": str(out), "TAG": "t", "PRINT_FREQ": "100", "DEVICE": "cpu",
        "TRAIN.OPTIMIZER.BASE_LR": "0.01", "TRAIN.VAL_FREQ": "0",
    }
    opts.update({k: str(v) for k, v in extra.items()})
    return [x for kv in opts.items() for x in kv]


def catalogue_terms() -> list:
    """The compatibility terms that the methods of the catalogue train with (COMP_LOSS.TYPE and
    EXTRA_TERMS of every method yml, BCT_METHODS_PATH included; their MODULES imported), sorted. Tests
    parametrised over it cover a method added to the catalogue with no change (mark them catalogue)."""
    from bct.config.loader import load_layers
    from bct.config.methods import method_file, method_names
    from bct.losses import term_names

    terms = set()
    for name in method_names():
        cfg = load_layers([method_file(name)], freeze=False, notes=[], sets={"METHOD.NAME": name})
        terms.update(term_names(cfg))
    return sorted(terms)


# -- the bad-input world: 8 labelled images, an old and a new checkpoint, old-class statistics and a
# revisited-format test set, built once per module (the `w` fixture); every test writes its own broken
# variant next to it. A small torchvision model keeps every run and checkpoint short.
WORLD_PX = 24
WORLD_ARCH = "mobilenet_v3_small"


def model_ckpt(path, role, num_classes, arch=WORLD_ARCH, emb_dim=256):
    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model

    key = "OLD_MODEL" if role == "old" else "NEW_MODEL"
    cfg = load_cfg("", [f"{key}.PRETRAINED", "False", f"{key}.NUM_CLASSES", str(num_classes),
                        f"{key}.ARCH", arch, "MODEL.EMB_DIM", str(emb_dim)])
    model = build_model(cfg, role)
    save_checkpoint(str(path), {"model": model.state_dict(), "meta": model.meta})
    return str(path)


def stats_file(path, class_ids, dim=256, seed=0):
    """Old-class statistics (radius.json layout) of random centres for `class_ids`."""
    rng = np.random.default_rng(seed)
    data = {str(c): {"center": (rng.normal(size=dim) / np.sqrt(dim)).tolist(),
                     "radius": sorted(rng.uniform(0.2, 0.9, size=3).tolist())} for c in class_ids}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def revisited_set(root, name="tiny", n_db=6, n_q=2):
    """A revisited-format test set `name` under `root` (random images, two queries); returns root."""
    img_dir = root / name / "jpg"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"db{i}" for i in range(n_db)] + [f"q{i}" for i in range(n_q)]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (WORLD_PX, WORLD_PX, 3), dtype=np.uint8)).save(img_dir / f"{n}.jpg")
    gnd = [{"bbx": [0.0, 0.0, float(WORLD_PX), float(WORLD_PX)], "easy": [q, q + 2], "hard": [q + 1], "junk": []}
           for q in range(n_q)]
    with open(root / name / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump({"imlist": names[:n_db], "qimlist": names[n_db:], "gnd": gnd}, f)
    return str(root)


def invoke(capsys, tool, argv):
    """Run a tool's main through bct.tools.common.run; returns (exit code, stderr, stdout)."""
    from bct.tools.common import run

    main = importlib.import_module(f"bct.tools.{tool}").main
    try:
        run(main, [str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.err, cap.out


def expect_error(result, code, *fragments):
    got_code, err, out = result
    lines = err.strip().splitlines()
    assert got_code == code, f"exit {got_code}, stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def write_list(tmp_path, lines, name="list.txt"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def train_argv(w, lst, out, **extra):
    """Old-model training: 4 classes, batch 4, one epoch of at most 2 iterations at 24 px."""
    base = {"OLD_MODEL.ARCH": WORLD_ARCH, "TRAIN.BATCH_SIZE": 4, "TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 2,
            "TRAIN.INPUT_SIZE": WORLD_PX}
    return train_opts(w.root, lst, out, 4, **{**base, **extra})


def train_new_argv(w, out, **extra):
    """Boundary-loss new-model training against the world's old checkpoint and statistics."""
    base = {"OLD_MODEL.ARCH": WORLD_ARCH, "NEW_MODEL.ARCH": WORLD_ARCH, "TRAIN.TYPE": "compatible",
            "COMP_LOSS.TYPE": "bct_limit", "OLD_MODEL.MODEL_PATH": w.old,
            "OLD_MODEL.NUM_CLASSES": 4, "COMP_LOSS.RADIUS_FILE": w.radius, "TRAIN.BATCH_SIZE": 4,
            "TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1, "TRAIN.INPUT_SIZE": WORLD_PX}
    return train_opts(w.root, w.list, out, 4, role="new", **{**base, **extra})


def extract_argv(w, lst, out, **extra):
    opts = {"OLD_MODEL.MODEL_PATH": w.old, "OLD_MODEL.ARCH": WORLD_ARCH, "OLD_MODEL.NUM_CLASSES": 4, "TRAIN.LIST_FILE": lst,
            "TRAIN.ROOT": w.root, "TRAIN.INPUT_SIZE": WORLD_PX, "EVAL.BATCH_SIZE": 4, "EVAL.NUM_WORKERS": 0,
            "EXTRACT.SAVE_DIR": out, "DEVICE": "cpu", **extra}
    return [str(x) for kv in opts.items() for x in kv]


def eval_argv(w, out, **extra):
    opts = {"NEW_MODEL.MODEL_PATH": w.new, "OLD_MODEL.MODEL_PATH": w.old, "NEW_MODEL.ARCH": WORLD_ARCH,
            "OLD_MODEL.ARCH": WORLD_ARCH, "EVAL.DATASET": "tiny",
            "EVAL.ROOT": w.rev, "EVAL.INPUT_SIZE": WORLD_PX, "EVAL.BATCH_SIZE": 4, "EVAL.NUM_WORKERS": 0,
            "EVAL.SAVE_DIR": out, "EVAL.CACHE_DIR": f"{out}/cache", "DEVICE": "cpu", **extra}
    return [str(x) for kv in opts.items() for x in kv]


def make_world(root):
    """The world of the `w` fixture under `root`."""
    world = SimpleNamespace(root=root)
    world.list = make_image_list(str(root), n_classes=4, per_class=2, size=WORLD_PX)
    world.lines = open(world.list).read().splitlines()
    world.old = model_ckpt(root / "old.pth", "old", 4)
    world.new = model_ckpt(root / "new.pth", "new", 4)
    world.radius = stats_file(root / "stats" / "radius.json", range(4))
    world.rev = revisited_set(root / "rev")
    return world


# -- earlier outputs, and the check that a refused run left them alone
def snapshot(folder) -> dict:
    """{relative path: sha256} of every file under `folder` except logs (log.txt, TensorBoard event
    files): a log is appended to."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            if name == "log.txt" or name.startswith("events.out.tfevents"):
                continue
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def refused(result, code, folder, before, *fragments):
    """The run ended with `code` and one line holding every fragment, and `folder` is as it was."""
    line = expect_error(result, code, *fragments)
    after = snapshot(folder)
    assert after == before, f"earlier outputs changed: {sorted(set(after.items()) ^ set(before.items()))}"
    return line


def copy_of(earlier, name, tmp_path):
    """A private copy of one earlier output folder and its snapshot."""
    dst = tmp_path / name
    shutil.copytree(earlier / name, dst)
    return dst, snapshot(dst)


def make_earlier(w, base):
    """Outputs of successful runs in `base` (the `earlier` fixture): a training folder, a statistics
    folder and a test result."""
    import bct.tools.extract_feat
    import bct.tools.test
    import bct.tools.train
    from bct.tools.common import run
    run(bct.tools.train.main, train_argv(w, w.list, base / "train", **{"TRAIN.MAX_ITERS": 1}))
    run(bct.tools.extract_feat.main, extract_argv(w, w.list, base / "stats"))
    run(bct.tools.test.main, eval_argv(w, base / "eval", **{"OLD_MODEL.MODEL_PATH": ""}))
    assert {"model_final.pth", "ckpt_epoch_1.pth", "config.yaml", "last_checkpoint"} <= set(
        os.listdir(base / "train" / WORLD_ARCH / "t"))
    assert {"radius.json", "angle.json", "feats.npy", "labels.npy", "config.yaml"} <= set(os.listdir(base / "stats"))
    assert os.path.isfile(base / "eval" / "tiny.json")
    return base


# -- forked runs: a child of this process (torch and the tools already imported, so it starts at once)
# runs a tool or a script with its output in a file, under a hard time limit
FORK = multiprocessing.get_context("fork")
RUN_LIMIT = 120  # seconds: a hard limit on every process these tests start


def _child(target, argv, log, env, hook):
    """Body of a forked run: output to `log`, one thread, then `target` as the command line runs
    it: a tool name (bct.tools.<name> through bct.tools.common.run) or a script path."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.update(env)
    import torch

    torch.set_num_threads(1)
    if hook is not None:
        hook()
    if target.endswith(".py"):
        sys.argv = [target, *argv]
        runpy.run_path(target, run_name="__main__")
        return
    from bct.tools.common import run

    run(importlib.import_module(f"bct.tools.{target}").main, argv)


def start(target, argv, log, env=None, hook=None):
    proc = FORK.Process(target=_child, args=(target, [str(a) for a in argv], str(log), env or {}, hook))
    proc.start()
    return proc


def finish(proc, limit=RUN_LIMIT):
    """Wait for a forked run; kill it and fail if it outlives `limit`. Returns its exit code
    (negative: the signal that ended it)."""
    proc.join(limit)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        pytest.fail(f"process {proc.pid} still running after {limit} s")
    return proc.exitcode


def wait_for(condition, proc, limit=RUN_LIMIT, poll=0.002):
    """Poll `condition()` until true; False if the process ended first."""
    end = time.time() + limit
    while time.time() < end:
        if condition():
            return True
        if not proc.is_alive():
            return condition()
        time.sleep(poll)
    pytest.fail(f"condition not met within {limit} s")


def text(path):
    return open(path).read() if os.path.isfile(path) else ""


# -- gallery-index tests: small randomly initialised models and a world of them
def save_index_model(path, seed, old="", old_digest="", emb_dim=64, arch="mobilenet_v3_small", size=32,
                     compatible_dims=0):
    """A randomly initialised checkpoint; with `old`, a compatible model trained against that file;
    with `compatible_dims`, a BT2 model whose first compatible_dims of emb_dim meet the old rows."""
    import torch

    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model_from_meta

    torch.manual_seed(seed)
    meta = {"arch": arch, "emb_dim": emb_dim, "num_classes": 3, "role": "new" if old or old_digest else "old",
            "loss_type": "softmax", "old_model_path": old, "train_type": "compatible" if old or old_digest else "base"}
    if old_digest:
        meta["old_model_digest"] = old_digest
    if compatible_dims:
        meta["compatible_dims"] = compatible_dims
    model = build_model_from_meta(meta)
    save_checkpoint(str(path), {"model": model.state_dict(), "meta": meta, "epoch": 0,
                                "config": f"EVAL:\n  INPUT_SIZE: {size}\n  RESIZE: squash\n"})
    return str(path)


def save_transformation(folder, old_path, new_path, old_dim=64, new_dim=64, seed=0, hidden=16, tied=False):
    """A FastFill transformation with fixed random weights, kept as train_transformation keeps one:
    folder/transformation.pth (state dict) beside folder/transformation.json (its key and dims);
    `tied`: every row gets the same uncertainty. Returns (path, the transformation in eval mode)."""
    import torch

    from bct.models.transformation import FastFillTransform, save_transformation
    from bct.utils.fileio import file_digest

    torch.manual_seed(seed)
    h = FastFillTransform(old_dim, new_dim, hidden)
    with torch.no_grad():
        for bn in (h.body[1], h.body[4]):  # running statistics as after training, not the identity
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
        if tied:
            h.log_var.weight.zero_()
    path = save_transformation(h, str(folder), {"old": file_digest(old_path), "new": file_digest(new_path),
                                                "seed": seed})
    return path, h.eval()


def index_world(root, n_classes=3, per_class=6, size=32, models="ABCDE"):
    """A gallery image list under `root` and checkpoints A (old) -> B -> C, D (unrelated), E (32
    dimensions, trained against A), the first `models` of them; feats: A's and B's gallery vectors."""
    from bct.models.loading import load_model
    from bct.index.embed import embed_images

    lst = make_image_list(str(root), n_classes=n_classes, per_class=per_class, size=size)
    m = os.path.join(str(root), "models")
    os.makedirs(m, exist_ok=True)
    world = {"root": str(root), "list": lst}
    specs = {"A": (0, "", 64), "B": (1, "A", 64), "C": (2, "B", 64), "D": (3, "", 64), "E": (4, "A", 32)}
    for name in models:
        seed, old, dim = specs[name]
        world[name] = save_index_model(os.path.join(m, f"{name}.pth"), seed, old=world.get(old, ""), emb_dim=dim,
                                       size=size)
    world["paths"] = [line.split()[0] for line in open(lst)]
    world["feats"] = {k: embed_images(load_model(world[k]), world["paths"], str(root), batch_size=2)
                      for k in "AB"}
    return world


def index_build(world, out, model="A", **kw):
    """Index.build of an `index_world` gallery list with one of its models."""
    from bct.index import Index

    kw.setdefault("batch_size", 4)
    kw.setdefault("workers", 0)
    return Index.build(str(out), world[model], list_path=world["list"], root=world["root"], progress=False, **kw)


def index_tool(argv, capsys):
    """Run `python -m bct.tools.index ARGV` in this process; returns (exit code, stdout, stderr)."""
    from bct.tools import index
    from bct.tools.common import run

    try:
        run(index.main, [str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# -- GLDv2 CSV files: images per landmark id of a small train_clean.csv, random 16-hex image ids
GLD_SIZES = {100: 5, 9: 1, 10: 2, 2: 3, 57: 4, 31: 9, 4: 1, 8000: 12, 12: 6, 77: 3, 5: 2, 6: 7, 13: 4, 21: 1}


def gld_ids(rng, n: int) -> list:
    """n image ids of 16 hex digits drawn from the random.Random `rng`."""
    return ["".join(rng.choice("0123456789abcdef") for _ in range(16)) for _ in range(n)]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# -- the tools: every module of bct.tools but the shared CLI helpers, and those that write a file or a folder
TOOLS = sorted(m.name for m in pkgutil.iter_modules(bct.tools.__path__) if m.name != "common")
WRITERS = {"compare", "compat_matrix", "convert_checkpoint", "export", "extract_feat", "fastfill", "init_model", "make_synthetic",
           "pretrain", "report", "resize_images", "summarize", "test"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a gloo or torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusRejectingTokens:
    """A stand-in for a Milvus server whose authentication refuses every token: a gRPC server on
    127.0.0.1 (port `.port`) that answers every call, pymilvus's first (Connect) included, with
    status UNAUTHENTICATED, as a Milvus server's authentication interceptor does for a wrong
    user:password or API key. A context manager; in this process (its threads serve the calls)."""

    MESSAGE = "auth check failure, please check username and password are correct"

    def __enter__(self):
        from concurrent import futures

        import grpc

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, self.MESSAGE)

        class Deny(grpc.GenericRpcHandler):
            def service(self, details):
                return grpc.unary_unary_rpc_method_handler(deny, request_deserializer=bytes,
                                                           response_serializer=bytes)

        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers((Deny(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=0)
        return False


def own_sh_on_real_set(real_set: str, opts: list, tmp_path, refuse_other: bool = False) -> dict:
    """Run ``PRETRAINED=False bash scripts/own.sh`` on a real labelled set that ships inside a wheel
    (benchmarks/own_real.py's SETS, written as a folder per class under tmp_path) with the overrides
    `opts`, and assert what a user needs of it: the splits chosen for 10 classes, a new self-test and a
    cross-test above the old self-test, no advice printed. With `refuse_other`, a second run with
    another setting is refused with own.sh's own knobs as the advice. Returns the headline."""
    from benchmarks.own_real import SETS
    src = SETS[real_set](str(tmp_path / real_set))
    env = {**os.environ, "PRETRAINED": "False", "PYTHON": sys.executable, "GPUS": "0"}
    env.pop("START", None)
    name = f"pytest_{real_set}_{os.getpid()}"
    out = os.path.join(REPO, "output", "own", name)
    try:
        res = subprocess.run(["bash", "scripts/own.sh", src, name, *opts], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "--query images, --split data chosen for 10 classes" in res.stdout
        with open(os.path.join(out, "eval", "new_advbct", f"{name}.json")) as f:
            h = json.load(f)["headline"]
        assert h["self"] > h["old_self"] and h["cross"] > h["old_self"], h
        assert "BCT criterion not met" not in res.stdout
        if refuse_other:
            other = [*opts, "TRAIN.OPTIMIZER.WEIGHT_DECAY", "0.001"]
            again = subprocess.run(["bash", "scripts/own.sh", src, name, *other], cwd=REPO, env=env,
                                   capture_output=True, text=True, timeout=600)
            assert again.returncode == 2 and "FRESH=1" in again.stderr and "another OUTPUT or TAG" not in again.stderr
        return h
    finally:
        shutil.rmtree(out, ignore_errors=True)
