"""Every reader of a user's CSV or list reads the common dialects the same way (UTF-8 with or without
a byte-order mark; LF, CRLF, CR line ends; quoted CSV fields), refuses a repeated or missing header
column by name, and refuses text the lists cannot hold with the file and line, writing nothing.

The readers are discovered: every function of a bct.data module declared with
bct.data.userfiles.user_file_reader; each needs an example below, so a new reader without one fails.
"""
import importlib
import os
import pkgutil

import numpy as np
import pytest
from PIL import Image

import bct.data
from bct.data import userfiles
from bct.utils.errors import BadInputError


def _images(root, names):
    for rel in names:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), len(path) % 256, dtype=np.uint8)).save(path)


# Qualified reader name -> (example maker: folder -> (rows, call: path -> comparable result), "csv" or "list").
EXAMPLES = {
    "bct.data.collection.read_csv": ("csv", lambda root: (
        [["path", "label"], ["a/0.png", "shoes, red"], ["a/1.png", "shoes, red"], ["c/0.png", "boots"],
         ["c/1.png", "boots"]],
        lambda path: (lambda c: (c.paths, c.labels.tolist(), c.class_names))(
            _reader("collection", "read_csv")(path)))),
    "bct.data.prepare._read_train_csv": ("csv", lambda root: (
        [["landmark_id", "images"], ["7", "abc def"], ["3", "ghi"]],
        lambda path: (lambda r: (r[0], r[1].tolist()))(_reader("prepare", "_read_train_csv")(path)))),
    "bct.data.prepare._read_index": ("csv", lambda root: (
        [["id"], ["abc"], ["def"]], lambda path: _reader("prepare", "_read_index")(path))),
    "bct.data.prepare._read_solution": ("csv", lambda root: (
        [["id", "images", "Usage"], ["qqq", "abc def", "Public"], ["rrr", "def", "Private"], ["sss", "None", "Ignored"]],
        lambda path: _reader("prepare", "_read_solution")(path, {"abc": 0, "def": 1}))),
    "bct.data.prepare._read_label_file": ("list", lambda root: (
        [["x/1.jpg", "1"], ["x/0.jpg", "0"], ["y/2.jpg", "1"]],
        lambda path: (lambda r: (r[0], r[1].tolist(), r[2], r[3].tolist()))(
            _reader("prepare", "_read_label_file")(path)))),
    "bct.data.lists.read_image_list": ("list", lambda root: (
        [["x/1.jpg", "1"], ["x/0.jpg", "0"]],
        lambda path: (lambda r: (r[0], r[1].tolist()))(_reader("lists", "read_image_list")(path, "")))),
    "bct.data.lists.read_index_list": ("list", lambda root: (
        [["x/1.jpg", "0"], ["x/0.jpg", "1"]], lambda path: _reader("lists", "read_index_list")(path))),
    "bct.data.lists.read_query_list": ("list", lambda root: (
        [["q/1.jpg", "3"], ["q/0.jpg"]], lambda path: _reader("lists", "read_query_list")(path))),
    "bct.data.lists.read_gt_list": ("list", lambda root: (
        [["q/1.jpg", "0", "3,4"], ["q/0.jpg", "1", "2"]], lambda path: _reader("lists", "read_gt_list")(path))),
}


def _reader(module, name):
    return userfiles.READERS[f"bct.data.{module}.{name}"]


def discovered() -> dict:
    for info in pkgutil.walk_packages(bct.data.__path__, "bct.data."):
        importlib.import_module(info.name)
    return dict(userfiles.READERS)


def _text(rows, kind, end="\n", bom=False, quoted=False) -> bytes:
    if kind == "csv":
        def cell(x):
            return '"' + x.replace('"', '""') + '"' if quoted or "," in x or '"' in x else x
        lines = [",".join(cell(x) for x in r) for r in rows]
    else:
        lines = [" ".join(r) for r in rows]
    return (("\ufeff" if bom else "") + end.join(lines) + end).encode("utf-8")


def test_every_reader_has_an_example():
    assert set(discovered()) == set(EXAMPLES), "declare an example for every user-file reader"


DIALECTS = {"crlf": dict(end="\r\n"), "cr": dict(end="\r"), "bom": dict(bom=True), "bom_crlf": dict(bom=True, end="\r\n"),
            "quoted": dict(quoted=True)}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_dialects_read_alike(tmp_path, name, dialect):
    discovered()
    kind, make = EXAMPLES[name]
    _images(str(tmp_path), ["a/0.png", "a/1.png", "c/0.png", "c/1.png"])
    rows, call = make(str(tmp_path))
    if dialect == "quoted" and kind != "csv":
        pytest.skip("lists have no quoting")
    plain, other = tmp_path / "plain.txt", tmp_path / f"{dialect}.txt"
    plain.write_bytes(_text(rows, kind))
    other.write_bytes(_text(rows, kind, **DIALECTS[dialect]))
    assert call(str(other)) == call(str(plain))


@pytest.mark.parametrize("name", sorted(n for n, (kind, _) in EXAMPLES.items() if kind == "csv"))
def test_header_columns_named(tmp_path, name):
    discovered()
    _, make = EXAMPLES[name]
    _images(str(tmp_path), ["a/0.png", "a/1.png", "c/0.png", "c/1.png"])
    rows, call = make(str(tmp_path))
    first = rows[0][0]
    repeated = tmp_path / "repeated.csv"
    repeated.write_bytes(_text([rows[0] + [first]] + [r + [r[0]] for r in rows[1:]], "csv"))
    with pytest.raises(BadInputError, match=f"column '{first}' appears 2 times"):
        call(str(repeated))
    missing = tmp_path / "missing.csv"
    missing.write_bytes(_text([["other"] + rows[0][1:]] + rows[1:], "csv"))
    with pytest.raises(BadInputError, match=f"column '{first}' is missing"):
        call(str(missing))


@pytest.mark.parametrize("label, why", [("boo\tts", "control character"), ("boo\nts", "control character"),
                                         (" boots", "white space"), ("boots ", "white space")])
def test_label_the_lists_cannot_hold_is_refused(tmp_path, capsys, label, why):
    """A CSV label with a tab, a line break or white space at an end: one line with file and line,
    nothing written (classes.txt would get a malformed line)."""
    from bct.tools import prepare_images
    _images(str(tmp_path), ["a/0.png", "a/1.png", "c/0.png", "c/1.png", "d/0.png", "d/1.png"])
    src = tmp_path / "labels.csv"
    rows = [["path", "label"], ["a/0.png", "a"], ["a/1.png", "a"], ["c/0.png", label], ["c/1.png", label],
            ["d/0.png", "d"], ["d/1.png", "d"]]
    src.write_bytes(_text(rows, "csv", quoted=True))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        prepare_images.main(["--src", str(src), "--out", str(out), "--query", "images"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and f"{src}:4:" in err and why in err, err
    assert not out.exists()


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"landmark_id,images\n1,abc\n2,d\xe9f\n")
    with pytest.raises(BadInputError, match="line 3"):
        _reader("prepare", "_read_train_csv")(str(path))


def test_query_vectors_in_every_supported_kind_or_one_line(tmp_path):
    """Query vectors as .npy or as an .npz of one array read alike; anything else is one line naming the file."""
    from bct.data.lists import read_vectors
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "q.npy", v)
    np.savez(tmp_path / "q.npz", v)
    assert np.array_equal(read_vectors(str(tmp_path / "q.npy")), v)
    assert np.array_equal(read_vectors(str(tmp_path / "q.npz")), v)
    np.savez(tmp_path / "two.npz", a=v, b=v)
    np.save(tmp_path / "flat.npy", v.ravel())
    (tmp_path / "text.npy").write_text("not an array")
    for name, why in (("two.npz", "exactly one array"), ("flat.npy", r"expected an \(N, D\) array"),
                      ("text.npy", "not a .npy or .npz")):
        with pytest.raises(BadInputError, match=why) as e:
            read_vectors(str(tmp_path / name))
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
