"""GLDv2 preparation: the training lists, the class and data splits and the retrieval lists of
Dataset.md, from the official CSV files (no pandas, no mxnet).

Inputs in ``root`` (only train_clean.csv, or ``label_file``, is required):

- ``train_clean.csv``: columns ``landmark_id,images``; ``images`` is a space-separated list of
  image ids. Image ``<id>`` lives at ``train/<id[0]>/<id[1]>/<id[2]>/<id>.jpg``.
- ``index.csv`` (column ``id``): the retrieval gallery.
- ``retrieval_solution_v2.1.csv`` (columns ``id,images,Usage``): test queries, their relevant
  index images, and Usage Public / Private / Ignored (Ignored rows have images "None").

Outputs in ``root`` (P = ratio as a percentage, e.g. 30 and 70 for ratio 0.3):

- ``label_<C>.txt``: every training image, ``train/a/b/c/<id>.jpg <label>``, labels 0..C-1 in
  ascending numeric landmark-id order, written class by class, images in CSV order (with
  ``label_file`` its lines are copied in their order).
- ``gldv2_train_old_<P>percent_class.txt`` / ``gldv2_train_new_100percent_class.txt``: class
  split. NumPy legacy Mersenne Twister seeded with ``seed``; ``arange(C)`` shuffled; the first
  ``int(C * ratio)`` entries are the old classes. Old classes get 0..N_old-1 in ascending
  original label, new classes N_old.. in ascending original label; both files class by class in
  ascending original label.
- ``gldv2_train_old_<P>percent_data.txt`` / ``gldv2_train_new_<100-P>percent_data.txt``: data
  split, labels unchanged. Per class i (ascending): 1 image -> both lists; 2-3 -> the first to
  old, the rest to new; >= 4 -> generator seeded with ``seed + i``, ``a = arange(n)`` shuffled,
  positions ``a[:int(ratio * n)]`` to old, the others to new; input order kept in both.
- ``gldv2_gallery_list.txt``, ``gldv2_{public,private}_query_list.txt`` and
  ``gldv2_{public,private}_query_gt.txt`` when the retrieval CSVs are present (see bct.data.gldv2).
- ``manifest.json``: for every written file its line count and sha256, plus the counts.

Every input is read and checked before anything is written, and all outputs are committed
together (bct.utils.fileio.AtomicGroup), the manifest last: a failed or degenerate preparation
(an empty index.csv, no query of a usage, a ratio that leaves no old class or an empty list)
stops with one line and leaves the folder's earlier lists and manifest as they were.

The seeded shuffles use a private ``np.random.RandomState``: ``RandomState(s).shuffle`` draws
exactly what ``np.random.seed(s); np.random.shuffle`` draws from the legacy global generator
(the reference's calls), without disturbing the caller's global NumPy state.
"""
import csv
import hashlib
import json
import os
import re
from contextlib import closing

import numpy as np

from bct.data.lists import read_image_list
from bct.utils.errors import BadInputError
from bct.data.userfiles import csv_rows, user_file_reader
from bct.utils.fileio import AtomicGroup

TRAIN_CSV = "train_clean.csv"
INDEX_CSV = "index.csv"
SOLUTION_CSV = "retrieval_solution_v2.1.csv"
USAGES = ("public", "private")

_BAD_ID_CHAR = re.compile(r"[^0-9A-Za-z_\-\s]")


def image_path(folder: str, image_id: str) -> str:
    """GLDv2 layout: ``<folder>/<id[0]>/<id[1]>/<id[2]>/<id>.jpg``."""
    return f"{folder}/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


def percent_tag(fraction: float) -> str:
    """100 * fraction as it appears in the file names: 30 for 0.3, 12.5 for 0.125."""
    value = round(fraction * 100, 6)
    return str(int(value)) if value == int(value) else f"{value:g}"


class _ListWriter:
    """Writes one text file of an AtomicGroup, hashing and counting lines on the way."""

    def __init__(self, group: AtomicGroup, path: str):
        self.path = path
        self.tmp = group.tmp(path)
        self.sha = hashlib.sha256()
        self.lines = 0

    def __enter__(self):
        self.f = open(self.tmp, "w", encoding="utf-8", newline="\n")
        return self

    def write(self, text: str) -> None:
        self.f.write(text)
        self.sha.update(text.encode("utf-8"))
        self.lines += text.count("\n")

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None and self.lines == 0:
            raise BadInputError(f"{self.path}: the preparation would write an empty list; nothing written "
                                "(the inputs or --ratio leave no image for it)")
        return False

    def record(self) -> dict:
        return {"lines": self.lines, "sha256": self.sha.hexdigest()}


def _select(paths: list, mask: np.ndarray) -> list:
    """The paths where the bool mask (N,) is True, in order."""
    return [p for p, keep in zip(paths, mask.tolist()) if keep]


def _lines(paths, labels) -> str:
    return "".join(f"{p} {l}\n" for p, l in zip(paths, labels))


# ---------------------------------------------------------------------------------------------
# Reading the inputs
# ---------------------------------------------------------------------------------------------

def _open_csv(path: str, columns: tuple):
    """Open a CSV file; return (closable lines, reader, {column: index}) after checking the header.
    The lines are decoded as UTF-8 one by one, so a byte in another encoding names its line."""
    cols, _, rows = csv_rows(path, columns)
    return closing(rows), rows, cols


def _field(row: list, col: int, path: str, line: int) -> str:
    if col >= len(row):
        raise BadInputError(f"{path}:{line}: the row has {len(row)} fields, fewer than the header")
    return row[col].strip()


def _split_ids(text: str, path: str, line: int) -> list:
    ids = text.split()
    bad = _BAD_ID_CHAR.search(text)
    if bad or any(len(i) < 3 for i in ids):
        culprit = next(i for i in ids if len(i) < 3 or _BAD_ID_CHAR.search(i))
        raise BadInputError(f"{path}:{line}: image id {culprit!r} is not a GLDv2 id "
                            "(at least 3 characters of 0-9, a-z, A-Z, _ or -)")
    return ids


@user_file_reader
def _read_train_csv(path: str):
    """Classes from train_clean.csv: returns (paths grouped class by class, counts (C,))."""
    f, reader, cols = _open_csv(path, ("landmark_id", "images"))
    rows = []
    first_line = {}
    with f:
        for line, row in reader:
            if not row:
                continue
            text = _field(row, cols["landmark_id"], path, line)
            try:
                landmark = int(text)
            except ValueError:
                raise BadInputError(f"{path}:{line}: landmark_id {text!r} is not an integer") from None
            previous = first_line.setdefault(landmark, line)
            if previous != line:
                raise BadInputError(f"{path}:{line}: landmark_id {landmark} already appears at line {previous}; "
                                    "each landmark must have one row")
            ids = _split_ids(_field(row, cols["images"], path, line), path, line)
            if not ids:
                raise BadInputError(f"{path}:{line}: landmark {landmark} lists no image ids")
            rows.append((landmark, line, ids))
    if not rows:
        raise BadInputError(f"{path}: no data rows under the header")
    rows.sort(key=lambda r: r[0])
    counts = np.fromiter((len(r[2]) for r in rows), dtype=np.int64, count=len(rows))
    total = int(counts.sum())
    if len({i for r in rows for i in r[2]}) != total:
        _report_duplicate_id(rows, path)
    paths = [image_path("train", i) for r in rows for i in r[2]]
    return paths, counts


def _report_duplicate_id(rows: list, path: str) -> None:
    seen = {}
    for _, line, ids in sorted(rows, key=lambda r: r[1]):
        for i in ids:
            if i in seen:
                raise BadInputError(f"{path}:{line}: image id {i} already listed at line {seen[i]}; "
                                    "each image may appear once")
            seen[i] = line


@user_file_reader
def _read_label_file(label_file: str):
    """Classes from an existing ``path label`` list: returns (paths in file order, labels (N,),
    paths grouped class by class with file order inside a class, counts (C,))."""
    paths, labels = read_image_list(label_file, "")
    num_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise BadInputError(f"{label_file}: labels must cover 0..{num_classes - 1} but label {int(empty[0])} "
                            f"has no image ({empty.size} labels are unused); relabel the classes contiguously")
    order = np.argsort(labels, kind="stable")
    return paths, labels, [paths[j] for j in order], counts


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

def check_fractions(fractions) -> tuple:
    """The growing fractions of a generation chain as a tuple of floats: each in (0, 1], strictly
    increasing, the first below 1 (it is the old model's ratio)."""
    fractions = tuple(float(f) for f in fractions)
    if not fractions:
        raise BadInputError("--fractions is empty; give e.g. 0.3,0.6,1.0")
    if any(not 0.0 < f <= 1.0 for f in fractions) or fractions[0] >= 1.0:
        raise BadInputError(f"--fractions {','.join(f'{f:g}' for f in fractions)}: every fraction must be in (0, 1] "
                            "and the first below 1 (it is the old model's ratio)")
    if any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise BadInputError(f"--fractions {','.join(f'{f:g}' for f in fractions)}: the fractions must grow strictly, "
                            "each generation's split contains the previous one")
    return fractions


def class_generations(num_classes: int, fractions, seed: int) -> np.ndarray:
    """Int64 (C,): the 0-based index of the first fraction whose split holds each class, len(fractions)
    for a class that none holds. The classes are the reference's seeded shuffle of arange(C); the split
    of fraction f is its first int(C * f) entries, so each split contains the previous one."""
    ids = np.arange(num_classes)
    np.random.RandomState(seed).shuffle(ids)
    generation = np.full(num_classes, len(fractions), dtype=np.int64)
    start = 0
    for t, f in enumerate(fractions):
        stop = int(num_classes * f)
        generation[ids[start:stop]] = t
        start = stop
    return generation


def class_split(num_classes: int, ratio: float, seed: int) -> np.ndarray:
    """Bool (C,): True for the old classes (the first int(C * ratio) of a seeded shuffle of arange(C))."""
    return class_generations(num_classes, (ratio,), seed) == 0


def nested_labels(generation: np.ndarray) -> np.ndarray:
    """Int64 (C,) new label of every original label, grouped by generation (first those of generation
    0, then 1, ...) and in ascending original label inside a group; a class keeps its label in every
    later generation."""
    order = np.lexsort((np.arange(generation.size), generation))
    relabel = np.empty(generation.size, dtype=np.int64)
    relabel[order] = np.arange(generation.size)
    return relabel


def class_split_labels(is_old: np.ndarray) -> np.ndarray:
    """Int64 (C,) new label of every original label: old classes 0..N_old-1, then new classes
    N_old.., each group in ascending original label."""
    return nested_labels(np.where(is_old, 0, 1))


def data_generations(counts: np.ndarray, fractions, seed: int) -> np.ndarray:
    """Int64 (N,) over the images grouped class by class (counts (C,)): the 0-based index of the
    first fraction whose data split holds each image (len(fractions) for none).

    Per class i with n images: one image is in every split; with two or three, the first fraction
    takes the first image (the reference's rule) and fraction f > first takes the first
    max(1, int(f * n)); with four or more, ``a = arange(n)`` shuffled by a generator seeded with
    ``seed + i`` and fraction f takes positions ``a[:int(f * n)]``. Each split contains the previous one.
    """
    total = int(counts.sum())
    generation = np.full(total, len(fractions), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rng = np.random.RandomState()
    for label in range(counts.size):
        n, s = int(counts[label]), int(starts[label])
        if n == 1:
            generation[s] = 0
            continue
        if n < 4:
            order = np.arange(n)
            takes = [1] + [max(1, int(f * n)) for f in fractions[1:]]
        else:
            rng.seed(seed + label)
            order = np.arange(n)
            rng.shuffle(order)
            takes = [int(f * n) for f in fractions]
        cls = generation[s:s + n]
        done = 0
        for t, take in enumerate(takes):
            if take > done:
                cls[order[done:take]] = t
                done = take
    return generation


def data_split(counts: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Bool pair (2, N) over the images grouped class by class (counts (C,)): row 0 marks the old
    list, row 1 the new list (an image of a one-image class is in both)."""
    generation = data_generations(counts, (ratio, 1.0), seed)
    single = np.repeat(counts == 1, counts)
    return np.stack([generation == 0, (generation == 1) | single])


def nested_list_name(fraction: float, split: str) -> str:
    """File name of the nested split of ``fraction`` (split "class" or "data")."""
    return f"gldv2_train_nested_{percent_tag(fraction)}percent_{split}.txt"


# ---------------------------------------------------------------------------------------------
# Retrieval lists
# ---------------------------------------------------------------------------------------------

@user_file_reader
def _read_index(index_csv: str) -> dict:
    """{index image id: gallery row} in index.csv order."""
    f, reader, cols = _open_csv(index_csv, ("id",))
    rows = {}
    with f:
        for line, row in reader:
            if not row:
                continue
            ids = _split_ids(_field(row, cols["id"], index_csv, line), index_csv, line)
            if len(ids) != 1:
                raise BadInputError(f"{index_csv}:{line}: expected one image id, got {len(ids)}")
            image_id = ids[0]
            if image_id in rows:
                raise BadInputError(f"{index_csv}:{line}: image id {image_id} is listed twice")
            rows[image_id] = len(rows)
    if not rows:
        raise BadInputError(f"{index_csv}: no data rows under the header; nothing written")
    return rows


@user_file_reader
def _read_solution(solution_csv: str, gallery_rows: dict) -> dict:
    """{usage: [(query image path, [gallery rows])]} in file order; Ignored rows dropped."""
    f, reader, cols = _open_csv(solution_csv, ("id", "images", "Usage"))
    queries = {u: [] for u in USAGES}
    with f:
        for line, row in reader:
            if not row:
                continue
            usage = _field(row, cols["Usage"], solution_csv, line).lower()
            if usage == "ignored":
                continue
            if usage not in USAGES:
                raise BadInputError(f"{solution_csv}:{line}: Usage {usage!r} is not Public, Private or Ignored")
            ids = _split_ids(_field(row, cols["id"], solution_csv, line), solution_csv, line)
            if len(ids) != 1:
                raise BadInputError(f"{solution_csv}:{line}: expected one query id, got {len(ids)}")
            images = _field(row, cols["images"], solution_csv, line)
            if images in ("", "None"):
                raise BadInputError(f"{solution_csv}:{line}: a {usage} query with no relevant images")
            gt = []
            for g in _split_ids(images, solution_csv, line):
                if g not in gallery_rows:
                    raise BadInputError(f"{solution_csv}:{line}: image {g} is not in {INDEX_CSV}; "
                                        "use the index.csv of the same GLDv2 release")
                gt.append(gallery_rows[g])
            queries[usage].append((image_path("test", ids[0]), gt))
    empty = [u for u in USAGES if not queries[u]]
    if empty:
        raise BadInputError(f"{solution_csv}: no {empty[0].capitalize()} query (every row is Ignored or of the other "
                            "usage), so its mAP would be undefined; use the complete retrieval_solution_v2.1.csv; "
                            "nothing written")
    return queries


def _write_gallery(group: AtomicGroup, root: str, gallery_rows: dict, records: dict) -> None:
    with _ListWriter(group, os.path.join(root, "gldv2_gallery_list.txt")) as w:
        chunk = []
        for image_id, row in gallery_rows.items():
            chunk.append(f"{image_path('index', image_id)} {row}\n")
            if len(chunk) >= 65536:
                w.write("".join(chunk))
                chunk = []
        w.write("".join(chunk))
    records[os.path.basename(w.path)] = w.record()


def _write_queries(group: AtomicGroup, root: str, queries: dict, records: dict) -> None:
    """Per usage the query list and its ground truth."""
    for usage in USAGES:
        names = (f"gldv2_{usage}_query_list.txt", f"gldv2_{usage}_query_gt.txt")
        with _ListWriter(group, os.path.join(root, names[0])) as qw, \
                _ListWriter(group, os.path.join(root, names[1])) as gw:
            for i, (path, gt) in enumerate(queries[usage]):
                qw.write(f"{path} {i}\n")
                gw.write(f"{path} {i} {','.join(map(str, gt))}\n")
        records[names[0]], records[names[1]] = qw.record(), gw.record()


# ---------------------------------------------------------------------------------------------
# Entry
# ---------------------------------------------------------------------------------------------

def prepare_gldv2(root: str, ratio: float = None, seed: int = 666, label_file: str = None,
                  fractions=None) -> dict:
    """Write every list of Dataset.md into ``root`` and return the manifest (also written to
    ``root/manifest.json``).

    ``ratio`` defaults to 0.3, or to the first of ``fractions``. With ``fractions`` (growing, e.g.
    (0.3, 0.6, 1.0)) the nested splits of a generation chain are written too, for both splits:
    ``gldv2_train_nested_<P>percent_class.txt`` (the classes of every fraction up to P; a class keeps
    its label in every later file) and ``gldv2_train_nested_<P>percent_data.txt`` (labels unchanged);
    the other files do not change.
    """
    if not os.path.isdir(root):
        raise BadInputError(f"GLDv2 root {root} is not a folder; download the GLDv2 files into it (see Dataset.md)")
    if fractions:
        fractions = check_fractions(fractions)
        if ratio is not None and ratio != fractions[0]:
            raise BadInputError(f"--ratio {ratio} differs from the first of --fractions ({fractions[0]}); "
                                "the first fraction is the old model's ratio: give one of the two")
        ratio = fractions[0]
    ratio = 0.3 if ratio is None else ratio
    if not 0.0 < ratio < 1.0:
        raise BadInputError(f"--ratio must be strictly between 0 and 1, got {ratio}")
    if not 0 <= seed < 2 ** 32:
        raise BadInputError(f"--seed must be an integer in 0..{2 ** 32 - 1}, got {seed}")
    index_csv, solution_csv = os.path.join(root, INDEX_CSV), os.path.join(root, SOLUTION_CSV)
    if os.path.isfile(solution_csv) and not os.path.isfile(index_csv):
        raise BadInputError(f"{solution_csv} needs {index_csv} (its images are index ids); "
                            "download index.csv from GLDv2 into the same folder")
    csv.field_size_limit(2 ** 31 - 1)  # one landmark row can list thousands of image ids

    if label_file:
        file_paths, file_labels, paths, counts = _read_label_file(label_file)
        source = os.path.abspath(label_file)
    else:
        train_csv = os.path.join(root, TRAIN_CSV)
        if not os.path.isfile(train_csv):
            raise BadInputError(f"{train_csv} does not exist; download train_clean.csv from GLDv2 into {root} "
                                "or pass --label-file with an existing `path label` list")
        paths, counts = _read_train_csv(train_csv)
        source = os.path.abspath(train_csv)
    num_classes = int(counts.size)
    if seed + num_classes - 1 >= 2 ** 32:
        raise BadInputError(f"--seed {seed} is too large: the data split seeds class i with seed + i, "
                            f"which must stay below 2**32 for {num_classes} classes")
    labels = np.repeat(np.arange(num_classes), counts)
    is_old = class_split(num_classes, ratio, seed)
    if not is_old.any():
        raise BadInputError(f"--ratio {ratio} of {num_classes} classes gives no old class (int({num_classes} * {ratio}) "
                            "= 0); use a larger ratio or more classes; nothing written")
    # The retrieval inputs are read and checked before any list is written.
    gallery_rows, queries = None, {}
    if os.path.isfile(index_csv):
        gallery_rows = _read_index(index_csv)
        if os.path.isfile(solution_csv):
            queries = _read_solution(solution_csv, gallery_rows)
    records = {}

    with AtomicGroup() as group:
        def write(name: str, text_chunks) -> None:
            with _ListWriter(group, os.path.join(root, name)) as w:
                for chunk in text_chunks:
                    w.write(chunk)
            records[name] = w.record()

        def chunks(sel_paths, sel_labels, size: int = 200000):
            sel_labels = sel_labels.tolist()
            for s in range(0, len(sel_paths), size):
                yield _lines(sel_paths[s:s + size], sel_labels[s:s + size])

        label_name = f"label_{num_classes}.txt"
        if label_file:
            write(label_name, chunks(file_paths, file_labels))
            del file_paths, file_labels
        else:
            write(label_name, chunks(paths, labels))

        old_pct, new_pct = percent_tag(ratio), percent_tag(1.0 - ratio)
        relabel = class_split_labels(is_old)
        item_old = np.repeat(is_old, counts)
        old_class_paths = _select(paths, item_old)
        class_old_name = f"gldv2_train_old_{old_pct}percent_class.txt"
        class_new_name = "gldv2_train_new_100percent_class.txt"
        write(class_old_name, chunks(old_class_paths, relabel[labels][item_old]))
        del old_class_paths
        write(class_new_name, chunks(paths, relabel[labels]))

        to_old, to_new = data_split(counts, ratio, seed)
        data_old_name = f"gldv2_train_old_{old_pct}percent_data.txt"
        data_new_name = f"gldv2_train_new_{new_pct}percent_data.txt"
        write(data_old_name, chunks(_select(paths, to_old), labels[to_old]))
        write(data_new_name, chunks(_select(paths, to_new), labels[to_new]))

        nested = {}
        if fractions:
            class_gen = class_generations(num_classes, fractions, seed)
            item_gen, image_gen = class_gen[labels], data_generations(counts, fractions, seed)
            split_labels = {"class": nested_labels(class_gen)[labels], "data": labels}
            for t, f in enumerate(fractions):
                for split, gen in (("class", item_gen), ("data", image_gen)):
                    keep = gen <= t
                    write(nested_list_name(f, split), chunks(_select(paths, keep), split_labels[split][keep]))
                nested[percent_tag(f)] = {"fraction": f, "classes": int((class_gen <= t).sum()),
                                          "class_images": records[nested_list_name(f, "class")]["lines"],
                                          "data_images": records[nested_list_name(f, "data")]["lines"]}

        gallery = {}
        if gallery_rows is not None:
            gallery = {"gallery_images": len(gallery_rows)}
            _write_gallery(group, root, gallery_rows, records)
        if queries:
            _write_queries(group, root, queries, records)

        manifest = {
            "source": source,
            "ratio": ratio,
            "seed": seed,
            "counts": {
                "classes": num_classes,
                "old_classes": int(is_old.sum()),
                "new_classes": num_classes - int(is_old.sum()),
                "train_images": int(counts.sum()),
                "class_split_old_images": records[class_old_name]["lines"],
                "class_split_new_images": records[class_new_name]["lines"],
                "data_split_old_images": records[data_old_name]["lines"],
                "data_split_new_images": records[data_new_name]["lines"],
                **gallery,
                **{f"{u}_queries": len(q) for u, q in queries.items()},
            },
            "files": records,
        }
        if fractions:
            manifest["fractions"] = list(fractions)
            manifest["counts"]["nested"] = nested
        with open(group.tmp(os.path.join(root, "manifest.json")), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
    return manifest
