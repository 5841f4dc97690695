"""GLDv2 preparation (Dataset.md) on fabricated CSV files: every output file is compared line by
line with an independent computation that uses NumPy's legacy global generator the way the
reference does (np.random.seed / np.arange / np.random.shuffle)."""
import hashlib
import json
import random

import numpy as np
import pytest

from bct.data.prepare import prepare_gldv2
from bct.tools import prepare_gldv2 as tool
from bct.utils.errors import BadInputError
from helpers import GLD_SIZES as SIZES, gld_ids as _ids, write_csv as _write_csv

# landmark id -> number of images; ids deliberately unsorted, with 9 < 10 < 100 (numeric order
# differs from string order) and class sizes 1, 2, 3 and >= 4.


def _path(folder, image_id):
    return f"{folder}/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


@pytest.fixture()
def gld(tmp_path):
    """A GLDv2 root with train_clean.csv, index.csv and retrieval_solution_v2.1.csv."""
    rng = random.Random(0)
    train = {lm: _ids(rng, n) for lm, n in SIZES.items()}
    _write_csv(tmp_path / "train_clean.csv", ["landmark_id", "images"],
               [[lm, " ".join(ids)] for lm, ids in train.items()])
    index = _ids(rng, 8)
    _write_csv(tmp_path / "index.csv", ["id"], [[i] for i in index])
    queries = _ids(rng, 6)
    solution = [
        [queries[0], f"{index[3]} {index[0]}", "Public"],
        [queries[1], index[7], "Private"],
        [queries[2], "None", "Ignored"],
        [queries[3], f"{index[1]} {index[2]} {index[5]}", "Private"],
        [queries[4], index[6], "Public"],
        [queries[5], index[4], "Private"],
    ]
    _write_csv(tmp_path / "retrieval_solution_v2.1.csv", ["id", "images", "Usage"], solution)
    return {"root": tmp_path, "train": train, "index": index, "solution": solution}


def _expected_splits(classes: list, ratio: float, seed: int) -> dict:
    """classes[label] = list of image paths in input order. Returns the expected file contents."""
    num = len(classes)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        ids = np.arange(num)
        np.random.shuffle(ids)
        old = set(ids[: int(num * ratio)].tolist())
        old_sorted = sorted(old)
        new_sorted = sorted(set(range(num)) - old)
        relabel = {c: k for k, c in enumerate(old_sorted)}
        relabel.update({c: len(old_sorted) + k for k, c in enumerate(new_sorted)})
        class_old = [f"{p} {relabel[c]}\n" for c in range(num) if c in old for p in classes[c]]
        class_new = [f"{p} {relabel[c]}\n" for c in range(num) for p in classes[c]]
        data_old, data_new = [], []
        for c, paths in enumerate(classes):
            n = len(paths)
            if n == 1:
                data_old.append(f"{paths[0]} {c}\n")
                data_new.append(f"{paths[0]} {c}\n")
            elif n < 4:
                data_old.append(f"{paths[0]} {c}\n")
                data_new.extend(f"{p} {c}\n" for p in paths[1:])
            else:
                np.random.seed(seed + c)
                a = np.arange(n)
                np.random.shuffle(a)
                chosen = set(a[: int(n * ratio)].tolist())
                data_old.extend(f"{p} {c}\n" for j, p in enumerate(paths) if j in chosen)
                data_new.extend(f"{p} {c}\n" for j, p in enumerate(paths) if j not in chosen)
    finally:
        np.random.set_state(state)
    return {"class_old": "".join(class_old), "class_new": "".join(class_new),
            "data_old": "".join(data_old), "data_new": "".join(data_new), "n_old": len(old_sorted)}


def _read(root, name):
    return (root / name).read_text()


def test_prepare_reproduces_the_reference_splits_and_lists(gld):
    root, train = gld["root"], gld["train"]
    state = np.random.get_state()
    manifest = prepare_gldv2(str(root))
    assert np.array_equal(np.random.get_state()[1], state[1]), "the caller's global NumPy state changed"

    landmarks = sorted(train)
    classes = [[_path("train", i) for i in train[lm]] for lm in landmarks]
    num = len(classes)
    assert _read(root, f"label_{num}.txt") == "".join(f"{p} {c}\n" for c, ps in enumerate(classes) for p in ps)

    exp = _expected_splits(classes, 0.3, 666)
    assert exp["n_old"] == int(num * 0.3) == manifest["counts"]["old_classes"]
    assert _read(root, "gldv2_train_old_30percent_class.txt") == exp["class_old"]
    assert _read(root, "gldv2_train_new_100percent_class.txt") == exp["class_new"]
    assert _read(root, "gldv2_train_old_30percent_data.txt") == exp["data_old"]
    assert _read(root, "gldv2_train_new_70percent_data.txt") == exp["data_new"]

    # Old class ids are exactly 0..N_old-1, new class ids N_old..C-1, old ones a subset of new.
    old_labels = {int(l.split()[1]) for l in exp["class_old"].splitlines()}
    assert old_labels == set(range(exp["n_old"]))
    assert {int(l.split()[1]) for l in exp["class_new"].splitlines()} == set(range(num))
    # The 1-image classes are in both data lists; a 2-image class gives its first image to old.
    single = _path("train", train[9][0])
    assert f"{single} " in exp["data_old"] and f"{single} " in exp["data_new"]
    two = [_path("train", i) for i in train[10]]
    assert f"{two[0]} " in exp["data_old"] and f"{two[1]} " in exp["data_new"] and f"{two[1]} " not in exp["data_old"]

    index = gld["index"]
    assert _read(root, "gldv2_gallery_list.txt") == "".join(f"{_path('index', i)} {r}\n" for r, i in enumerate(index))
    row = {i: r for r, i in enumerate(index)}
    for usage, title in (("public", "Public"), ("private", "Private")):
        rows = [s for s in gld["solution"] if s[2] == title]
        assert _read(root, f"gldv2_{usage}_query_list.txt") == "".join(
            f"{_path('test', q)} {k}\n" for k, (q, _, _) in enumerate(rows))
        assert _read(root, f"gldv2_{usage}_query_gt.txt") == "".join(
            f"{_path('test', q)} {k} {','.join(str(row[g]) for g in imgs.split())}\n"
            for k, (q, imgs, _) in enumerate(rows))
    ignored = gld["solution"][2][0]
    assert all(ignored not in _read(root, f) for f in manifest["files"])

    on_disk = json.loads(_read(root, "manifest.json"))
    assert on_disk == manifest and len(manifest["files"]) == 10
    for name, record in manifest["files"].items():
        data = (root / name).read_bytes()
        assert record == {"lines": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
    counts = manifest["counts"]
    assert counts["classes"] == num and counts["train_images"] == sum(SIZES.values())
    assert counts["public_queries"] == 2 and counts["private_queries"] == 3 and counts["gallery_images"] == 8
    assert counts["data_split_old_images"] == exp["data_old"].count("\n")


def test_ratio_and_seed_options(gld):
    root, train = gld["root"], gld["train"]
    manifest = prepare_gldv2(str(root), ratio=0.25, seed=7)
    classes = [[_path("train", i) for i in train[lm]] for lm in sorted(train)]
    exp = _expected_splits(classes, 0.25, 7)
    assert manifest["counts"]["old_classes"] == int(len(classes) * 0.25)
    assert _read(root, "gldv2_train_old_25percent_class.txt") == exp["class_old"]
    assert _read(root, "gldv2_train_new_100percent_class.txt") == exp["class_new"]
    assert _read(root, "gldv2_train_old_25percent_data.txt") == exp["data_old"]
    assert _read(root, "gldv2_train_new_75percent_data.txt") == exp["data_new"]


def test_label_file_replaces_train_clean(tmp_path):
    rng = random.Random(3)
    lines = [f"{_path('train', i)} {c}\n" for c, n in enumerate([4, 1, 6, 2, 3, 5, 1, 8]) for i in _ids(rng, n)]
    rng.shuffle(lines)
    label_file = tmp_path / "community_labels.txt"
    label_file.write_text("".join(lines))
    root = tmp_path / "out"
    root.mkdir()
    manifest = prepare_gldv2(str(root), label_file=str(label_file))

    assert _read(root, "label_8.txt") == "".join(lines) and manifest["counts"]["classes"] == 8
    classes = [[l.split()[0] for l in lines if int(l.split()[1]) == c] for c in range(8)]
    exp = _expected_splits(classes, 0.3, 666)
    assert _read(root, "gldv2_train_old_30percent_class.txt") == exp["class_old"]
    assert _read(root, "gldv2_train_new_100percent_class.txt") == exp["class_new"]
    assert _read(root, "gldv2_train_old_30percent_data.txt") == exp["data_old"]
    assert _read(root, "gldv2_train_new_70percent_data.txt") == exp["data_new"]
    assert "gallery_images" not in manifest["counts"]

    label_file.write_text("a/b.jpg 0\na/c.jpg 2\n")
    with pytest.raises(BadInputError, match="label 1 has no image"):
        prepare_gldv2(str(root), label_file=str(label_file))


@pytest.mark.parametrize("header, rows, words", [
    (["landmark", "images"], [[1, "abcd"]], "train_clean.csv:1: column 'landmark_id' is missing"),
    (["landmark_id", "images"], [[1, "abcd"], ["x7", "bcde"]],
     "train_clean.csv:3: landmark_id 'x7' is not an integer"),
    (["landmark_id", "images"], [[1, "abcd"], [2, "bcde"], [1, "cdef"]],
     "train_clean.csv:4: landmark_id 1 already appears at line 2"),
    (["landmark_id", "images"], [[1, "abcd"], [2, "bcde abcd"]],
     "train_clean.csv:3: image id abcd already listed at line 2"),
    (["landmark_id", "images"], [[1, "abcd ../x"]], "train_clean.csv:2: image id '../x' is not a GLDv2 id"),
])
def test_bad_train_csv_names_the_line(tmp_path, header, rows, words):
    _write_csv(tmp_path / "train_clean.csv", header, rows)
    with pytest.raises(BadInputError, match=words.replace("(", r"\(").replace(".", r"\.")):
        prepare_gldv2(str(tmp_path))


def test_solution_image_missing_from_index_names_the_line(gld):
    root = gld["root"]
    rows = [list(r) for r in gld["solution"]]
    rows[3][1] += " ffffffffffffffff"
    _write_csv(root / "retrieval_solution_v2.1.csv", ["id", "images", "Usage"], rows)
    words = r"retrieval_solution_v2\.1\.csv:5: image ffffffffffffffff is not in index\.csv"
    with pytest.raises(BadInputError, match=words):
        prepare_gldv2(str(root))
    assert not list(root.glob("*.tmp"))


def test_command_line(gld, tmp_path, capsys):
    manifest = tool.main(["--root", str(gld["root"])])
    out = capsys.readouterr().out
    assert "classes 14 (old 4, new 10)" in out and "gldv2_private_query_gt.txt" in out
    assert manifest["counts"]["old_classes"] == 4

    with pytest.raises(SystemExit) as e:
        tool.main(["--root", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(SystemExit):
        tool.main(["--root", str(empty)])
    assert "train_clean.csv does not exist" in capsys.readouterr().err


def _legacy_shuffle(seed: int, n: int) -> np.ndarray:
    """np.random.seed(seed); np.random.shuffle(np.arange(n)), the reference's calls, leaving the
    global state as it was."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        a = np.arange(n)
        np.random.shuffle(a)
        return a
    finally:
        np.random.set_state(state)


def _expected_nested(classes: list, fractions: tuple, seed: int) -> dict:
    """Nested class and data splits computed independently with the legacy global generator:
    {fraction: (class-split text, data-split text)}."""
    num = len(classes)
    ids = _legacy_shuffle(seed, num)
    picks = [_legacy_shuffle(seed + c, len(paths)) for c, paths in enumerate(classes)]
    out, label, taken = {}, {}, 0
    for t, f in enumerate(fractions):
        members = ids[:int(num * f)].tolist()
        for c in sorted(members[taken:]):
            label[c] = len(label)
        taken = len(members)
        class_text = "".join(f"{p} {label[c]}\n" for c in range(num) if c in label for p in classes[c])
        data = []
        for c, paths in enumerate(classes):
            n = len(paths)
            if n == 1:
                keep = {0}
            elif n < 4:
                keep = set(range(1 if t == 0 else max(1, int(f * n))))
            else:
                keep = set(picks[c][:int(f * n)].tolist())
            data.extend(f"{p} {c}\n" for j, p in enumerate(paths) if j in keep)
        out[f] = (class_text, "".join(data))
    return out


def test_nested_fractions_leave_the_other_files_unchanged(gld, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("train_clean.csv", "index.csv", "retrieval_solution_v2.1.csv"):
        (plain / name).write_bytes((gld["root"] / name).read_bytes())
    before = prepare_gldv2(str(plain))
    after = prepare_gldv2(str(gld["root"]), fractions=(0.3, 0.6, 1.0))
    for name, record in before["files"].items():
        assert (gld["root"] / name).read_bytes() == (plain / name).read_bytes(), name
        assert after["files"][name] == record
    nested = [n for n in after["files"] if n not in before["files"]]
    assert sorted(nested) == sorted(f"gldv2_train_nested_{p}percent_{s}.txt"
                                    for p in (30, 60, 100) for s in ("class", "data"))
    assert after["fractions"] == [0.3, 0.6, 1.0] and after["counts"]["nested"]["60"]["classes"] == int(14 * 0.6)
    assert {k: v for k, v in after.items() if k not in ("fractions", "files", "counts", "source")} == \
        {k: v for k, v in before.items() if k not in ("files", "counts", "source")}


def test_nested_splits_grow_and_keep_class_ids(gld):
    root, train = gld["root"], gld["train"]
    fractions = (0.3, 0.6, 1.0)
    prepare_gldv2(str(root), fractions=fractions, seed=666)
    classes = [[_path("train", i) for i in train[lm]] for lm in sorted(train)]
    expected = _expected_nested(classes, fractions, 666)
    previous = {"class": {}, "data": {}}
    for f, tag in zip(fractions, ("30", "60", "100")):
        for split, text in zip(("class", "data"), expected[f]):
            assert _read(root, f"gldv2_train_nested_{tag}percent_{split}.txt") == text, (tag, split)
            lines = dict(line.split() for line in text.splitlines())
            # Each split holds the previous one, and every image keeps its label.
            assert all(lines.get(p) == l for p, l in previous[split].items()), (tag, split)
            previous[split] = lines
        labels = {int(l) for l in previous["class"].values()}
        assert labels == set(range(int(len(classes) * f)))
    # The first split is the old model's list, the full data split is the whole label list.
    assert _read(root, "gldv2_train_nested_30percent_class.txt") == _read(root, "gldv2_train_old_30percent_class.txt")
    assert _read(root, "gldv2_train_nested_30percent_data.txt") == _read(root, "gldv2_train_old_30percent_data.txt")
    assert _read(root, "gldv2_train_nested_100percent_data.txt") == _read(root, f"label_{len(classes)}.txt")
    # With two fractions the chain is the usual old/new pair.
    prepare_gldv2(str(root), fractions=(0.3, 1.0))
    assert _read(root, "gldv2_train_nested_100percent_class.txt") == _read(root, "gldv2_train_new_100percent_class.txt")


@pytest.mark.parametrize("kwargs, words", [
    ({"fractions": (0.3, 0.2, 1.0)}, "must grow strictly"),
    ({"fractions": (1.0,)}, "the first below 1"),
    ({"fractions": (0.3, 1.5)}, r"in \(0, 1\]"),
    ({"fractions": (0.3, 1.0), "ratio": 0.25}, "differs from the first of --fractions"),
])
def test_bad_fractions(gld, kwargs, words):
    with pytest.raises(BadInputError, match=words):
        prepare_gldv2(str(gld["root"]), **kwargs)


def test_fractions_on_the_command_line(gld, capsys):
    manifest = tool.main(["--root", str(gld["root"]), "--fractions", "0.25,0.5,1"])
    assert manifest["ratio"] == 0.25 and "nested split 50%: 7 classes" in capsys.readouterr().out
    assert (gld["root"] / "gldv2_train_old_25percent_class.txt").is_file()
    with pytest.raises(SystemExit) as e:
        tool.main(["--root", str(gld["root"]), "--fractions", "0.3,x"])
    assert e.value.code == 2
