"""The gallery index (bct.index, python -m bct.tools.index): build, search, backfill, status,
rollback and prune round trips, the compatibility check along a chain of generations, the curve of
a real index against the evaluation's partial backfill, approximate search, and bad inputs."""
import errno
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import bct
from bct.models.loading import load_model
from bct.index import Index
from bct.index.layout import WriterLock
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest
from helpers import index_build as build, index_tool as tool, index_world, make_image_list, save_index_model as save_model

ARCH = "mobilenet_v3_small"
SIZE = 32
DIM = 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A gallery of 18 images and models A (old) -> B -> C, D (unrelated), E (other embedding size)."""
    return index_world(tmp_path_factory.mktemp("gallery"), size=SIZE)


def files_digest(folder, manifest: bool = True) -> str:
    """Digest of what a search reads: vectors, tags, ids, state and (optionally) the manifest."""
    h = hashlib.sha256()
    for name in ("vectors.npy", "tags.npy", "state.json", "ids.txt") + (("manifest.json",) if manifest else ()):
        with open(os.path.join(folder, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()




def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------------

def test_build_search_backfill_status_rollback_prune(world, tmp_path):
    idx = build(world, tmp_path / "idx", chunk_rows=8)
    n = len(world["paths"])
    assert idx.n == n and idx.dim == DIM
    assert idx.ids(range(n)) == world["paths"]
    np.testing.assert_allclose(np.asarray(idx.vectors), world["feats"]["A"], atol=1e-6)
    built_vectors = np.array(idx.vectors)
    st = idx.status()
    assert [(m["name"], m["rows"], m["fraction"]) for m in st["models"]] == [("A", n, 1.0)]

    # Search with the new model: one pass over the rows, ids and the model of each row.
    res = idx.search(world["paths"][:2], k=5, model=world["B"], root=world["root"])
    assert res.rows.shape == (2, 5) and res.ids[0][0] == world["paths"][int(res.rows[0, 0])]
    assert {res.tags[c] for c in res.models.ravel()} == {idx.model("A").tag}
    assert np.all(np.diff(res.scores, axis=1) <= 0)

    # Half the rows, in the evaluation's seeded order: exactly those rows carry B's vectors.
    out = idx.backfill(world["B"], fraction=0.5, batch_size=4, workers=0, step_rows=4, progress=False)
    assert out["done"] == round(0.5 * n) and out["rows_of_model"] == round(0.5 * n)
    refreshed = np.zeros(n, bool)
    refreshed[np.random.default_rng(0).permutation(n)[:round(0.5 * n)]] = True
    tags = np.asarray(idx.tags)
    assert np.array_equal(tags == idx.model("B").code, refreshed)
    expected = np.where(refreshed[:, None], world["feats"]["B"], world["feats"]["A"])
    np.testing.assert_allclose(np.asarray(idx.vectors), expected, atol=1e-6)
    assert {m["name"]: m["rows"] for m in idx.status()["models"]} == {"A": n - round(0.5 * n), "B": round(0.5 * n)}

    # Mixed rows are searched in one pass; each result row carries its own model.
    res = idx.search(world["feats"]["B"][:3], k=n, model=world["B"])
    assert sorted(res.rows[0].tolist()) == list(range(n))
    assert np.array_equal(res.models, tags[res.rows])

    # Rollback restores A's vectors bit for bit; a second backfill takes B's rows from the store.
    before = np.array(idx.vectors)
    rb = idx.rollback(progress=False)
    assert rb["model"] == idx.model("A").tag and rb["restored"] == round(0.5 * n)
    np.testing.assert_array_equal(np.asarray(idx.vectors), built_vectors)
    assert not (np.asarray(idx.tags) != 0).any()
    out = idx.backfill(world["B"], fraction=0.5, batch_size=4, workers=0, progress=False)
    assert out["reused"] == round(0.5 * n) and out["done"] == round(0.5 * n)
    np.testing.assert_array_equal(np.asarray(idx.vectors), before)

    # Until done; prune drops A's stored rows (and B's, which only repeat the rows B serves), after
    # which rollback is refused with one line.
    idx.backfill(world["B"], batch_size=4, workers=0, progress=False)
    np.testing.assert_allclose(np.asarray(idx.vectors), world["feats"]["B"], atol=1e-6)
    assert idx.status()["models"][0]["stored_rows"] == n
    pruned = idx.prune()
    assert pruned["pruned"] == [idx.model("A").tag, idx.model("B").tag] and pruned["freed_bytes"] > n * DIM * 4
    np.testing.assert_allclose(np.asarray(idx.vectors), world["feats"]["B"], atol=1e-6)
    with pytest.raises(BadInputError, match="no stored rows of A@"):
        idx.rollback("A")
    assert not os.listdir(os.path.join(idx.path, "journal"))


def test_tool_round_trip_and_outputs(world, tmp_path, capsys):
    out = tmp_path / "idx"
    gallery = ["--list", world["list"], "--root", world["root"]]
    code, text, _ = tool(["build", "--model", world["A"], *gallery, "--out", out, "--batch-size", 4, "--workers", 0,
                          "--device", "cpu"], capsys)
    assert code == 0 and "18 rows x 64 embedded by A@" in text
    # The same build again reuses the finished index.
    code, text, _ = tool(["build", "--model", world["A"], *gallery, "--out", out, "--workers", 0, "--batch-size", 4],
                         capsys)
    assert code == 0 and "nothing to do" in text
    code, text, _ = tool(["backfill", out, "--model", world["B"], "--rows", 5, "--workers", 0, "--nice", 0,
                          "--device", "cpu"], capsys)
    assert code == 0 and "5 rows this run" in text
    code, text, _ = tool(["status", out], capsys)
    assert "A@" in text and "72.22% (13 rows)" in text and "27.78% (5 rows)" in text
    code, text, _ = tool(["status", out, "--json"], capsys)
    assert json.loads(text)["models"][1]["rows"] == 5
    csv_path, json_path = tmp_path / "r.csv", tmp_path / "r.json"
    queries = ",".join(world["paths"][:2])
    code, _, _ = tool(["search", out, "--model", world["C"], "--images", queries, "--root", world["root"], "--k", 3,
                       "--out", csv_path], capsys)
    assert code == 0
    rows = open(csv_path).read().splitlines()
    assert rows[0] == "query,rank,id,row,score,model" and len(rows) == 1 + 2 * 3
    np.save(tmp_path / "q.npy", world["feats"]["B"][:4])
    code, _, _ = tool(["search", out, "--model", world["B"], "--vectors", tmp_path / "q.npy", "--k", 2,
                       "--out", json_path], capsys)
    got = json.load(open(json_path))
    assert code == 0 and len(got) == 4 and len(got[0]["results"]) == 2
    assert got[0]["results"][0]["id"] in world["paths"]
    code, text, _ = tool(["rollback", out], capsys)
    assert code == 0 and "5 rows restored" in text


def test_python_api_matches_the_tools(world, tmp_path):
    """bct.load_model says how to feed the model; embedding by hand gives the index's rows."""
    from PIL import Image

    assert bct.Index is Index
    model = bct.load_model(world["A"])
    assert (model.input_size, model.resize) == (SIZE, "squash")
    assert model.mean == [0.485, 0.456, 0.406] and model.std == [0.229, 0.224, 0.225]
    idx = build(world, tmp_path / "idx")
    img = Image.open(os.path.join(world["root"], world["paths"][3])).convert("RGB")
    by_hand = model.embed(model.transform(img)[None]).numpy()
    np.testing.assert_allclose(by_hand[0], idx.vectors[3], atol=1e-5)
    assert idx.search(by_hand, k=1, model=model).rows[0, 0] == 3


# ------------------------------------------------------------------------------------------------
# Compatibility
# ------------------------------------------------------------------------------------------------

def test_compatibility_follows_the_chain_and_force_overrides(world, tmp_path, capsys):
    idx = build(world, tmp_path / "idx")
    q = world["feats"]["B"][:2]
    idx.search(q, k=2, model=world["B"])          # B was trained against A
    idx.search(q, k=2, model=world["C"])          # C -> B -> A, through the checkpoint files
    with pytest.raises(BadInputError, match="D@.* is not compatible with the index rows of A@"):
        idx.search(q, k=2, model=world["D"])
    assert idx.search(q, k=2, model=world["D"], force=True).warnings
    idx.backfill(world["B"], rows=4, batch_size=4, workers=0, progress=False)
    with pytest.raises(BadInputError, match="A@.* is not compatible with the index rows of B@"):
        idx.search(q, k=2, model=world["A"])      # an old model does not read its successor's rows
    # The manifest keeps B's lineage: with B's file gone, C (which records B's digest) still searches.
    moved = tmp_path / "models"
    shutil.copytree(os.path.dirname(world["A"]), moved)
    c2 = save_model(moved / "C2.pth", 2, old=str(moved / "B.pth"), old_digest=file_digest(str(moved / "B.pth")))
    os.remove(moved / "B.pth")
    os.remove(moved / "A.pth")
    assert idx.search(q, k=2, model=c2).rows.shape == (1 * 2, 2)
    # A model whose old model cannot be found and whose digest is not recorded: unknown, refused.
    orphan = save_model(tmp_path / "orphan.pth", 5, old=str(tmp_path / "gone.pth"))
    with pytest.raises(BadInputError, match="cannot tell whether model orphan@.*gone.pth is not found"):
        idx.search(q, k=2, model=orphan)
    code, _, err = tool(["search", idx.path, "--model", world["D"], "--vectors", _npy(tmp_path, q)], capsys)
    assert code == 2 and "--force" in one_error_line(err)
    code, text, err = tool(["search", idx.path, "--model", world["D"], "--vectors", _npy(tmp_path, q), "--force",
                            "--k", 1], capsys)
    assert code == 0 and "warning:" in err and len(text.splitlines()) == 2
    # Another embedding size is refused even with --force.
    code, _, err = tool(["search", idx.path, "--model", world["E"], "--vectors", _npy(tmp_path, q[:, :32]), "--force"],
                        capsys)
    assert code == 2 and "32 dimensions" in one_error_line(err)


def _npy(tmp_path, arr):
    path = tmp_path / f"q{arr.shape[1]}.npy"
    np.save(path, arr)
    return path


# ------------------------------------------------------------------------------------------------
# The curve of a real index equals the evaluation's partial backfill
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from bct.data.synthetic import generate_synthetic
    out = tmp_path_factory.mktemp("syn") / "tiny"
    generate_synthetic(str(out), seed=0, size="tiny", prepare=False, workers=1, log=lambda *_: None)
    return out


def test_backfill_curve_equals_the_evaluation(synthetic, world, tmp_path):
    from bct.config import load_cfg
    from bct.data.revisited import load_revisited
    from bct.evaluation.metrics import compute_map_revisited
    from bct.evaluation import sets

    root = str(synthetic / "ROxfordParis")
    cfg = load_cfg("", ["EVAL.INPUT_SIZE", str(SIZE), "EVAL.NUM_WORKERS", "0", "EVAL.USE_CACHE", "False",
                        "EVAL.BACKFILL_SEED", "3", "DEVICE", "cpu"])
    old, new = load_model(world["A"]), load_model(world["B"])
    bset = sets.build_set("roxford5k", root, cfg, family="revisited")
    expected = sets.evaluate_models(cfg, bset, new, old, with_old_self=False, use_cache=False,
                                    backfill=True)["backfill_detail"]
    data = load_revisited("roxford5k", root)
    jpg = os.path.join(root, "roxford5k", "jpg")
    lst = tmp_path / "gallery.txt"
    lst.write_text("".join(f"{os.path.relpath(p, jpg)} 0\n" for p in data.db_paths))
    idx = Index.build(str(tmp_path / "idx"), world["A"], list_path=str(lst), root=jpg, batch_size=4, workers=0,
                      progress=False)
    protocols = {level: data.protocol(level) for level in ("easy", "medium", "hard")}
    curve = []
    for ratio in cfg.EVAL.BACKFILL_RATIOS:
        idx.backfill(world["B"], fraction=ratio, seed=cfg.EVAL.BACKFILL_SEED, batch_size=4, workers=0, progress=False)
        res = idx.search(data.query_paths, k=idx.n, model=world["B"])
        scores = compute_map_revisited(res.rows.T, protocols)
        curve.append({"ratio": float(ratio), **{lv: scores[lv]["map"] for lv in protocols}})
    assert [c["ratio"] for c in curve] == [e["ratio"] for e in expected] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for got, want in zip(curve, expected):
        for level in protocols:
            assert got[level] == pytest.approx(want[level], abs=1e-6), (got, want)
    assert len({round(c["medium"], 6) for c in curve}) > 1, "the models must differ for the test to mean anything"


# ------------------------------------------------------------------------------------------------
# Approximate search
# ------------------------------------------------------------------------------------------------

def test_ann_candidates_are_rescored_on_current_rows(world, tmp_path, capsys):
    idx = build(world, tmp_path / "idx")
    meta = idx.build_ann("ivf", nlist=2)
    assert meta["nlist"] == 2
    q = world["feats"]["B"][:4]
    exact = idx.search(q, k=3, model=world["B"])
    approx = idx.search(q, k=3, model=world["B"], ann="ivf", nprobe=2)   # every list: exact
    np.testing.assert_array_equal(approx.rows, exact.rows)
    idx.backfill(world["B"], rows=9, batch_size=4, workers=0, progress=False)
    approx = idx.search(q, k=3, model=world["B"], ann="ivf", nprobe=2)
    current = np.asarray(idx.vectors)
    np.testing.assert_allclose(approx.scores, np.einsum("qd,qkd->qk", q, current[approx.rows]), atol=1e-6)
    assert np.array_equal(approx.models, np.asarray(idx.tags)[approx.rows])
    code, text, _ = tool(["status", idx.path], capsys)
    assert "approximate index ivf" in text
    code, _, err = tool(["search", idx.path, "--model", world["B"], "--vectors", _npy(tmp_path, q), "--ann", "hnsw"],
                        capsys)
    assert code == 2 and "no approximate index 'hnsw'" in one_error_line(err)


# ------------------------------------------------------------------------------------------------
# Bad input: one line, nothing lost
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def built(world, tmp_path):
    idx = build(world, tmp_path / "idx")
    idx.backfill(world["B"], rows=4, batch_size=4, workers=0, progress=False)
    return idx


def test_bad_inputs_one_line_and_index_unchanged(world, built, tmp_path, capsys):
    idx, path = built, built.path
    before = files_digest(path)
    other = make_image_list(str(tmp_path / "other"), n_classes=3, per_class=6, size=SIZE, seed=1, first_label=5)
    q = _npy(tmp_path, world["feats"]["B"][:2])
    cases = [
        (["backfill", path, "--model", world["B"], "--list", other, "--root", tmp_path / "other"],
         "img/c5_0.jpg but row 0"),
        (["backfill", path, "--model", world["E"]], "32 dimensions"),
        (["backfill", path, "--model", world["B"], "--rows", 2, "--fraction", 0.5], "not both"),
        (["backfill", path, "--model", world["B"], "--fraction", 1.5], "--fraction: 1.5 is not a fraction in (0, 1]"),
        (["backfill", path, "--model", world["B"], "--order", "best"], "--order: invalid choice: 'best'"),
        (["backfill", path, "--model", world["D"]], "not compatible"),
        (["backfill", path, "--model", tmp_path / "missing.pth"], "missing.pth"),
        (["search", path, "--vectors", q], "say which model"),
        (["search", path, "--model", world["B"], "--vectors", tmp_path / "nothing.npy"], "nothing.npy does not exist"),
        (["search", path, "--model", world["B"]], "give the queries one way"),
        (["search", path, "--model", world["B"], "--images", "img/none.jpg", "--root", world["root"]], "none.jpg"),
        (["search", tmp_path, "--model", world["B"], "--vectors", q], "is not a bct index"),
        (["rollback", path, "--to", "Z"], "matches no model"),
        (["build", "--model", world["B"], "--list", world["list"], "--root", world["root"], "--out", path],
         "already holds a finished index of another"),
        (["build", "--model", world["A"], "--list", world["list"], "--out", tmp_path / "other"], "not empty"),
    ]
    for argv, expected in cases:
        code, _, err = tool(argv + (["--workers", 0] if argv[0] in ("backfill", "build") else []), capsys)
        assert code == 2, (argv, err)
        assert expected in one_error_line(err), (argv, err)
    assert files_digest(path) == before
    # A folder of another format version.
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    bad = tmp_path / "v2"
    shutil.copytree(path, bad)
    json.dump(dict(manifest, version=2), open(bad / "manifest.json", "w"))
    code, _, err = tool(["status", bad], capsys)
    assert code == 2 and "index format version 2, but this bct reads version 1" in one_error_line(err)


def test_numbers_that_cannot_be_right_are_refused(world, built, tmp_path, capsys):
    """Issue-28 examples: --seed -1, NaN/inf or all-zero rows, --out over the query file, a name
    that matches two models. One line each, nothing written, nothing changed."""
    path = built.path
    before = files_digest(path)
    code, _, err = tool(["backfill", path, "--model", world["C"], "--seed", -1, "--workers", 0], capsys)
    assert code == 2 and "--seed" in one_error_line(err)
    assert files_digest(path) == before  # C was not added to the models table
    with pytest.raises(BadInputError, match="--seed must be a whole number"):
        built.backfill(world["C"], seed=-1, workers=0, progress=False)
    assert files_digest(path) == before
    q = _npy(tmp_path, world["feats"]["B"][:2])
    q_bytes = open(q, "rb").read()
    code, _, err = tool(["search", path, "--model", world["B"], "--vectors", q, "--out", q], capsys)
    assert code == 2 and "is the input of --vectors" in one_error_line(err) and open(q, "rb").read() == q_bytes
    code, _, err = tool(["search", path, "--model", world["B"], "--vectors", q, "--out", os.path.join(path, "r.csv")],
                        capsys)
    assert code == 2 and "inside the index" in one_error_line(err)
    nan = np.array(world["feats"]["A"])
    nan[3, 5] = np.nan
    queries = np.array(world["feats"]["B"][:2])
    queries[1, 0] = np.inf
    for vectors, expected in ((nan, "NaN or inf"), (np.zeros_like(nan), "all zeros")):
        with pytest.raises(BadInputError, match=expected):
            Index.from_vectors(str(tmp_path / "v"), vectors, world["paths"], world["A"])
        assert not (tmp_path / "v").exists()
    with pytest.raises(BadInputError, match="NaN or inf"):
        built.search(queries, k=3, model=world["B"])
    twin = tmp_path / "twin"
    twin.mkdir()
    save_model(twin / "A.pth", 9, old=world["A"])  # another model named A, compatible with A
    built.backfill(str(twin / "A.pth"), rows=1, batch_size=4, workers=0, progress=False, force=True)
    with pytest.raises(BadInputError, match="matches 2 models .*give the tag"):
        built.model("A")


def test_damaged_state_is_named_and_a_read_only_index_still_serves(world, built, tmp_path, capsys, monkeypatch):
    """Issue-28 item 4: manifest, state and journal entries carry a sha256; damage is one line naming
    the file; an entry never applied is dropped and reported and the writer continues."""
    for name, damage in (("manifest.json", lambda t: t[: len(t) // 2]),
                         ("state.json", lambda t: t.replace('"applied": 1', '"applied": 7'))):
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(built.path, copy)
        text = open(copy / name).read()
        open(copy / name, "w").write(damage(text))
        code, _, err = tool(["status", copy], capsys)
        assert code == 2 and name in one_error_line(err) and "restore this file" in err, err
    # A committed entry that was never applied, then damaged: dropped, reported, the backfill goes on.
    import bct.index.journal as journal
    real = journal.apply_pending
    calls = []

    def die_after_commit(folder, *a, **k):
        calls.append(folder)
        if len(calls) > 1:
            raise RuntimeError("killed after the commit")
        return real(folder, *a, **k)

    monkeypatch.setattr(journal, "apply_pending", die_after_commit)
    with pytest.raises(RuntimeError):
        built.backfill(world["B"], rows=2, batch_size=4, workers=0, progress=False)
    monkeypatch.setattr(journal, "apply_pending", real)
    entries = [f for f in os.listdir(os.path.join(built.path, "journal")) if f.endswith(".npz")]
    assert len(entries) == 1
    entry = os.path.join(built.path, "journal", entries[0])
    data = open(entry, "rb").read()
    open(entry, "wb").write(data[: len(data) // 2])
    res = built.backfill(world["B"], batch_size=4, workers=0, progress=False)
    assert "damaged and was never applied: dropped" in capsys.readouterr().err
    assert res["fraction"] == 1.0 and (np.asarray(built.tags) == built.model("B").code).all()
    # A read-only index (no file may be created or opened for writing) is searched and its status read.
    real_open = os.open

    def read_only(path, flags, *a):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Read-only file system", path)
        return real_open(path, flags, *a)

    before = files_digest(built.path)
    monkeypatch.setattr(os, "open", read_only)
    ro = Index.open(built.path)
    assert ro.search(world["feats"]["B"][:2], k=3, model=world["B"]).rows.shape == (2, 3)
    assert ro.status()["models"][1]["rows"] == ro.n
    monkeypatch.setattr(os, "open", real_open)
    assert files_digest(built.path) == before


def test_two_backfills_at_once_are_refused(world, built, capsys):
    before = files_digest(built.path)
    with WriterLock(built.path, "backfill"):
        code, _, err = tool(["backfill", built.path, "--model", world["B"], "--workers", 0], capsys)
    assert code == 2 and "one backfill at a time" in one_error_line(err)
    assert files_digest(built.path) == before
    # A search is not blocked by a writer.
    with WriterLock(built.path, "backfill"):
        assert built.search(world["feats"]["B"][:1], k=2, model=world["B"]).rows.shape == (1, 2)


def test_full_disk_loses_nothing(world, tmp_path, monkeypatch, capsys):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    built = build(world, tmp_path / "idx")
    before = files_digest(built.path, manifest=False)
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    # The backfill's first step needs a store file for the old model's vectors: no space. (The
    # manifest has learnt of model B by then; every row is still A's.)
    code, _, err = tool(["backfill", built.path, "--model", world["B"], "--workers", 0, "--nice", 0], capsys)
    assert code == 2 and "no space left on the device" in one_error_line(err)
    assert files_digest(built.path, manifest=False) == before
    # A build that runs out of space while merging keeps its shards; the rerun finishes it.
    out = tmp_path / "full"
    argv = ["build", "--model", world["A"], "--list", world["list"], "--root", world["root"], "--out", out,
            "--workers", 0, "--batch-size", 4, "--chunk-rows", 8]
    code, _, err = tool(argv, capsys)
    assert code == 2 and "vectors.npy: no space left on the device" in one_error_line(err)
    assert len(os.listdir(out / "build")) == 3
    monkeypatch.undo()
    code, _, _ = tool(argv, capsys)
    assert code == 0
    np.testing.assert_allclose(np.asarray(Index.open(str(out)).vectors), world["feats"]["A"], atol=1e-6)
    code, _, _ = tool(["backfill", built.path, "--model", world["B"], "--workers", 0, "--nice", 0], capsys)
    assert code == 0 and Index.open(built.path).status()["models"][1]["fraction"] == 1.0


def test_interrupted_apply_is_repaired_by_the_next_search(world, built, monkeypatch):
    """A writer killed in the middle of an apply leaves rows half moved; a search replays the
    journal entry first, so it never sees a row whose vector and tag disagree."""
    import bct.index.journal as journal
    from bct.index.layout import read_state, write_state

    idx = built
    rows = np.flatnonzero(np.asarray(idx.tags) == 0)[:4]
    new = world["feats"]["B"][rows]
    with WriterLock(idx.path, "backfill"):
        writer = journal.Writer(idx.path, idx.n, idx.dim)
        state = read_state(idx.path)
        with monkeypatch.context() as m:
            m.setattr(journal, "apply_pending", lambda *a, **k: 0)
            writer.commit(rows, 1, new)                      # committed, not applied
        assert os.path.isfile(journal.journal_path(idx.path, state["applied"] + 1))
        # What a kill half-way through the apply leaves: the marker, two of four vectors, no tags.
        write_state(idx.path, dict(state, applying=state["applied"] + 1))
        writer.vectors[rows[:2]] = new[:2]
        writer.vectors.flush()
    res = idx.search(world["feats"]["B"][:3], k=idx.n, model=world["B"])
    vecs = {0: world["feats"]["A"], 1: world["feats"]["B"]}
    for q in range(3):
        for r, code, score in zip(res.rows[q], res.models[q], res.scores[q]):
            assert score == pytest.approx(float(vecs[int(code)][r] @ world["feats"]["B"][q]), abs=1e-5)
    state = read_state(idx.path)
    assert state["applying"] is None and state["counts"] == {"0": idx.n - 8, "1": 8}
    assert int((np.asarray(idx.tags) == 1).sum()) == 8


def test_a_waiting_writer_goes_before_new_searches(tmp_path):
    """Searches share rows.lock; a step's apply waits only for the searches already running, not for
    the ones that start after it asked (otherwise back-to-back searches could starve a backfill)."""
    import threading
    import time

    from bct.index.layout import RowsLock

    order = []
    first = RowsLock(str(tmp_path), exclusive=False).__enter__()

    def take(exclusive, name):
        with RowsLock(str(tmp_path), exclusive=exclusive):
            order.append(name)

    writer = threading.Thread(target=take, args=(True, "writer"))
    writer.start()
    time.sleep(0.2)                     # the writer now waits for the running search
    reader = threading.Thread(target=take, args=(False, "new search"))
    reader.start()
    time.sleep(0.2)
    assert order == []                  # the new search queues behind the writer
    first.__exit__(None, None, None)
    writer.join(5)
    reader.join(5)
    assert order == ["writer", "new search"]
