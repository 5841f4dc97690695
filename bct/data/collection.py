"""A user's labelled image collection turned into everything the pipeline reads (docs/own_images.md).

Two input forms:

- a folder per class, ``<root>/<class>/<image>`` (images may sit in sub-folders of their class
  folder); files with an image extension are the images, other files and hidden entries are
  ignored and counted;
- a CSV file with a header holding ``path`` and ``label`` columns and optionally ``split``
  (``train``, ``query`` or ``gallery``); paths are relative to ``image_root`` (default: the CSV's
  folder), an absolute path is accepted when it lies under that root.

Classes are sorted by name (numerically when every name is an integer) and get the ids 0..C-1 of
``classes.txt``; inside a class the images keep the input order (sorted paths for a folder, row
order for a CSV). The splits, every one seeded with ``seed``:

- retrieval set (``eval/``): ``held="classes"`` holds out the first ``int(C * eval_fraction)``
  classes of a seeded shuffle of arange(C) (the rule of the GLDv2 class split); ``held="images"``
  holds out, from each class of four or more images, ``max(2, int(eval_fraction * n))`` images.
  Per class i of n images, ``arange(n)`` is shuffled with seed + i and its first k positions are
  held out (k = n for a held-out class); the first ``min(k - 1, max(1, int(query_fraction * k)))``
  of them are queries, the others the gallery. With a CSV ``split`` column the rows say it instead.
  Query and gallery never share an image, and every query has at least one gallery image of its class.
- old model: ``split="class"``: the GLDv2 class split (bct.data.prepare.class_split and
  class_split_labels) over the training classes, old classes relabelled 0..N_old-1, new classes
  N_old..; ``split="data"``: the GLDv2 data split (bct.data.prepare.data_split) over each
  training class's images, labels unchanged.
- new model: every training image (``train_full.txt``); in the class split the old classes keep
  their old-model ids.

Bad inputs (one line naming the file, and the CSV line): an empty class folder, a class with one
image (unless ``skip_singletons``: then such classes are dropped and counted), an empty, missing,
duplicated or linked-twice file, a CSV label or split left blank, a path the ``path label`` list
format cannot hold (white space), and, with ``check_decode``, a file that does not decode or has the
same content as another. No pixel is read unless ``check_decode``.

Output: written into a hidden temporary folder beside ``out`` and renamed to ``out`` when complete.
A later call with the same input (file names, labels, split column, sizes) and settings reuses it;
with anything else it is refused with a line naming the difference.
"""
import csv
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from bct.data.prepare import class_split, class_split_labels, data_split
from bct.utils.errors import BadInputError, rerun_hint
from bct.data.userfiles import csv_rows, list_safe, user_file_reader
from bct.utils.fileio import _UMASK, file_digest, read_text

FORMAT, VERSION = "bct-collection", 1
SET_FORMAT, SET_VERSION = "bct-retrieval-set", 1
MANIFEST = "manifest.json"
CLASSES_FILE, OLD_LIST, FULL_LIST = "classes.txt", "train_old.txt", "train_full.txt"
EVAL_DIR, QUERY_LIST, GALLERY_LIST, SET_FILE = "eval", "query.txt", "gallery.txt", "set.json"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"})
SPLITS = ("train", "query", "gallery")
# Settings field -> the tool's flag, for the refusal line.
FLAGS = {"split": "--split", "old_fraction": "--old-fraction", "held": "--query", "eval_fraction": "--eval-fraction",
         "query_fraction": "--query-fraction", "seed": "--seed", "check_decode": "--check-decode",
         "skip_singletons": "--skip-singletons"}


@dataclass(frozen=True)
class Settings:
    """What shapes a preparation besides its input (docs/own_images.md)."""
    split: str = "auto"             # old-model split: class | data | auto (chosen_splits)
    old_fraction: float = 0.3       # fraction of the training classes (class) or of each class's images (data)
    held: str = "auto"              # what the retrieval set holds out: classes | images | auto (unused with a
    #                                 split column)
    eval_fraction: float = 0.2      # fraction of the classes (or of each class's images) held out
    query_fraction: float = 0.5     # fraction of each held-out class's images used as queries
    seed: int = 666
    check_decode: bool = False
    skip_singletons: bool = False

    def check(self) -> None:
        if self.split not in ("class", "data", "auto"):
            raise BadInputError(f"--split {self.split!r}: expected class, data or auto")
        if self.held not in ("classes", "images", "auto"):
            raise BadInputError(f"--query {self.held!r}: expected classes (held-out classes), images "
                                "(held-out images of every class) or auto")
        for name in ("old_fraction", "eval_fraction", "query_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise BadInputError(f"{FLAGS[name]} must be strictly between 0 and 1, got {value}")
        if not 0 <= self.seed < 2 ** 32:
            raise BadInputError(f"--seed must be an integer in 0..{2 ** 32 - 1}, got {self.seed}")


# The fewest classes that make a test or an old model mean something: with whole classes held out, the
# retrieval set and the old model each get at least this many classes, or auto picks held-out images
# and the data split (every class in both models) instead.
MIN_CLASSES = 5


def chosen_splits(num_classes: int, s: Settings, split_column: bool = False):
    """(Settings with ``auto`` replaced, one line saying what was chosen and why). ``auto`` holds out
    whole classes (--query classes) when that leaves MIN_CLASSES classes to test and MIN_CLASSES to the
    old model's class split, and gives the old model whole classes (--split class) when it gets at least
    MIN_CLASSES of the training classes; otherwise held-out images of every class and the data split."""
    held, split = s.held, s.split
    why = []
    if held == "auto":
        n_eval = int(num_classes * s.eval_fraction)
        n_old = int((num_classes - n_eval) * s.old_fraction)
        held = "classes" if split_column or (n_eval >= MIN_CLASSES and n_old >= MIN_CLASSES) else "images"
        if held == "images":
            why.append(f"held-out classes would leave {n_eval} to test and {n_old} to the old model")
    c_train = num_classes - (int(num_classes * s.eval_fraction) if held == "classes" and not split_column else 0)
    if split == "auto":
        n_old = int(c_train * s.old_fraction)
        split = "class" if n_old >= MIN_CLASSES else "data"
        if split == "data":
            why.append(f"a class split would give the old model {n_old} of {c_train} classes")
    done = Settings(**{**asdict(s), "held": held, "split": split})
    given = [f"{FLAGS[k]} {getattr(done, k)}" for k in ("held", "split") if getattr(s, k) != "auto"]
    chose = [f"{FLAGS[k]} {getattr(done, k)}" for k in ("held", "split") if getattr(s, k) == "auto"]
    if split_column and s.held == "auto":
        chose = [c for c in chose if not c.startswith("--query")]
    line = "splits: " + ", ".join(
        ([f"{', '.join(chose)} chosen for {num_classes} classes"] if chose else [])
        + ([f"{', '.join(given)} as given"] if given else [])
        + (["the CSV's split column"] if split_column else []))
    if why:
        line += f" ({'; '.join(why)}, under {MIN_CLASSES} each)"
    return done, line


@dataclass
class Collection:
    """The images of a collection, in input order. ``labels`` (N,) int64 are class ids (indices of
    ``class_names``); ``splits`` (N,) int8 index SPLITS, or None without a split column; ``lines``
    the CSV line of every image (None for a folder)."""
    kind: str
    source: str
    image_root: str
    paths: list
    labels: np.ndarray
    class_names: list
    sizes: np.ndarray
    splits: np.ndarray = None
    lines: list = None
    ignored: list = field(default_factory=list)
    skipped_classes: list = field(default_factory=list)

    def where(self, i: int) -> str:
        """How an error names image i: the CSV line and the path, or the file."""
        if self.lines is not None:
            return f"{self.source}:{self.lines[i]}: {self.paths[i]}"
        return os.path.join(self.image_root, self.paths[i])

    def digest(self) -> str:
        """sha256 of what the outputs depend on: every path, class name, split and file size (no times)."""
        h = hashlib.sha256()
        split_names = [SPLITS[s] for s in self.splits.tolist()] if self.splits is not None else None
        names = self.class_names
        chunk = []
        for i, (p, lab, size) in enumerate(zip(self.paths, self.labels.tolist(), self.sizes.tolist())):
            chunk.append(f"{p}\t{names[lab]}\t{split_names[i] if split_names else ''}\t{size}\n")
            if len(chunk) >= 65536:
                h.update("".join(chunk).encode("utf-8"))
                chunk = []
        h.update("".join(chunk).encode("utf-8"))
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading a collection
# ---------------------------------------------------------------------------------------------

def _list_safe(rel: str, where: str) -> None:
    """Refuse a path the ``path label`` list format cannot hold."""
    if any(c.isspace() for c in rel):
        raise BadInputError(f"{where}: the path {rel!r} contains white space, which the `path label` lists cannot "
                            "hold; rename the file or folder (e.g. spaces to _)")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(f"{where}: the file name {rel!r} is not valid UTF-8; rename it") from None


def _class_order(names) -> list:
    """Class names in id order: numeric when every name is an integer, else by string."""
    names = list(names)
    try:
        return sorted(names, key=lambda n: (int(n), n))
    except ValueError:
        return sorted(names)


def _check_unique_files(keys: dict, key, where: str, rel: str, size: int) -> None:
    """Refuse an empty file or a second path to the same file (a hard or symbolic link); ``where``
    names the file in the message."""
    if size == 0:
        raise BadInputError(f"{where}: empty file (0 bytes); remove it or replace it with the image")
    previous = keys.setdefault(key, rel)
    if previous != rel:
        raise BadInputError(f"{where}: the same file as {previous} (a link); each image may appear once")


def scan_folder(root: str) -> Collection:
    """A folder per class: every image file under ``<root>/<class>/`` (sub-folders included)."""
    root = os.path.abspath(root)
    ignored, class_dirs = [], []
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            ignored.append(e.name)
        elif e.is_dir():
            class_dirs.append(e.name)
        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
            raise BadInputError(f"{e.path}: an image directly in the collection folder; images go into one folder "
                                f"per class, {root}/<class>/<image>")
        else:
            ignored.append(e.name)
    if not class_dirs:
        raise BadInputError(f"{root}: no class folder; expected {root}/<class>/<image> (or give a CSV of path,label)")
    paths, labels, sizes, inodes = [], [], [], {}
    names = _class_order(class_dirs)
    for label, name in enumerate(names):
        _list_safe(name, os.path.join(root, name))
        found = []
        stack = [name]
        while stack:
            rel_dir = stack.pop()
            with os.scandir(os.path.join(root, rel_dir)) as it:
                for e in it:
                    rel = f"{rel_dir}/{e.name}"
                    if e.name.startswith("."):
                        ignored.append(rel)
                    elif e.is_dir(follow_symlinks=False):
                        stack.append(rel)
                    elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
                        st = e.stat()
                        found.append((rel, st.st_size, (st.st_dev, st.st_ino)))
                    else:
                        ignored.append(rel)
        if not found:
            raise BadInputError(f"{os.path.join(root, name)}: empty class folder (no image file with one of the "
                                f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or add its images")
        found.sort()
        for rel, size, key in found:
            where = os.path.join(root, rel)
            _list_safe(rel, where)
            _check_unique_files(inodes, key, where, rel, size)
            paths.append(rel)
            sizes.append(size)
        labels.extend([label] * len(found))
    return Collection("folder", root, root, paths, np.asarray(labels, dtype=np.int64), names,
                      np.asarray(sizes, dtype=np.int64), ignored=ignored)


@user_file_reader
def read_csv(csv_path: str, image_root: str = None) -> Collection:
    """A CSV of ``path,label[,split]`` (header required); paths relative to ``image_root``
    (default: the CSV's folder)."""
    csv_path = os.path.abspath(csv_path)
    root = os.path.abspath(image_root) if image_root else os.path.dirname(csv_path)
    if not os.path.isdir(root):
        raise BadInputError(f"--image-root {root} is not a folder")
    csv.field_size_limit(2 ** 31 - 1)
    cols, header, reader = csv_rows(csv_path, ("path", "label"), ("split",), lower=True)
    col_path, col_label, col_split = cols["path"], cols["label"], cols.get("split")
    width = max(cols.values()) + 1
    paths, names, splits, lines, sizes = [], [], [], [], []
    first_line, inodes = {}, {}
    root_prefix = root.rstrip(os.sep) + os.sep
    for line, row in reader:
        if not row or not any(x.strip() for x in row):
            continue
        where = f"{csv_path}:{line}"
        if len(row) < width:
            raise BadInputError(f"{where}: the row has {len(row)} fields, fewer than the header's {len(header)}")
        rel, label = row[col_path], row[col_label]
        if not rel.strip():
            raise BadInputError(f"{where}: the path is blank")
        if not label.strip():
            raise BadInputError(f"{where}: the label of {rel.strip()} is blank; every image needs its class")
        list_safe(label, "label", where)
        list_safe(rel, "path", where)
        if col_split is not None:
            split = row[col_split].strip().lower()
            if split not in SPLITS:
                shown = "blank" if not split else repr(row[col_split].strip())
                raise BadInputError(f"{where}: split is {shown}; expected train, query or gallery")
            splits.append(SPLITS.index(split))
        if os.path.isabs(rel):
            if not rel.startswith(root_prefix):
                raise BadInputError(f"{where}: the absolute path {rel} is not under the image root {root}; give paths "
                                    "relative to --image-root (default: the CSV's folder)")
            rel = rel[len(root_prefix):]
        if ".." in rel.replace("\\", "/").split("/"):
            raise BadInputError(f"{where}: path {rel!r} contains '..' and would leave the image root {root}")
        rel = posixpath.normpath(rel)
        _list_safe(rel, where)
        previous = first_line.setdefault(rel, line)
        if previous != line:
            raise BadInputError(f"{where}: {rel} is already listed at line {previous}; each image may appear once")
        try:
            st = os.stat(os.path.join(root, rel))
        except FileNotFoundError:
            raise BadInputError(f"{where}: {rel} does not exist under the image root {root}") from None
        except OSError as e:
            raise BadInputError(f"{where}: {rel}: cannot read it ({e.strerror or e})") from None
        if not stat.S_ISREG(st.st_mode):
            raise BadInputError(f"{where}: {rel} is not a regular file")
        _check_unique_files(inodes, (st.st_dev, st.st_ino), f"{where}: {rel}", rel, st.st_size)
        paths.append(rel)
        names.append(label)
        lines.append(line)
        sizes.append(st.st_size)
    if not paths:
        raise BadInputError(f"{csv_path}: no data rows under the header")
    class_names = _class_order(set(names))
    ids = {n: i for i, n in enumerate(class_names)}
    labels = np.fromiter((ids[n] for n in names), dtype=np.int64, count=len(names))
    return Collection("csv", csv_path, root, paths, labels, class_names, np.asarray(sizes, dtype=np.int64),
                      splits=np.asarray(splits, dtype=np.int8) if col_split is not None else None, lines=lines)


def load_collection(src: str, image_root: str = None) -> Collection:
    """A folder per class, or a CSV file."""
    if os.path.isdir(src):
        if image_root:
            raise BadInputError(f"--image-root is for a CSV source; {src} is a folder (its class folders hold the "
                                "images)")
        return scan_folder(src)
    if os.path.isfile(src):
        return read_csv(src, image_root)
    raise BadInputError(f"--src {src} does not exist; give a folder per class (<root>/<class>/<image>) or a CSV of "
                        "path,label")


def drop_singletons(coll: Collection, skip: bool) -> Collection:
    """Refuse (or, with ``skip``, drop and record) the classes of one image."""
    counts = np.bincount(coll.labels, minlength=len(coll.class_names))
    single = np.flatnonzero(counts == 1)
    if not single.size:
        return coll
    if not skip:
        i = int(np.flatnonzero(coll.labels == single[0])[0])
        where = coll.where(i) if coll.kind == "csv" else os.path.join(coll.image_root, coll.class_names[single[0]])
        raise BadInputError(f"{where}: class {coll.class_names[single[0]]!r} has one image ({single.size} "
                            f"class{'es' if single.size > 1 else ''} of one image in all); a class needs two (one to "
                            "query, one to find) and for training: add images, "
                            "remove the class, or pass --skip-singletons to leave such classes out")
    keep = counts[coll.labels] > 1
    if not keep.any():
        raise BadInputError(f"{coll.source}: every class has one image; nothing to train or test on")
    old_to_new = np.full(len(coll.class_names), -1, dtype=np.int64)
    kept = np.flatnonzero(counts > 1)
    old_to_new[kept] = np.arange(kept.size)
    idx = np.flatnonzero(keep).tolist()
    return Collection(coll.kind, coll.source, coll.image_root, [coll.paths[i] for i in idx],
                      old_to_new[coll.labels[keep]], [coll.class_names[c] for c in kept.tolist()],
                      coll.sizes[keep], coll.splits[keep] if coll.splits is not None else None,
                      [coll.lines[i] for i in idx] if coll.lines is not None else None, coll.ignored,
                      [coll.class_names[c] for c in single.tolist()])


def check_decode(coll: Collection, workers: int = None) -> None:
    """Decode every image (bct.data.image) and refuse a file that does not decode or whose content
    equals another's; the first bad one in input order is reported."""
    from bct.data.image import BadImageError, decode_rgb, read_image_bytes

    def one(i):
        path = os.path.join(coll.image_root, coll.paths[i])
        try:
            data = read_image_bytes(path)
            decode_rgb(data, path, min_size=lambda w, h: (min(w, 64), min(h, 64)))
        except BadImageError as e:
            return False, e.reason
        return True, hashlib.sha256(data).hexdigest()

    workers = workers or min(8, os.cpu_count() or 1)
    seen = {}
    with ThreadPoolExecutor(workers) as pool:
        for i, (ok, value) in enumerate(pool.map(one, range(len(coll.paths)), chunksize=64)):
            if not ok:
                raise BadInputError(f"{coll.where(i)}: {value}")
            previous = seen.setdefault(value, i)
            if previous != i:
                raise BadInputError(f"{coll.where(i)}: the same content as {coll.paths[previous]}; "
                                    "each image may appear once (remove the copy)")


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

def _grouped(labels: np.ndarray) -> np.ndarray:
    """Image indices grouped class by class (ascending id), input order inside a class."""
    return np.argsort(labels, kind="stable")


def _query_count(n: int, fraction: float) -> int:
    return min(n - 1, max(1, int(fraction * n)))


def eval_split(coll: Collection, s: Settings) -> np.ndarray:
    """Int8 (N,): the role of every image, an index of SPLITS (train, query, gallery)."""
    if coll.splits is not None:
        return coll.splits.copy()
    num_classes = len(coll.class_names)
    role = np.zeros(len(coll.paths), dtype=np.int8)
    order = _grouped(coll.labels)
    counts = np.bincount(coll.labels, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.RandomState()
    if s.held == "classes":
        held = class_split(num_classes, s.eval_fraction, s.seed)
        if held.sum() < 2:
            raise BadInputError(f"--eval-fraction {s.eval_fraction} of {num_classes} classes holds out "
                                f"{int(held.sum())} class(es); the retrieval set needs two: raise --eval-fraction "
                                "or use --query images")
        if num_classes - held.sum() < 2:
            raise BadInputError(f"--eval-fraction {s.eval_fraction} of {num_classes} classes leaves "
                                f"{num_classes - int(held.sum())} training class(es); lower it")
    else:
        held = counts >= 4
        if not held.any():
            raise BadInputError(f"{coll.source}: --query images holds out images of classes of four or more images, "
                                "and there is none; add images or use --query classes")
    for c in np.flatnonzero(held).tolist():
        n = int(counts[c])
        take = n if s.held == "classes" else max(2, int(s.eval_fraction * n))
        if s.held == "images" and n - take < 1:
            take = n - 1
        rng.seed(s.seed + c)
        a = np.arange(n)
        rng.shuffle(a)
        members = order[starts[c]:starts[c] + n]
        q = _query_count(take, s.query_fraction)
        role[members[a[:q]]] = 1
        role[members[a[q:take]]] = 2
    return role


def _check_eval(coll: Collection, role: np.ndarray) -> None:
    """Every query needs a gallery image of its class; train, query and gallery must not be empty."""
    for k, name in enumerate(SPLITS):
        if not (role == k).any():
            raise BadInputError(f"{coll.source}: no {name} image" + (" in the split column" if coll.splits is not None
                                                                     else ""))
    in_gallery = np.zeros(len(coll.class_names), dtype=bool)
    in_gallery[coll.labels[role == 2]] = True
    bad = np.flatnonzero((role == 1) & ~in_gallery[coll.labels])
    if bad.size:
        i = int(bad[0])
        raise BadInputError(f"{coll.where(i)}: a query of class {coll.class_names[coll.labels[i]]!r} with no gallery "
                            "image of its class, so it has nothing to find; add one with split gallery")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

class _Files:
    """The text files of one preparation, written into the temporary folder, hashed and counted."""

    def __init__(self, tmp: str):
        self.tmp, self.records = tmp, {}

    def write(self, name: str, text: str) -> None:
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = text.encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.records[name] = {"lines": text.count("\n"), "sha256": hashlib.sha256(data).hexdigest()}


def _list_text(paths: list, idx: np.ndarray, labels: np.ndarray) -> str:
    return "".join(f"{paths[i]} {lab}\n" for i, lab in zip(idx.tolist(), labels.tolist()))


def _existing(out: str, settings: dict, inputs: dict):
    """The manifest of ``out`` when it holds this very preparation; None when ``out`` is free;
    BadInputError when it holds anything else."""
    if not os.path.exists(out):
        return None
    if not os.path.isdir(out):
        raise BadInputError(f"--out {out} is a file; give a folder")
    manifest_path = os.path.join(out, MANIFEST)
    if not os.path.isfile(manifest_path):
        if not os.listdir(out):
            return None
        raise BadInputError(f"--out {out} is a non-empty folder without a {MANIFEST} of this tool; give a new folder")
    try:
        old = json.loads(read_text(manifest_path))
    except ValueError:
        raise BadInputError(f"{manifest_path}: not valid JSON; remove {out} or give another --out") from None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise BadInputError(f"{manifest_path} is not a manifest of bct.tools.prepare_images; give another --out")
    for key in FLAGS:
        was, now = old.get("settings", {}).get(key), settings[key]
        if was != now:
            raise BadInputError(f"--out {out} was prepared with {FLAGS[key]} {_shown(was)} (this run: {_shown(now)}); "
                                + rerun_hint("give another --out, or remove that folder to replace it"))
    was = old.get("input", {})
    for key, what in (("source", "source"), ("image_root", "image root")):
        if was.get(key) != inputs[key]:
            raise BadInputError(f"--out {out} was prepared from the {what} {was.get(key)} (this run: {inputs[key]}); "
                                + rerun_hint("give another --out, or remove that folder to replace it"))
    if was.get("digest") != inputs["digest"]:
        raise BadInputError(f"--out {out} was prepared from another content of {inputs['source']} "
                            f"({was.get('images')} images in {was.get('classes')} classes, now {inputs['images']} in "
                            f"{inputs['classes']}; names, labels or sizes changed); "
                            + rerun_hint("give another --out, or remove that folder to replace it"))
    for name, record in old.get("files", {}).items():
        path = os.path.join(out, name)
        if not os.path.isfile(path) or file_digest(path) != record.get("sha256"):
            raise BadInputError(f"{path} was changed or removed since the preparation (its sha256 is in "
                                f"{manifest_path}); "
                                + rerun_hint(f"remove {out} and prepare again"))
    return old


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def prepare_collection(src: str, out: str, settings: Settings = Settings(), image_root: str = None) -> dict:
    """Prepare ``src`` (a folder per class or a CSV) into ``out`` and return the manifest, with
    ``"reused": True`` when ``out`` already held this preparation. Every check runs before anything
    is written; the folder appears complete or not at all."""
    settings.check()
    out = os.path.abspath(out)
    src_abs = os.path.abspath(src)
    if os.path.isdir(src_abs) and (out == src_abs or out.startswith(src_abs.rstrip(os.sep) + os.sep)):
        raise BadInputError(f"--out {out} is inside the collection {src_abs}; write the preparation elsewhere "
                            "(it would be read as a class folder next time)")
    found = load_collection(src, image_root)
    digest = found.digest()  # of the whole input, one-image classes included
    coll = drop_singletons(found, settings.skip_singletons)
    num_classes = len(coll.class_names)
    inputs = {"kind": coll.kind, "source": coll.source, "image_root": coll.image_root, "images": len(found.paths),
              "classes": len(found.class_names), "split_column": coll.splits is not None, "digest": digest,
              "ignored_files": len(coll.ignored), "skipped_singleton_classes": len(coll.skipped_classes)}
    settings, choice = chosen_splits(num_classes, settings, coll.splits is not None)
    settings_dict = asdict(settings)
    old = _existing(out, settings_dict, inputs)
    if old is not None:
        old["reused"] = True
        old["choice"] = choice
        return old
    if num_classes + settings.seed - 1 >= 2 ** 32:
        raise BadInputError(f"--seed {settings.seed} is too large: class i is seeded with seed + i, which must stay "
                            f"below 2**32 for {num_classes} classes")
    if settings.check_decode:
        check_decode(coll)

    role = eval_split(coll, settings)
    _check_eval(coll, role)
    # Training classes: those with a training image, in id order; train ids 0..C_train-1.
    train_idx = np.flatnonzero(role == 0)
    train_idx = train_idx[_grouped(coll.labels[train_idx])]
    train_classes = np.unique(coll.labels[train_idx])
    c_train = int(train_classes.size)
    if c_train < 2:
        raise BadInputError(f"{coll.source}: {c_train} training class; training needs at least two")
    to_train = np.full(num_classes, -1, dtype=np.int64)
    to_train[train_classes] = np.arange(c_train)
    train_labels = to_train[coll.labels[train_idx]]
    counts = np.bincount(train_labels, minlength=c_train)
    if settings.split == "class":
        is_old = class_split(c_train, settings.old_fraction, settings.seed)
        if is_old.sum() < 2:
            raise BadInputError(f"--old-fraction {settings.old_fraction} of {c_train} training classes gives the old "
                                f"model {int(is_old.sum())} class (int({c_train} * {settings.old_fraction})), and it "
                                "needs two to learn anything: raise --old-fraction, add classes, or use --split data")
        relabel = class_split_labels(is_old)
        full_labels = relabel[train_labels]
        old_mask = is_old[train_labels]
        old_labels = full_labels[old_mask]
        n_old_classes = int(is_old.sum())
        class_role = np.where(is_old, "old", "new")
    else:
        if settings.seed + c_train - 1 >= 2 ** 32:
            raise BadInputError(f"--seed {settings.seed} is too large for {c_train} classes (seed + i < 2**32)")
        old_mask = data_split(counts, settings.old_fraction, settings.seed)[0]
        full_labels = train_labels
        old_labels = train_labels[old_mask]
        n_old_classes = c_train
        class_role = np.full(c_train, "both")
    old_idx = train_idx[old_mask]

    eval_order = _grouped(coll.labels)
    query_idx = eval_order[role[eval_order] == 1]
    gallery_idx = eval_order[role[eval_order] == 2]

    class_lines = ["# id\ttrain_label\trole\timages\tname\n"]
    all_counts = np.bincount(coll.labels, minlength=num_classes)
    for c, name in enumerate(coll.class_names):
        t = int(to_train[c])
        label, r = ("-", "eval") if t < 0 else (str(int(relabel[t] if settings.split == "class" else t)),
                                                str(class_role[t]))
        class_lines.append(f"{c}\t{label}\t{r}\t{int(all_counts[c])}\t{name}\n")

    counts_out = {
        "classes": num_classes,
        "images": len(coll.paths),
        "train_classes": c_train,
        "train_images": int(train_idx.size),
        "old_classes": n_old_classes,
        "old_images": int(old_idx.size),
        "eval_classes": int(np.unique(coll.labels[role > 0]).size),
        "queries": int(query_idx.size),
        "gallery": int(gallery_idx.size),
    }
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes the folder private; the result gets the usual mode
        files = _Files(tmp)
        files.write(CLASSES_FILE, "".join(class_lines))
        files.write(OLD_LIST, _list_text(coll.paths, old_idx, old_labels))
        files.write(FULL_LIST, _list_text(coll.paths, train_idx, full_labels))
        files.write(f"{EVAL_DIR}/{QUERY_LIST}", _list_text(coll.paths, query_idx, coll.labels[query_idx]))
        files.write(f"{EVAL_DIR}/{GALLERY_LIST}", _list_text(coll.paths, gallery_idx, coll.labels[gallery_idx]))
        set_json = {"format": SET_FORMAT, "version": SET_VERSION, "image_root": coll.image_root,
                    "num_queries": counts_out["queries"], "num_gallery": counts_out["gallery"]}
        files.write(f"{EVAL_DIR}/{SET_FILE}", json.dumps(set_json, indent=2) + "\n")
        manifest = {
            "format": FORMAT, "version": VERSION,
            "settings": settings_dict,
            "input": inputs,
            "counts": counts_out,
            "train": {"root": coll.image_root, "old_list": os.path.join(out, OLD_LIST),
                      "full_list": os.path.join(out, FULL_LIST), "old_num_classes": n_old_classes,
                      "new_num_classes": c_train},
            "eval": os.path.join(out, EVAL_DIR),
            "ignored": coll.ignored[:20],
            "skipped_singleton_classes": coll.skipped_classes[:20],
            "files": files.records,
        }
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if os.path.isdir(out):
            os.rmdir(out)  # _existing let only an empty folder through
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["reused"] = False
    manifest["choice"] = choice
    return manifest

