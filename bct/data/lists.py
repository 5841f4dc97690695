"""Readers of the plain-text lists every stage consumes (Dataset.md).

Three line formats, one item per line, fields separated by white space:

- image list:  ``relative/path.jpg <label>``           (training lists, label_<C>.txt)
- index list:  ``relative/path.jpg <row>``             (gldv2_gallery_list.txt, query lists)
- gt list:     ``relative/path.jpg <row> g1,g2,...``   (gldv2_<usage>_query_gt.txt)

Item i of a list is always line i+1 of its file, so errors raised later (a bad image, a label out
of range) can name the line. Empty lines are therefore refused, except trailing ones at the end of
the file. Every error is a one-line ``BadInputError`` naming the file and the 1-based line.

Files are read as UTF-8 with LF, CRLF or CR line ends (bct.data.userfiles); a byte-order mark at the
start is skipped. Paths are normalised
(``./x/a.jpg`` and ``x//a.jpg`` are ``x/a.jpg``) before duplicates are looked for, and the lists
hand out the normalised form.
"""
import os
import posixpath

import numpy as np

from bct.data.userfiles import read_lines, user_file_reader
from bct.utils.errors import BadInputError

_MAKE_HINT = ("the GLDv2 lists are written by `python -m bct.tools.prepare_gldv2 --root {root}`, the synthetic "
              "ones by `python -m bct.tools.make_synthetic`")


def _read_lines(list_path: str) -> list:
    """The lines of a list file without line ends and without trailing blank lines."""
    if not os.path.isfile(list_path):
        root = os.path.dirname(os.path.abspath(list_path))
        raise BadInputError(f"list file {list_path} does not exist ({_MAKE_HINT.format(root=root)})")
    lines = read_lines(list_path)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise BadInputError(f"{list_path}: the list is empty (expected one `relative/path.jpg label` per line)")
    return lines


def check_relative_path(path: str, where: str) -> None:
    """Refuse a list path that would leave the image root (absolute, or with a `..` part)."""
    if os.path.isabs(path) or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise BadInputError(f"{where}: path {path!r} is absolute; list paths must be relative to the image root")
    if ".." in path.replace("\\", "/").split("/"):
        raise BadInputError(f"{where}: path {path!r} contains '..' and would leave the image root")


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInputError(f"{where}: {what} {text!r} is not an integer") from None
    if value < 0:
        raise BadInputError(f"{where}: {what} {value} is negative (expected 0 or more)")
    return value


def _parse_path_int_lines(list_path: str, n_fields: int, what: str, expected: str):
    """Split every line into fields; check the path and the integer second field.

    Returns (paths, ints (N,) int64, extra_fields) where extra_fields holds field 3 when
    n_fields == 3. About 1 s per million lines: the error message of a line is only built when
    the line is bad.
    """
    lines = _read_lines(list_path)
    paths, ints, extra = [], np.empty(len(lines), dtype=np.int64), []
    first_line = {}
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) != n_fields:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise BadInputError(f"{list_path}:{i + 1}: expected {n_fields} fields `{expected}`, "
                                f"got {len(fields)}: {shown!r}")
        path = written = fields[0]
        if path[0] in "/\\" or path[1:2] == ":" or ".." in path:
            check_relative_path(path, f"{list_path}:{i + 1}")
        if "//" in path or "/." in "/" + path or path.endswith("/"):
            path = posixpath.normpath(path)
        try:
            value = int(fields[1])
        except ValueError:
            value = -1
        ints[i] = value if value >= 0 else _parse_int(fields[1], what, f"{list_path}:{i + 1}")
        previous = first_line.setdefault(path, i + 1)
        if previous != i + 1:
            shown = path if written == path else f"{written!r} (that is {path})"
            raise BadInputError(f"{list_path}:{i + 1}: path {shown} already listed at line {previous}; "
                                "each image may appear once")
        paths.append(path)
        if n_fields == 3:
            extra.append(fields[2])
    return paths, ints, extra


@user_file_reader
def read_image_list(list_path: str, root: str):
    """Read ``relative/path.jpg label`` lines.

    Returns (paths, labels): paths a list of N strings relative to ``root``, labels an int64
    array of shape (N,). ``root`` must be an existing folder (the images are looked up there).
    """
    paths, labels, _ = _parse_path_int_lines(list_path, 2, "label", "relative/path.jpg label")
    if root and not os.path.isdir(root):
        raise BadInputError(f"image root {root} (of list {list_path}) is not a folder; set the ROOT key "
                            "to the folder the list paths are relative to")
    return paths, labels


def check_labels(labels: np.ndarray, num_classes: int, list_path: str,
                 key: str = "OLD_MODEL.NUM_CLASSES or NEW_MODEL.NUM_CLASSES (the model that reads this list)"
                 ) -> None:
    """Fail, naming the first offending line, when a label (shape (N,)) is >= num_classes.

    ``key`` is the config key the message tells the user to change.
    """
    labels = np.asarray(labels)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        needed = int(labels.max()) + 1
        raise BadInputError(
            f"{list_path}:{i + 1}: label {int(labels[i])} is out of range for NUM_CLASSES = {num_classes}; "
            f"set {key} to {needed} (the list's largest label + 1) or use the list made for this model")


@user_file_reader
def read_index_list(list_path: str):
    """Read ``relative/path.jpg row`` lines whose rows count 0, 1, 2, ... in line order.

    Returns paths, a list of N strings relative to the list's image root.
    """
    paths, rows, _ = _parse_path_int_lines(list_path, 2, "row", "relative/path.jpg row")
    _check_rows(rows, list_path)
    return paths


@user_file_reader
def read_gt_list(list_path: str):
    """Read ``relative/path.jpg row g1,g2,...`` lines (rows 0, 1, 2, ... in line order).

    Returns (paths, gts): paths a list of N strings, gts a list of N lists of gallery rows (ints,
    in listed order).
    """
    paths, rows, fields = _parse_path_int_lines(list_path, 3, "row", "relative/path.jpg row g1,g2,...")
    _check_rows(rows, list_path)
    gts = []
    for i, field in enumerate(fields):
        where = f"{list_path}:{i + 1}"
        gts.append([_parse_int(g, "gallery row", where) for g in field.split(",")])
    return paths, gts


@user_file_reader
def read_query_list(list_path: str) -> list:
    """Read a list of query images: ``relative/path [label]`` lines (the label, if any, is not used;
    blank lines are skipped). Returns the paths; an empty list or a line of more fields is one line."""
    paths = []
    for i, line in enumerate(read_lines(list_path, "query list")):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise BadInputError(f"{list_path}:{i + 1}: expected `relative/path [label]`, got {line!r}")
        paths.append(fields[0])
    if not paths:
        raise BadInputError(f"{list_path}: the query list is empty")
    return paths


def read_vectors(path: str, flag: str = "--vectors") -> np.ndarray:
    """An (N, D) array of vectors from a ``.npy`` file or an ``.npz`` file holding exactly one array
    (memory-mapped where the format allows). Anything else is one line naming ``flag``, the file and
    what is wrong."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise BadInputError(f"{flag} {path}: not a .npy or .npz array file ({type(e).__name__}: {e})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise BadInputError(f"{flag} {path}: an .npz file must hold exactly one array; it holds "
                                    f"{len(data.files)} ({', '.join(data.files[:5]) or 'none'})")
            try:
                data = data[data.files[0]]
            except ValueError as e:
                raise BadInputError(f"{flag} {path}: its array cannot be read ({e})") from None
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise BadInputError(f"{flag} {path}: expected an (N, D) array of numbers, got {data.dtype} of shape "
                            f"{data.shape}")
    return data


def _check_rows(rows: np.ndarray, list_path: str) -> None:
    bad = np.flatnonzero(rows != np.arange(len(rows)))
    if bad.size:
        i = int(bad[0])
        raise BadInputError(f"{list_path}:{i + 1}: row {int(rows[i])} where {i} was expected "
                            "(rows count 0, 1, 2, ... in line order)")
