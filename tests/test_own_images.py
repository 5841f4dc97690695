"""A user's own images (docs/own_images.md): bct.tools.prepare_images on small generated folders and
CSV files (formats, the class and data splits, the retrieval set, every refused input, reuse and
refusal), and scripts/own.sh end to end (slow)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bct.data.collection import Settings, prepare_collection
from bct.data.prepare import class_split, data_split
from bct.tools import prepare_images as tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# class name -> number of images; names sort differently as strings and numbers would not matter here.
SIZES = {"boots": 6, "clogs": 2, "heels": 5, "loafers": 9, "mules": 4, "oxfords": 7, "pumps": 3, "sandals": 8,
         "slippers": 5, "sneakers": 6}


def _image(path: str, seed: int) -> None:
    """A tiny image with content unique to ``seed`` (PNG or JPEG by extension)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def make_folder(root, sizes=SIZES) -> str:
    """<root>/coll/<class>/<i>.{jpg,png}: alternating formats, every image distinct."""
    folder = os.path.join(str(root), "coll")
    seed = 0
    for name, n in sizes.items():
        os.makedirs(os.path.join(folder, name))
        for i in range(n):
            _image(os.path.join(folder, name, f"{i}.{'jpg' if i % 2 else 'png'}"), seed)
            seed += 1
    return folder


def make_csv(root, sizes=SIZES, split=None, name="labels.csv") -> str:
    """A CSV of path,label (and split when ``split`` maps (class, i) -> split) beside the images."""
    folder = make_folder(root, sizes)
    path = os.path.join(str(root), name)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"] + (["split"] if split else []))
        for cls, n in sizes.items():
            for i in range(n):
                row = [f"coll/{cls}/{i}.{'jpg' if i % 2 else 'png'}", cls]
                w.writerow(row + ([split(cls, i)] if split else []))
    return path


def read_list(path: str) -> list:
    with open(path) as f:
        return [(p, int(lab)) for p, lab in (line.split() for line in f)]


def read_classes(out: str) -> list:
    """[(id, train_label or None, role, images, name)] of classes.txt."""
    rows = []
    with open(os.path.join(out, "classes.txt")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            cid, label, role, n, name = line.rstrip("\n").split("\t")
            rows.append((int(cid), None if label == "-" else int(label), role, int(n), name))
    return rows


def run_tool(argv, capsys):
    """(exit code, stdout, stderr) of the tool."""
    try:
        tool.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(parent: str) -> list:
    return [n for n in os.listdir(parent) if n.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# Formats and splits
# ---------------------------------------------------------------------------------------------

def check_partition(out: str, n_images: int) -> tuple:
    """Training, query and gallery images are disjoint and together every image once; every query
    has a gallery image of its class. Returns (full, query, gallery) lists."""
    full = read_list(os.path.join(out, "train_full.txt"))
    query = read_list(os.path.join(out, "eval", "query.txt"))
    gallery = read_list(os.path.join(out, "eval", "gallery.txt"))
    paths = [p for p, _ in full + query + gallery]
    assert len(paths) == len(set(paths)) == n_images
    assert not {p for p, _ in query} & {p for p, _ in gallery}
    assert {lab for _, lab in query} <= {lab for _, lab in gallery}
    with open(os.path.join(out, "eval", "set.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == "bct-retrieval-set" and manifest["version"] == 1
    assert (manifest["num_queries"], manifest["num_gallery"]) == (len(query), len(gallery))
    assert os.path.isdir(manifest["image_root"])
    return full, query, gallery


def test_folder_class_split(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    code, printed, err = run_tool(["--src", src, "--out", out, "--split", "class", "--query", "classes"], capsys)
    assert code == 0, err
    full, query, gallery = check_partition(out, sum(SIZES.values()))
    classes = read_classes(out)
    assert [c[4] for c in classes] == sorted(SIZES) and [c[3] for c in classes] == [SIZES[n] for n in sorted(SIZES)]
    eval_names = {c[4] for c in classes if c[2] == "eval"}
    assert len(eval_names) == int(len(SIZES) * 0.2)
    # Held-out classes: no image of them is trained on; their ids label the retrieval set.
    assert not any(p.split("/")[0] in eval_names for p, _ in full)
    assert {p.split("/")[0] for p, _ in query + gallery} == eval_names
    for name in eval_names:  # min(n - 1, max(1, int(0.5 * n))) queries per held-out class
        n = SIZES[name]
        assert sum(p.startswith(name + "/") for p, _ in query) == min(n - 1, max(1, int(0.5 * n)))
    # Class split: the old classes are relabelled 0..N_old-1 and keep those ids in the full list; no
    # class is both old and new-only.
    old = read_list(os.path.join(out, "train_old.txt"))
    n_old = int(int(len(SIZES) - len(eval_names)) * 0.3)
    old_classes = {p.split("/")[0] for p, _ in old}
    new_only = {p.split("/")[0] for p, lab in full if lab >= n_old}
    assert len(old_classes) == n_old and not old_classes & new_only
    assert {lab for _, lab in old} == set(range(n_old))
    assert set(old) == {(p, lab) for p, lab in full if lab < n_old}
    assert {lab for _, lab in full} == set(range(len(SIZES) - len(eval_names)))
    # The same rule as the GLDv2 class split over the training classes in id order.
    train_names = [c[4] for c in classes if c[2] != "eval"]
    expected_old = {n for n, o in zip(train_names, class_split(len(train_names), 0.3, 666)) if o}
    assert old_classes == expected_old
    assert f"{len(old)} images, {n_old} classes" in printed and f"{len(query)} queries" in printed


def test_folder_data_split(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    code, _, err = run_tool(["--src", src, "--out", out, "--split", "data"], capsys)
    assert code == 0, err
    full, _, _ = check_partition(out, sum(SIZES.values()))
    old = read_list(os.path.join(out, "train_old.txt"))
    assert set(old) <= set(full)  # labels unchanged
    counts = np.bincount([lab for _, lab in full])
    keep = data_split(counts, 0.3, 666)[0]
    assert old == [item for item, k in zip(full, keep.tolist()) if k]
    assert {lab for _, lab in old} == set(range(counts.size))  # every class has an old image
    assert all(role == "both" for _, _, role, _, _ in read_classes(out) if role != "eval")


def test_held_out_images(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    code, _, err = run_tool(["--src", src, "--out", out, "--query", "images", "--eval-fraction", "0.3"], capsys)
    assert code == 0, err
    full, query, gallery = check_partition(out, sum(SIZES.values()))
    # Every class of four or more images lends some to the retrieval set and keeps the others.
    big = {n for n, k in SIZES.items() if k >= 4}
    assert {p.split("/")[0] for p, _ in query + gallery} == big
    assert {p.split("/")[0] for p, _ in full} == set(SIZES)


def test_csv_formats(tmp_path, capsys):
    src = make_csv(tmp_path)
    code, _, err = run_tool(["--src", src, "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    check_partition(str(tmp_path / "a"), sum(SIZES.values()))
    # The same collection as a folder gives the same lists, up to the path prefix.
    code, _, err = run_tool(["--src", str(tmp_path / "coll"), "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    for name in ("train_old.txt", "train_full.txt", "eval/query.txt", "eval/gallery.txt"):
        a = read_list(str(tmp_path / "a" / name))
        b = read_list(str(tmp_path / "b" / name))
        assert a == [("coll/" + p, lab) for p, lab in b]
    # --image-root: paths relative to another folder.
    other = tmp_path / "elsewhere"
    other.mkdir()
    rel = other / "rel.csv"
    rel.write_text("".join(line.replace("coll/", "", 1) for line in open(src)))
    code, _, err = run_tool(["--src", str(rel), "--out", str(tmp_path / "c"), "--image-root",
                             str(tmp_path / "coll")], capsys)
    assert code == 0, err
    assert read_list(str(tmp_path / "c" / "train_full.txt")) == read_list(str(tmp_path / "b" / "train_full.txt"))


def test_csv_split_column(tmp_path, capsys):
    def split(cls, i):
        if cls in ("boots", "heels"):
            return "query" if i == 0 else "gallery"
        return "train"
    src = make_csv(tmp_path, split=split)
    out = str(tmp_path / "out")
    code, printed, err = run_tool(["--src", src, "--out", out], capsys)
    assert code == 0, err
    full, query, gallery = check_partition(out, sum(SIZES.values()))
    assert [p for p, _ in query] == ["coll/boots/0.png", "coll/heels/0.png"]
    assert len(gallery) == SIZES["boots"] + SIZES["heels"] - 2
    assert "split column" in printed


def test_seeded(tmp_path, capsys):
    src = make_folder(tmp_path)
    outs = {}
    for name, seed in (("a", 666), ("b", 666), ("c", 7)):
        prepare_collection(src, str(tmp_path / name), Settings(seed=seed))
        outs[name] = open(tmp_path / name / "train_old.txt").read() + open(tmp_path / name / "eval/query.txt").read()
    assert outs["a"] == outs["b"] != outs["c"]


def test_retrieval_set_loads():
    """The retrieval set is the format bct.data.retrieval_set reads (when that module is present)."""
    from bct.data import retrieval_set
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        prepare_collection(make_folder(tmp), os.path.join(tmp, "out"))
        s = retrieval_set.load_retrieval_set(os.path.join(tmp, "out", "eval"))
        assert len(s.query_paths) >= 2 and (s.n_pos > 0).all() and (s.self_index == -1).all()
        assert all(os.path.isfile(p) for p in s.query_paths + s.gallery_paths)


# ---------------------------------------------------------------------------------------------
# Refused inputs: one line naming the file (and line), nothing written
# ---------------------------------------------------------------------------------------------

def _empty_class(root):
    src = make_folder(root)
    os.makedirs(os.path.join(src, "wellies"))
    return [src], os.path.join(src, "wellies") + ": empty class folder"


def _singleton(root):
    src = make_folder(root, {**SIZES, "espadrilles": 1})
    return [src], os.path.join(src, "espadrilles") + ": class 'espadrilles' has one image"


def _undecodable(root):
    src = make_folder(root)
    with open(os.path.join(src, "boots", "3.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    return [src, "--check-decode"], os.path.join(src, "boots", "3.jpg") + ": cannot decode"


def _same_content(root):
    src = make_folder(root)
    with open(os.path.join(src, "boots", "0.png"), "rb") as f:
        data = f.read()
    with open(os.path.join(src, "clogs", "copy.png"), "wb") as f:
        f.write(data)
    return [src, "--check-decode"], os.path.join(src, "clogs", "copy.png") + ": the same content as boots/0.png"


def _linked_twice(root):
    src = make_folder(root)
    os.link(os.path.join(src, "boots", "0.png"), os.path.join(src, "heels", "linked.png"))
    return [src], os.path.join(src, "heels", "linked.png") + ": the same file as boots/0.png"


def _empty_file(root):
    src = make_folder(root)
    open(os.path.join(src, "mules", "empty.jpg"), "wb").close()
    return [src], os.path.join(src, "mules", "empty.jpg") + ": empty file (0 bytes)"


def _white_space(root):
    src = make_folder(root)
    os.rename(os.path.join(src, "boots"), os.path.join(src, "ankle boots"))
    return [src], "contains white space"


def _image_in_root(root):
    src = make_folder(root)
    _image(os.path.join(src, "stray.jpg"), 999)
    return [src], os.path.join(src, "stray.jpg") + ": an image directly in the collection folder"


def _csv_rewrite(root, edit):
    src = make_csv(root)
    lines = open(src).read().splitlines(keepends=True)
    lines = edit(lines)
    with open(src, "w") as f:
        f.writelines(lines)
    return src


def _csv_duplicate(root):
    src = _csv_rewrite(root, lambda ls: ls + [ls[3]])
    n = sum(SIZES.values()) + 2
    return [src], f"{src}:{n}: coll/boots/2.png is already listed at line 4"


def _csv_blank_label(root):
    src = _csv_rewrite(root, lambda ls: ls[:5] + [ls[5].split(",")[0] + ", \n"] + ls[6:])
    return [src], f"{src}:6: the label of coll/boots/4.png is blank"


def _csv_missing_path(root):
    src = _csv_rewrite(root, lambda ls: ls + ["coll/boots/99.jpg,boots\n"])
    return [src], f"{src}:{sum(SIZES.values()) + 2}: coll/boots/99.jpg does not exist under the image root"


def _csv_no_label_column(root):
    src = _csv_rewrite(root, lambda ls: ["path,class\n"] + ls[1:])
    return [src], f"{src}:1: column 'label' is missing"


def _csv_blank_split(root):
    src = make_csv(root, split=lambda c, i: "" if (c, i) == ("boots", 1) else "train")
    return [src], f"{src}:3: split is blank"


def _csv_query_without_gallery(root):
    src = make_csv(root, split=lambda c, i: "query" if c == "boots" else ("gallery" if c == "heels" else "train"))
    return [src], f"{src}:2: coll/boots/0.png: a query of class 'boots' with no gallery image of its class"


BAD = [_empty_class, _singleton, _undecodable, _same_content, _linked_twice, _empty_file, _white_space,
       _image_in_root, _csv_duplicate, _csv_blank_label, _csv_missing_path, _csv_no_label_column, _csv_blank_split,
       _csv_query_without_gallery]


@pytest.mark.parametrize("make", BAD, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make):
    args, expected = make(tmp_path)
    out = tmp_path / "out"
    code, printed, err = run_tool(["--src", args[0], "--out", str(out), *args[1:]], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err, err
    assert not out.exists() and not leftovers(str(tmp_path))


def test_singletons_skipped_on_request(tmp_path, capsys):
    src = make_folder(tmp_path, {**SIZES, "espadrilles": 1})
    code, printed, err = run_tool(["--src", src, "--out", str(tmp_path / "out"), "--skip-singletons"], capsys)
    assert code == 0, err
    assert "1 one-image classes left out" in printed
    assert "espadrilles" not in open(tmp_path / "out" / "classes.txt").read()
    check_partition(str(tmp_path / "out"), sum(SIZES.values()))


def test_added_singleton_changes_the_input(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    assert run_tool(["--src", src, "--out", out, "--skip-singletons"], capsys)[0] == 0
    os.makedirs(os.path.join(src, "wellies"))
    _image(os.path.join(src, "wellies", "0.png"), 4242)
    code, _, err = run_tool(["--src", src, "--out", out, "--skip-singletons"], capsys)
    assert code == 2 and "was prepared from another content" in err


def test_non_image_files_are_counted(tmp_path, capsys):
    src = make_folder(tmp_path)
    (tmp_path / "coll" / "README.txt").write_text("shoes")
    (tmp_path / "coll" / "boots" / ".DS_Store").write_text("")
    code, printed, err = run_tool(["--src", src, "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "2 non-image or hidden files ignored" in printed


def test_degenerate_settings(tmp_path, capsys):
    src = make_folder(tmp_path, {"a": 3, "b": 3, "c": 3})
    code, _, err = run_tool(["--src", src, "--out", str(tmp_path / "out"), "--query", "classes"], capsys)
    assert code == 2 and "holds out 0 class(es)" in err
    code, _, err = run_tool(["--src", src, "--out", str(tmp_path / "out"), "--old-fraction", "1.5"], capsys)
    assert code == 2 and "--old-fraction: 1.5 is not a fraction strictly between 0 and 1" in err
    assert not (tmp_path / "out").exists()


def test_splits_fit_the_number_of_classes(tmp_path, capsys):
    """Ten classes: whole held-out classes would test on two and train the old model on two, so the
    defaults hold out images of every class and give the old model part of every class, and say so;
    sixty classes: whole classes for both."""
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    code, printed, err = run_tool(["--src", src, "--out", out], capsys)
    assert code == 0, err
    line = next(x for x in printed.splitlines() if "splits:" in x)
    assert "--query images, --split data chosen for 10 classes" in line and "2 to test" in line
    assert {c[2] for c in read_classes(out)} == {"both"}
    big = make_folder(tmp_path / "big", {f"c{i:02d}": 4 for i in range(60)})
    code, printed, err = run_tool(["--src", big, "--out", str(tmp_path / "big_out")], capsys)
    assert code == 0 and "--query classes, --split class chosen for 60 classes" in printed, err
    roles = [c[2] for c in read_classes(str(tmp_path / "big_out"))]
    assert roles.count("eval") == 12 and roles.count("old") == int(48 * 0.3)


def test_one_old_class_refused(tmp_path, capsys):
    """A class split that leaves the old model one class is refused in one line, nothing written."""
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    code, _, err = run_tool(["--src", src, "--out", out, "--split", "class", "--query", "classes",
                             "--old-fraction", "0.2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "gives the old model 1 class" in err and "--split data" in err
    assert not os.path.exists(out)


# ---------------------------------------------------------------------------------------------
# Reuse and refusal
# ---------------------------------------------------------------------------------------------

def test_same_settings_reuse(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    assert run_tool(["--src", src, "--out", out], capsys)[0] == 0
    stamp = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    code, printed, _ = run_tool(["--src", src, "--out", out], capsys)
    assert code == 0 and printed.startswith(f"reusing {out}")
    assert stamp == {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}


@pytest.mark.parametrize("change, expected", [
    (["--seed", "7"], "was prepared with --seed 666 (this run: 7)"),
    (["--split", "class"], "was prepared with --split data (this run: class)"),
    (["--check-decode"], "was prepared with --check-decode off (this run: on)"),
])
def test_other_settings_refused(tmp_path, capsys, change, expected):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    assert run_tool(["--src", src, "--out", out], capsys)[0] == 0
    before = open(os.path.join(out, "manifest.json")).read()
    code, _, err = run_tool(["--src", src, "--out", out, *change], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert open(os.path.join(out, "manifest.json")).read() == before


def test_changed_input_refused(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    assert run_tool(["--src", src, "--out", out], capsys)[0] == 0
    _image(os.path.join(src, "boots", "new.png"), 12345)
    code, _, err = run_tool(["--src", src, "--out", out], capsys)
    assert code == 2 and "was prepared from another content" in err and "55 images" in err and "now 56" in err


def test_edited_output_and_foreign_folder_refused(tmp_path, capsys):
    src, out = make_folder(tmp_path), str(tmp_path / "out")
    assert run_tool(["--src", src, "--out", out], capsys)[0] == 0
    with open(os.path.join(out, "train_old.txt"), "a") as f:
        f.write("boots/0.png 0\n")
    code, _, err = run_tool(["--src", src, "--out", out], capsys)
    assert code == 2 and "train_old.txt was changed or removed" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = run_tool(["--src", src, "--out", str(foreign)], capsys)
    assert code == 2 and "non-empty folder without a manifest.json" in err
    assert os.listdir(foreign) == ["notes.txt"]
    # An empty folder is filled.
    (tmp_path / "empty").mkdir()
    assert run_tool(["--src", src, "--out", str(tmp_path / "empty")], capsys)[0] == 0


def test_out_inside_the_collection_refused(tmp_path, capsys):
    src = make_folder(tmp_path)
    code, _, err = run_tool(["--src", src, "--out", os.path.join(src, "lists")], capsys)
    assert code == 2 and "lies inside the input of --src" in err


def test_help_names_the_module(capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    assert "python -m bct.tools.prepare_images" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The one command
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_own_sh_end_to_end(tmp_path):
    src = make_folder(tmp_path, {f"c{i}": 6 for i in range(10)})
    env = {**os.environ, "PRETRAINED": "False", "PYTHON": sys.executable, "GPUS": "0"}
    name = f"pytest_{os.getpid()}"
    opts = ["TRAIN.EPOCHS", "1", "TRAIN.LR_SCHEDULER.MILESTONES", "[1]", "TRAIN.INPUT_SIZE", "32",
            "EVAL.INPUT_SIZE", "32", "NUM_THREADS", "1"]
    try:
        res = subprocess.run(["bash", "scripts/own.sh", src, name, *opts], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "cross" in res.stdout and os.path.isdir(os.path.join(REPO, "output", "own", name, "eval"))
        page = res.stdout.split("report page (query by query; open it in a browser): ")[1].strip()
        assert os.path.isfile(os.path.join(REPO, page))
        again = subprocess.run(["bash", "scripts/own.sh", src, name, *opts], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=600)
        assert again.returncode == 0 and "reusing" in again.stdout
    finally:
        import shutil
        shutil.rmtree(os.path.join(REPO, "output", "own", name), ignore_errors=True)


@pytest.mark.slow
def test_own_sh_refuses_keys_it_sets(tmp_path):
    """One run, one folder: an override of a key own.sh sets in every step (OUTPUT, the lists, the
    models) is refused in one line naming own.sh's knob, before anything is written."""
    src = make_folder(tmp_path)
    env = {**os.environ, "PRETRAINED": "False", "PYTHON": sys.executable, "GPUS": "0"}
    name = f"pytest_keys_{os.getpid()}"
    for key, knob in (("OUTPUT", "the name argument"), ("TRAIN.LIST_FILE", "PREPARE_ARGS"),
                      ("NEW_MODEL.PRETRAINED_PATH", "START=")):
        res = subprocess.run(["bash", "scripts/own.sh", src, name, key, str(tmp_path / "elsewhere")], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert f"{key} is set by scripts/own.sh" in res.stderr and knob in res.stderr
    assert not os.path.exists(os.path.join(REPO, "output", "own", name)) and not (tmp_path / "elsewhere").exists()


def test_schedule_in_fractions_scales_with_epochs():
    """configs/own's rate drop sits at three quarters of TRAIN.EPOCHS; the synthetic configs keep their
    milestones in epochs, unchanged."""
    from bct.config import load_cfg
    from bct.engine.optim import milestones
    own = "configs/own/old_model.yml"
    assert milestones(load_cfg(os.path.join(REPO, own))) == [6]
    assert milestones(load_cfg(os.path.join(REPO, own), ["TRAIN.EPOCHS", "20"])) == [15]
    assert milestones(load_cfg(os.path.join(REPO, "configs/synthetic/Base-synthetic.yml"))) == [8, 11]
    assert milestones(load_cfg(os.path.join(REPO, "configs/synthetic/pretrain.yml"))) == [4, 5]


def test_criterion_advice_names_the_measured_knobs():
    from bct.pipeline.results import criterion_advice
    assert criterion_advice(80.0, 90.0, 85.0, "data", "images", "old") == []
    lines = criterion_advice(60.7, 57.9, 56.1, "class", "classes", "random")
    assert len(lines) == 2 and "--split data --query images" in lines[0] and "START=old" in lines[0]
    assert lines[1].startswith("the new model does not beat the old one") and "TRAIN.EPOCHS" in lines[1]
    assert len(criterion_advice(88.0, 97.0, 80.0, "data", "images", "old")) == 1


def test_start_from_a_trained_model_is_keyed(tmp_path, capsys):
    """pretrain --from-model (own.sh START=old) publishes the model's backbone as a start that
    *.PRETRAINED_PATH loads; the same model again reuses it, another model's start there is refused."""
    import torch

    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.models import build_model
    from bct.tools import pretrain
    from bct.tools.common import run

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(load_cfg("", ["OLD_MODEL.PRETRAINED", "False", "OLD_MODEL.NUM_CLASSES", "3"]), "old")
        paths.append(str(tmp_path / f"model{seed}.pth"))
        save_checkpoint(paths[-1], {"model": model.state_dict(), "meta": model.meta})
    out = str(tmp_path / "start" / "old_backbone.pth")
    assert pretrain.main(["--from-model", paths[0], "--out", out]) == out
    backbone = torch.load(out)
    assert backbone and all(torch.equal(v, model_v) for k, v in backbone.items()
                            for model_v in [torch.load(paths[0])["model"]["backbone." + k]])
    stamp = os.stat(out).st_mtime_ns
    assert pretrain.main(["--from-model", paths[0], "--out", out]) == out and os.stat(out).st_mtime_ns == stamp
    with pytest.raises(SystemExit) as e:
        run(pretrain.main, ["--from-model", paths[1], "--out", out])
    assert e.value.code == 2 and "holds a start made with other settings or inputs" in capsys.readouterr().err
    assert os.stat(out).st_mtime_ns == stamp
