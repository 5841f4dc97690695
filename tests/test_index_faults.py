"""The index under real faults and real concurrency: backfills and builds killed with SIGKILL at
random moments and rerun, searches running while a backfill commits, and a build under torchrun.

Runs are forked from this process (torch and the tool already imported) and enter the tool through
bct.tools.common.run, exactly as `python -m bct.tools.index` does; a hook slows each embedded batch
down so that a kill lands in the middle of the work rather than after it.
"""
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bct.index import Index
from bct.index.layout import read_state
from helpers import RUN_LIMIT, finish, free_port as _free_port, index_build as build, index_world

# Every test here runs real processes and signals them.
pytestmark = pytest.mark.slow

DIM = 64
FORK = multiprocessing.get_context("fork")

LIMIT = RUN_LIMIT


def _child(argv, log, delay):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)
    if delay:
        import bct.index.embed as embed
        real = embed.embed_batches

        def slow(*args, **kwargs):
            for item in real(*args, **kwargs):
                time.sleep(delay)
                yield item
        embed.embed_batches = slow
        import bct.index.build as build_module
        build_module.embed_batches = slow
    from bct.tools import index as index_tool
    from bct.tools.common import run
    run(index_tool.main, [str(a) for a in argv])


def start(argv, log, delay=0.0):
    proc = FORK.Process(target=_child, args=(argv, str(log), delay))
    proc.start()
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return index_world(tmp_path_factory.mktemp("gallery"), n_classes=4, models="AB")


def leftovers(folder):
    """Temporary files and unapplied journal entries."""
    out = []
    for d, _, files in os.walk(folder):
        out += [os.path.join(d, f) for f in files if f.endswith(".tmp") or f.endswith(".deleted")]
    j = os.path.join(folder, "journal")
    return out + ([os.path.join(j, f) for f in os.listdir(j)] if os.path.isdir(j) else [])


def test_backfill_killed_at_random_moments_resumes_with_no_row_lost_or_doubled(world, tmp_path):
    idx = build(world, tmp_path / "idx", batch_size=2)
    built = np.array(idx.vectors)
    n = idx.n
    argv = ["backfill", idx.path, "--model", world["B"], "--batch-size", 2, "--step-rows", 2, "--workers", 0,
            "--nice", 0, "--device", "cpu"]
    rng = random.Random(1234)
    kills = 0
    for attempt in range(4):
        done_before = read_state(idx.path)["counts"].get("1", 0)
        proc = start(argv, tmp_path / f"run{attempt}.txt", delay=0.12)
        # The kill lands at a random moment after the run's first commit (not before its work starts, nor
        # after it ends, whatever the machine's load).
        deadline = time.time() + LIMIT
        while proc.is_alive() and read_state(idx.path)["counts"].get("1", 0) == done_before and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.join()
        # Whatever moment the kill hit: every row is wholly A's or wholly B's, with its own tag.
        check = Index.open(idx.path)
        tags, vecs = np.asarray(check.tags), np.asarray(check.vectors)
        assert np.allclose(vecs[tags == 0], built[tags == 0])
        assert np.allclose(vecs[tags == 1], world["feats"]["B"][tags == 1], atol=1e-5)
        assert sum(read_state(idx.path)["counts"].values()) == n
    assert kills >= 2
    proc = start(argv, tmp_path / "last.txt")
    assert finish(proc) == 0, open(tmp_path / "last.txt").read()[-2000:]
    done = Index.open(idx.path)
    assert (np.asarray(done.tags) == 1).all() and read_state(idx.path)["counts"] == {"1": n}
    np.testing.assert_allclose(np.asarray(done.vectors), world["feats"]["B"], atol=1e-5)
    assert leftovers(idx.path) == []
    # The old rows survived every kill: a rollback brings back the built vectors exactly.
    done.rollback(progress=False)
    np.testing.assert_array_equal(np.asarray(done.vectors), built)


def test_search_during_backfill_sees_whole_rows(world, tmp_path):
    idx = build(world, tmp_path / "idx", batch_size=2)
    built = {0: np.array(idx.vectors), 1: world["feats"]["B"]}
    q = world["feats"]["B"][:5]
    proc = start(["backfill", idx.path, "--model", world["B"], "--batch-size", 2, "--step-rows", 2, "--workers", 0,
                  "--nice", 0, "--device", "cpu"], tmp_path / "bf.txt", delay=0.02)
    seen, searches = set(), 0
    while proc.is_alive() or searches == 0:
        res = idx.search(q, k=idx.n, model=world["B"])
        searches += 1
        expect = np.stack([built[int(c)][r] for c, r in zip(res.models.ravel(), res.rows.ravel())])
        got = np.einsum("qd,qkd->qk", q, expect.reshape(res.rows.shape + (DIM,)))
        np.testing.assert_allclose(res.scores, got, atol=1e-5)
        seen.add(int((res.models[0] == 1).sum()))
    assert finish(proc) == 0, open(tmp_path / "bf.txt").read()[-2000:]
    assert searches >= 3 and len(seen) >= 3, (searches, seen)   # the searches saw the backfill progress


def test_killed_build_resumes_from_its_shards(world, tmp_path):
    out = tmp_path / "idx"
    argv = ["build", "--model", world["A"], "--list", world["list"], "--root", world["root"], "--out", out,
            "--batch-size", 2, "--chunk-rows", 4, "--workers", 0, "--device", "cpu"]
    proc = start(argv, tmp_path / "a.txt", delay=0.05)
    deadline = time.time() + LIMIT
    while time.time() < deadline and proc.is_alive():
        shards = [f for f in os.listdir(out / "build") if f.endswith(".npz")] if (out / "build").is_dir() else []
        if len(shards) >= 2:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    kept = sorted(f for f in os.listdir(out / "build") if f.endswith(".npz"))
    assert 2 <= len(kept) < 6 and not (out / "vectors.npy").exists()
    with pytest.raises(Exception, match="not finished"):
        Index.open(str(out))
    # The rerun embeds only the missing chunks.
    import bct.index.embed as embed
    real, embedded = embed.embed_batches, []

    def counting(model, dataset, batches, *args, **kwargs):
        embedded.extend(i for b in batches for i in b)
        return real(model, dataset, batches, *args, **kwargs)

    embed.embed_batches = counting
    try:
        import bct.index.build as build_module
        build_module.embed_batches = counting
        code = tool_exit(argv)
    finally:
        embed.embed_batches = real
        build_module.embed_batches = real
    assert code == 0
    assert len(embedded) == len(world["paths"]) - 4 * len(kept)
    np.testing.assert_allclose(np.asarray(Index.open(str(out)).vectors), world["feats"]["A"], atol=1e-5)
    assert leftovers(str(out)) == [] and not (out / "build").exists()


def tool_exit(argv) -> int:
    from bct.tools import index as index_tool
    from bct.tools.common import run
    try:
        run(index_tool.main, [str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return 0


@pytest.mark.slow
def test_torchrun_build_writes_one_shard_set_per_rank(world, tmp_path):
    out = tmp_path / "idx"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1", BCT_DIST_TIMEOUT="120")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "bct.tools.index", "build", "--model", world["A"], "--list", world["list"], "--root", world["root"],
           "--out", str(out), "--batch-size", "2", "--chunk-rows", "4", "--workers", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    idx = Index.open(str(out))
    manifest = idx.manifest
    assert manifest["build"]["world_size"] == 2 and len(manifest["build"]["shards"]) == 6
    np.testing.assert_allclose(np.asarray(idx.vectors), world["feats"]["A"], atol=1e-5)
    assert idx.ids(range(idx.n)) == world["paths"]




def _rank_refusing(rank, port, out):
    import torch.distributed as dist

    from bct.index.build import on_every_rank
    from bct.utils.errors import BadInputError
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)

    def connect():
        if rank == 1:
            raise BadInputError("--uri http://db:19530: cannot reach a Milvus server there")
        return "connected"
    try:
        result = on_every_rank(connect)
    except BadInputError as e:
        result = f"error: {e}"
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(result)
    dist.destroy_process_group()


def test_a_rank_that_cannot_connect_stops_every_rank_with_its_line(tmp_path):
    """Rank 0 connected, rank 1 could not: both end with rank 1's one line at once, none waits for the
    distributed timeout."""
    port = _free_port()
    procs = [FORK.Process(target=_rank_refusing, args=(r, port, str(tmp_path))) for r in range(2)]
    t = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(LIMIT)
    assert all(p.exitcode == 0 for p in procs) and time.time() - t < 60
    assert open(tmp_path / "rank1.txt").read() == "error: --uri http://db:19530: cannot reach a Milvus server there"
    assert open(tmp_path / "rank0.txt").read() == \
        "error: rank 1: --uri http://db:19530: cannot reach a Milvus server there"
