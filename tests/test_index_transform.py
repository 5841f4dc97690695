"""FastFill on an index (`index transform`): every old row served as h(old vector) under its own
models-table entry with the uncertainties kept, a backfill by uncertainty after it, rollback bit for
bit, a killed transform rerun, a mismatched transformation refused; and BT2 queries and backfills
through the compatible part of a wider embedding. The files backend, then Milvus Lite."""
import hashlib
import json
import os
import signal
import time

import numpy as np
import pytest

from bct.index import Index
from bct.index.backfill import uncertainty_key
from bct.models.build import compatible_part
from bct.models.loading import load_model
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest
from helpers import finish, index_build as build, index_tool as tool, index_world, save_index_model, \
    save_transformation, start, wait_for

DIM = 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Gallery, A (old) -> B (64 dims), D (unrelated: FastFill's usual new model), F: a BT2 model trained
    against A (96 dims, 64 compatible)."""
    w = index_world(tmp_path_factory.mktemp("gallery"), models="ABD")
    w["F"] = save_index_model(os.path.join(w["root"], "models", "F.pth"), 5, old=w["A"], emb_dim=96,
                              compatible_dims=DIM)
    from bct.index.embed import embed_images
    for name in "DF":
        w["feats"][name] = embed_images(load_model(w[name]), w["paths"], w["root"], batch_size=4)
    return w


def index_digest(folder) -> str:
    h = hashlib.sha256()
    for root, dirs, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if not name.endswith(".lock") and not name.endswith(".intent"):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + f.read())
    return h.hexdigest()


def one_line(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_transform_backfill_by_uncertainty_and_rollback(world, tmp_path, capsys):
    idx = build(world, tmp_path / "idx")
    n, old = idx.n, np.array(idx.vectors)
    path, h = save_transformation(tmp_path / "ff", world["A"], world["D"])
    code, out, err = tool(["transform", idx.path, "--transformation", path, "--model", world["D"], "--step-rows", 5],
                          capsys)
    assert code == 0, err
    assert f"{n} rows this run" in out and "100.00%" in out
    idx = Index.open(idx.path)
    t = idx.model("A-to-D")
    assert (t.digest, t.space, t.old_digest) == (file_digest(path), file_digest(world["D"]), file_digest(world["A"]))
    assert t.lineage[0] == file_digest(world["A"]) and t.code == 1
    assert (np.asarray(idx.tags) == t.code).all()
    est, sigma2 = h.transform(old)
    np.testing.assert_allclose(np.asarray(idx.vectors), est, atol=1e-6)
    np.testing.assert_allclose(idx.store.load_values(uncertainty_key(t.code), n), sigma2, rtol=1e-6)
    st = idx.status()
    assert st["transformed_fraction"] == 1.0 and [m["transformed"] for m in st["models"]] == [False, True]
    code, out, _ = tool(["status", idx.path], capsys)
    assert "A-to-D@" in out and "(transformed)" in out
    # the transformed rows are in the new model's space: D (not compatible with A) searches them, A may not
    hits = idx.search(world["feats"]["D"][:3], k=4, model=world["D"])
    assert not hits.warnings and (hits.models == t.code).all()
    with pytest.raises(BadInputError, match="not in its lineage"):
        idx.search(world["feats"]["A"][:3], k=4, model=world["A"])
    # a rerun has nothing left to do
    assert idx.transform(path, world["D"])["done"] == 0
    # backfill: most uncertain rows first (its default order after a transform)
    res = idx.backfill(world["D"], rows=5, batch_size=4, workers=0, progress=False)
    assert res["order"] == "uncertainty"
    first = np.argsort(-sigma2.astype(np.float64), kind="stable")[:5]
    b = idx.model("D").code
    assert sorted(np.flatnonzero(np.asarray(idx.tags) == b)) == sorted(first)
    np.testing.assert_allclose(np.asarray(idx.vectors)[first], world["feats"]["D"][first], atol=1e-6)
    # random still works on the rest, then a rollback to A restores the built vectors bit for bit
    idx.backfill(world["D"], order="random", rows=3, batch_size=4, workers=0, progress=False)
    assert idx.status()["models"][2]["rows"] == 8
    assert idx.rollback()["model"] == t.tag
    np.testing.assert_allclose(np.asarray(idx.vectors), est, atol=1e-6)
    assert idx.rollback(to="A")["restored"] == n
    np.testing.assert_array_equal(np.asarray(idx.vectors), old)
    assert (np.asarray(idx.tags) == 0).all()


def test_transform_is_atomic_and_resumes(world, tmp_path, monkeypatch):
    from bct.index.backends.files import FilesBackend

    idx = build(world, tmp_path / "idx")
    old = np.array(idx.vectors)
    path, h = save_transformation(tmp_path / "ff", world["A"], world["B"], seed=1)
    commit, calls = FilesBackend.commit, []

    def dying(self, rows, target, vectors):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between two steps
        calls.append(len(rows))
        commit(self, rows, target, vectors)

    monkeypatch.setattr(FilesBackend, "commit", dying)
    with pytest.raises(KeyboardInterrupt):
        idx.transform(path, world["B"], step_rows=4)
    monkeypatch.setattr(FilesBackend, "commit", commit)
    idx = Index.open(idx.path)
    assert idx.store.counts() == {0: idx.n - 8, 1: 8}
    assert idx.transform(path, world["B"], step_rows=4)["done"] == idx.n - 8
    assert idx.store.counts() == {1: idx.n}
    est, sigma2 = h.transform(old)
    np.testing.assert_allclose(np.asarray(idx.vectors), est, atol=1e-6)
    np.testing.assert_allclose(idx.store.load_values(uncertainty_key(1), idx.n), sigma2, rtol=1e-6)
    idx.rollback()
    np.testing.assert_array_equal(np.asarray(idx.vectors), old)


def _slow_commits():
    """In a forked transform: each journaled step takes 50 ms longer, so a kill lands among them."""
    from bct.index import journal

    real = journal.Writer.commit

    def slow(self, *args):
        time.sleep(0.05)
        real(self, *args)
    journal.Writer.commit = slow


@pytest.mark.slow
def test_transform_killed_then_rerun_leaves_every_row_once(world, tmp_path):
    from bct.index.layout import read_state

    idx = build(world, tmp_path / "idx")
    old, n = np.array(idx.vectors), idx.n
    path, h = save_transformation(tmp_path / "ff", world["A"], world["D"])
    est = h.transform(old)[0]
    argv = ["transform", idx.path, "--transformation", path, "--model", world["D"], "--step-rows", 1]
    for attempt, at in enumerate((3, 9)):
        proc = start("index", argv, tmp_path / f"run{attempt}.txt", hook=_slow_commits)
        assert wait_for(lambda: read_state(idx.path)["applied"] >= at, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        tags, vecs = np.asarray(Index.open(idx.path).tags), np.asarray(Index.open(idx.path).vectors)
        assert (tags == 0).any() and (tags == 1).any()  # killed half-way
        assert np.array_equal(vecs[tags == 0], old[tags == 0])
        np.testing.assert_allclose(vecs[tags == 1], est[tags == 1], atol=1e-6)
        assert sum(read_state(idx.path)["counts"].values()) == n
    proc = start("index", argv, tmp_path / "last.txt")
    assert finish(proc) == 0, open(tmp_path / "last.txt").read()[-2000:]
    done = Index.open(idx.path)
    assert read_state(idx.path)["counts"] == {"1": n}
    np.testing.assert_allclose(np.asarray(done.vectors), est, atol=1e-6)
    assert np.isfinite(done.store.load_values(uncertainty_key(1), n)).all()
    done.rollback(progress=False)
    np.testing.assert_array_equal(np.asarray(done.vectors), old)


def test_a_transformation_that_does_not_fit_is_refused_and_nothing_changes(world, tmp_path, capsys):
    idx = build(world, tmp_path / "idx")
    before = index_digest(idx.path)
    cases = [(save_transformation(tmp_path / "other_new", world["A"], world["D"])[0], world["B"], "new model"),
             (save_transformation(tmp_path / "other_old", world["D"], world["B"])[0], world["B"], "old model"),
             (save_transformation(tmp_path / "narrow", world["A"], world["B"], old_dim=32)[0], world["B"], "32-dim"),
             (save_transformation(tmp_path / "wide", world["A"], world["B"], new_dim=32)[0], world["B"], "32-dim")]
    no_record = tmp_path / "bare"
    no_record.mkdir()
    os.link(cases[0][0], no_record / "transformation.pth")
    cases.append((str(no_record / "transformation.pth"), world["B"], "transformation.json"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "transformation.pth").write_bytes(b"not a state dict")
    (broken / "transformation.json").write_text(json.dumps(json.load(open(tmp_path / "wide" / "transformation.json"))))
    cases.append((str(broken / "transformation.pth"), world["B"], "not the transformation"))
    for path, model, words in cases:
        code, _, err = tool(["transform", idx.path, "--transformation", path, "--model", model], capsys)
        one_line(code, err, "--transformation", words)
    code, _, err = tool(["backfill", idx.path, "--model", world["B"], "--order", "uncertainty"], capsys)
    one_line(code, err, "uncertainty", "transform")
    assert index_digest(idx.path) == before


def test_bt2_queries_and_backfill_use_the_compatible_part(world, tmp_path, capsys):
    idx = build(world, tmp_path / "idx")
    wide = world["feats"]["F"]
    assert wide.shape[1] == 96
    narrow = compatible_part(wide, {"emb_dim": 96, "compatible_dims": DIM})
    got = idx.search(wide[:4], k=5, model=world["F"])
    want = idx.search(narrow[:4], k=5, model=world["F"])
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
    code, out, err = tool(["search", idx.path, "--model", world["F"], "--images", world["paths"][0],
                           "--root", world["root"], "--k", 3], capsys)
    assert code == 0, err
    with pytest.raises(BadInputError, match="96 dimensions"):
        idx.search(wide[:4], k=5, force=True)  # no model: nothing says which part to use
    res = idx.backfill(world["F"], fraction=0.5, batch_size=4, workers=0, progress=False)
    rows = np.flatnonzero(np.asarray(idx.tags) == idx.model("F").code)
    assert res["order"] == "random" and len(rows) == round(idx.n / 2)
    np.testing.assert_allclose(np.asarray(idx.vectors)[rows], narrow[rows], atol=1e-6)
    assert idx.search(wide[:2], k=3, model=world["F"]).rows.shape == (2, 3)
    # a BT2 model's own full-width index: its queries are used whole
    full = build(world, tmp_path / "full", model="F")
    assert full.dim == 96
    np.testing.assert_allclose(np.asarray(full.vectors), wide, atol=1e-6)


def test_milvus_transform_backfill_by_uncertainty_and_rollback(world, tmp_path):
    pytest.importorskip("pymilvus", reason="pymilvus is not installed")
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed")
    kw = dict(list_path=world["list"], root=world["root"], batch_size=4, workers=0, progress=False)
    idx = Index.build("gallery", world["A"], backend="milvus", uri=str(tmp_path / "g.db"), **kw)
    try:
        n, old = idx.n, np.array(idx.vectors)
        path, h = save_transformation(tmp_path / "ff", world["A"], world["B"], tied=True)
        res = idx.transform(path, world["B"], step_rows=5)
        t = idx.model(res["model"])
        assert res["done"] == n and t.space == file_digest(world["B"])
        assert (np.asarray(idx.tags) == t.code).all() and idx.status()["transformed_fraction"] == 1.0
        est, sigma2 = h.transform(old)
        np.testing.assert_allclose(np.asarray(idx.vectors), est, atol=1e-6)
        np.testing.assert_allclose(idx.store.load_values(uncertainty_key(t.code), n), sigma2, rtol=1e-6)
        idx.rollback()
        np.testing.assert_array_equal(np.asarray(idx.vectors), old)  # bit for bit
        assert idx.transform(path, world["B"])["done"] == n
        # every row equally uncertain: the order falls back to the rows' order
        res = idx.backfill(world["B"], order="uncertainty", rows=4, batch_size=4, workers=0, progress=False)
        b = idx.model("B").code
        assert res["order"] == "uncertainty"
        assert np.flatnonzero(np.asarray(idx.tags) == b).tolist() == [0, 1, 2, 3]
        with pytest.raises(BadInputError, match="old model"):
            idx.transform(save_transformation(tmp_path / "other", world["D"], world["B"])[0], world["B"])
    finally:
        idx.close()


def test_the_fastfill_tool_trains_what_transform_serves(world, tmp_path, capsys):
    """python -m bct.tools.fastfill trains h for a user's own pair of models; `index transform` serves it;
    the same run again reuses the folder, a run of other settings is refused and changes nothing."""
    from bct.tools import fastfill
    argv = ["--old-model", world["A"], "--model", world["D"], "--out", str(tmp_path / "ff"),
            "TRAIN.LIST_FILE", world["list"], "TRAIN.ROOT", world["root"], "FASTFILL.EPOCHS", "2",
            "FASTFILL.HIDDEN", "16", "EVAL.INPUT_SIZE", "32", "EVAL.NUM_WORKERS", "0", "DEVICE", "cpu"]
    path = fastfill.main(argv)
    digest = file_digest(path)
    idx = build(world, tmp_path / "idx")
    code, out, err = tool(["transform", idx.path, "--transformation", path, "--model", world["D"]], capsys)
    assert code == 0, err
    assert (np.asarray(Index.open(idx.path).tags) != 0).all()  # every old row now serves h(old vector)
    assert fastfill.main(argv) == path and file_digest(path) == digest
    with pytest.raises(BadInputError, match="holds the transformation of other models, list or settings"):
        fastfill.main(argv + ["FASTFILL.EPOCHS", "3"])  # the later value of a key wins
    assert file_digest(path) == digest
