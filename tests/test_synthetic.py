"""The synthetic landmark benchmark (bct.data.synthetic, bct.tools.make_synthetic): deterministic,
written in the real GLDv2 / revisitop formats, with odd image files, and safe to re-run."""
import csv
import hashlib
import json
import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from bct.data import synthetic
from bct.data.synthetic import META_NAME, REVISITED_SETS, generate_synthetic
from bct.tools import make_synthetic
from bct.utils.errors import BadInputError

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _quiet(*_):
    pass


def _hashes(root) -> dict:
    """sha256 of every file under root except the metadata (it records the generation time)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel != META_NAME:
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def _read_csv(path) -> list:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    meta = generate_synthetic(str(out), seed=3, size="tiny", prepare=False, workers=1, log=_quiet)
    return out, meta


def test_same_seed_gives_identical_files_whatever_the_worker_count(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    generate_synthetic(str(again), seed=3, size="tiny", prepare=False, workers=2, log=_quiet)
    first, second = _hashes(out), _hashes(again)
    assert len(first) > 50 and first == second


def test_gldv2_training_csv_and_files(tiny):
    out, meta = tiny
    rows = _read_csv(out / "GLDv2" / "train_clean.csv")
    assert rows[0] == ["landmark_id", "images"]
    landmark_ids = [int(r[0]) for r in rows[1:]]
    assert landmark_ids != sorted(landmark_ids), "rows must not be in landmark-id order"
    assert len(set(landmark_ids)) == len(landmark_ids)
    sizes = []
    for _, images in rows[1:]:
        ids = images.split(" ")
        sizes.append(len(ids))
        for i in ids:
            assert HEX16.match(i)
            assert (out / "GLDv2" / "train" / i[0] / i[1] / i[2] / f"{i}.jpg").is_file()
    # Every branch of the data split (1, 2-3, >= 4 images per class) is exercised.
    assert {1, 2, 3} <= set(sizes) and max(sizes) >= 4
    assert sum(sizes) == meta["counts"]["train_images"]


def test_gldv2_retrieval_csvs(tiny):
    out, _ = tiny
    gld = out / "GLDv2"
    index = _read_csv(gld / "index.csv")
    assert index[0] == ["id"]
    index_ids = [r[0] for r in index[1:]]
    assert all(HEX16.match(i) for i in index_ids)
    assert all((gld / "index" / i[0] / i[1] / i[2] / f"{i}.jpg").is_file() for i in index_ids)
    solution = _read_csv(gld / "retrieval_solution_v2.1.csv")
    assert solution[0] == ["id", "images", "Usage"]
    assert {r[2] for r in solution[1:]} == {"Public", "Private", "Ignored"}
    answered = set()
    for query, images, usage in solution[1:]:
        assert HEX16.match(query)
        assert (gld / "test" / query[0] / query[1] / query[2] / f"{query}.jpg").is_file()
        if usage == "Ignored":
            assert images == "None"
        else:
            assert images and set(images.split(" ")) <= set(index_ids)
            answered |= set(images.split(" "))
    assert set(index_ids) - answered, "the index must also hold distractor images"


@pytest.mark.parametrize("name", REVISITED_SETS)
def test_revisited_ground_truth(tiny, name):
    out, _ = tiny
    folder = out / "ROxfordParis" / name
    with open(folder / f"gnd_{name}.pkl", "rb") as f:
        gnd = pickle.load(f)
    assert set(gnd) == {"imlist", "qimlist", "gnd"}
    imlist, qimlist = gnd["imlist"], gnd["qimlist"]
    assert len(gnd["gnd"]) == len(qimlist) > 0
    assert not set(imlist) & set(qimlist), "queries are separate files from the database"
    for n in imlist + qimlist:
        assert (folder / "jpg" / f"{n}.jpg").is_file()
    relevant_anywhere = set()
    for q, entry in zip(qimlist, gnd["gnd"]):
        easy, hard, junk = (np.asarray(entry[k]) for k in ("easy", "hard", "junk"))
        both = np.concatenate([easy, hard, junk])
        assert len(easy) and len(both) == len(set(both.tolist()))
        assert both.min() >= 0 and both.max() < len(imlist)
        relevant_anywhere |= set(both.tolist())
        x1, y1, x2, y2 = entry["bbx"]
        w, h = Image.open(folder / "jpg" / f"{q}.jpg").size
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert len(relevant_anywhere) < len(imlist), "the database must hold distractors"


def test_no_test_landmark_is_a_training_landmark(tiny):
    out, meta = tiny
    parts = meta["landmarks"]
    assert set(parts) == {"pretrain", "train", "gldv2_retrieval", *REVISITED_SETS}
    seen = set()
    for lids in parts.values():
        assert not seen & set(lids)
        seen |= set(lids)
    csv_ids = {int(r[0]) for r in _read_csv(out / "GLDv2" / "train_clean.csv")[1:]}
    assert csv_ids == set(parts["train"])


def test_odd_image_files_are_present(tiny):
    out, meta = tiny
    expected = {"grey": ("JPEG", "L"), "cmyk": ("JPEG", "CMYK"), "png_rgba": ("PNG", "RGBA"), "png_p": ("PNG", "P")}
    odd = meta["odd_formats"]
    assert any(p.startswith("GLDv2/train/") for p in odd["grey"])
    assert any(p.startswith("ROxfordParis/roxford5k/") for p in odd["png_rgba"])
    for fmt, (pil_format, mode) in expected.items():
        assert odd[fmt]
        for rel in odd[fmt]:
            assert rel.endswith(".jpg")
            with Image.open(out / rel) as img:
                assert (img.format, img.mode) == (pil_format, mode)
    plain = out / "GLDv2" / "index.csv"
    ids = [r[0] for r in _read_csv(plain)[1:]]
    normal = [i for i in ids if f"GLDv2/index/{i[0]}/{i[1]}/{i[2]}/{i}.jpg" not in sum(odd.values(), [])]
    with Image.open(out / "GLDv2" / "index" / normal[0][0] / normal[0][1] / normal[0][2] / f"{normal[0]}.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB" and max(img.size) == 128


def test_reuse_force_and_refusals(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["--out", str(out), "--size", "tiny", "--seed", "1", "--no-prepare", "--workers", "1"]
    first = make_synthetic.main(argv)
    marker = out / "GLDv2" / "marker.txt"
    marker.write_text("kept unless regenerated")
    # Same arguments: the complete folder is reused, nothing is rewritten.
    assert make_synthetic.main(argv) == first
    assert marker.exists() and "reusing" in capsys.readouterr().out
    # Other arguments on a complete folder: refused without --force.
    with pytest.raises(BadInputError, match="--force"):
        make_synthetic.main(argv[:5] + ["2"] + argv[6:])
    # --force regenerates into a fresh folder.
    make_synthetic.main(argv + ["--force"])
    assert not marker.exists() and (out / META_NAME).is_file()
    # A folder without metadata (foreign, or unfinished) is never overwritten silently.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="no synthetic_meta.json"):
        generate_synthetic(str(foreign), size="tiny", prepare=False, workers=1, log=_quiet)


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []

    def failing(task):
        calls.append(task)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(task)

    real = synthetic._render_task
    monkeypatch.setattr(synthetic, "_render_task", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(str(tmp_path / "syn"), size="tiny", prepare=False, workers=1, log=_quiet)
    assert os.listdir(tmp_path) == []


def test_prepare_writes_the_gldv2_lists(tmp_path):
    pytest.importorskip("bct.data.prepare")
    out = tmp_path / "syn"
    meta = generate_synthetic(str(out), seed=5, size="tiny", prepare=True, workers=1, log=_quiet)
    gld = out / "GLDv2"
    classes = meta["counts"]["train_landmarks"]
    assert meta["prepared"]
    with open(gld / f"label_{classes}.txt") as f:
        assert len(f.read().splitlines()) == meta["counts"]["train_images"]
    for name in ("gldv2_train_old_30percent_class.txt", "gldv2_train_new_100percent_class.txt",
                 "gldv2_train_old_30percent_data.txt", "gldv2_train_new_70percent_data.txt",
                 "gldv2_gallery_list.txt", "gldv2_public_query_gt.txt", "gldv2_private_query_gt.txt"):
        assert (gld / name).stat().st_size > 0, name
    with open(gld / "gldv2_train_old_30percent_class.txt") as f:
        labels = {int(line.split()[1]) for line in f}
    assert labels == set(range(int(classes * 0.3)))
    with open(out / META_NAME) as f:
        assert json.load(f)["prepared"] is True


def test_pretraining_pool_is_a_training_list_of_its_own(tiny):
    """The pool is a plain 'path label' list (labels 0.. in landmark-id order) whose every image exists,
    disjoint from the benchmark's training landmarks (checked above) and of the size the metadata says."""
    out, meta = tiny
    root = out / synthetic.POOL_DIR
    lines = [line.split() for line in open(root / synthetic.POOL_LIST)]
    assert len(lines) == meta["counts"]["pretrain_images"]
    labels = [int(c) for _, c in lines]
    assert labels == sorted(labels) and set(labels) == set(range(meta["counts"]["pretrain_landmarks"]))
    assert all((root / p).is_file() for p, _ in lines)


def test_training_size_does_not_move_the_test_sets(tmp_path):
    """The benchmark's training set has a stream of its own: another training size leaves the
    pretraining pool, the test sets and the validation set byte-identical."""
    import dataclasses
    a = tmp_path / "a"
    generate_synthetic(str(a), size="tiny", prepare=False, workers=1, log=_quiet)
    bigger = dataclasses.replace(synthetic.SIZES["tiny"], train_landmarks=9, train_images=(2, 3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.SIZES, "tiny", bigger)
        b = tmp_path / "b"
        generate_synthetic(str(b), size="tiny", prepare=False, workers=1, log=_quiet)
    def files(root, sub):
        return {p.relative_to(root): p.read_bytes() for p in (root / sub).rglob("*") if p.is_file()}
    for sub in ("ROxfordParis", "GLDv2/index", "GLDv2/test", synthetic.POOL_DIR):
        assert files(a, sub) == files(b, sub), sub
    assert files(a, "GLDv2/train") != files(b, "GLDv2/train")


def test_fractions_add_the_nested_splits_to_a_prepared_folder(tmp_path):
    out = tmp_path / "syn"
    make_synthetic.main(["--out", str(out), "--size", "tiny", "--workers", "1"])
    gld = out / "GLDv2"
    before = {p.name: p.read_bytes() for p in gld.glob("*.txt")}
    meta = make_synthetic.main(["--out", str(out), "--size", "tiny", "--workers", "1", "--fractions", "0.3,0.6,1.0"])
    assert meta["fractions"] == [0.3, 0.6, 1.0]
    assert all((gld / name).read_bytes() == data for name, data in before.items())
    nested = sorted(p.name for p in gld.glob("gldv2_train_nested_*"))
    assert nested == sorted(f"gldv2_train_nested_{p}percent_{s}.txt" for p in (100, 30, 60) for s in ("class", "data"))
    with open(gld / "gldv2_train_nested_60percent_class.txt") as f:
        assert {int(line.split()[1]) for line in f} == set(range(int(meta["counts"]["train_landmarks"] * 0.6)))
