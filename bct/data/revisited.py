"""Revisited Oxford / Paris (revisitop format) ground truth and its Easy / Medium / Hard protocols
(docs/evaluation.md).

A dataset ``<name>`` lives in ``<root>/<name>/``: ``jpg/<image name>.jpg`` and
``gnd_<name>.pkl`` (``<root>/gnd_<name>.pkl``, the reference's layout, is accepted too). The pickle
holds a dict with ``imlist`` (database image names), ``qimlist`` (query image names) and ``gnd``
(one dict per query: ``bbx`` [x1, y1, x2, y2], ``easy``, ``hard``, ``junk`` as 0-based database
indices). Any name is accepted, so the synthetic benchmark uses the same format.

Pickle files can run arbitrary code when loaded, so ``load_gnd`` uses an unpickler that resolves
only plain builtin containers and scalars and what NumPy needs to rebuild arrays and scalars
(bct/utils/safe_pickle.py); every other global is refused before anything is called.

mAP is a mean over the queries that have at least one positive. A ground truth in which no query
has a positive under one protocol (say, only ``easy`` lists are filled, so Hard has none) is read:
that protocol's scores are not available (``empty_levels``). One in which no query has any positive
defines no score at all and is refused when read.

Query boxes are checked when they are used to crop (``crop_boxes``): a box that is not four finite
numbers with x1 < x2 and y1 < y2, or that lies outside its image, is refused with one line naming
the ground-truth file, the query and the box.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from bct.utils.errors import BadInputError
from bct.utils.safe_pickle import PlainDataUnpickler, RefusedGlobal

PROTOCOLS = ("easy", "medium", "hard")


def load_gnd(pkl_path: str) -> dict:
    """Load a revisitop ground-truth pickle with the restricted unpickler; returns the raw dict."""
    if not os.path.isfile(pkl_path):
        name = os.path.basename(pkl_path)
        dataset = name[len("gnd_"):-len(".pkl")] if name.startswith("gnd_") and name.endswith(".pkl") else "<dataset>"
        raise BadInputError(
            f"ground truth {pkl_path} does not exist; download {name} from revisitop "
            f"(http://cmp.felk.cvut.cz/revisitop/data/datasets/{dataset}/{name}) and put it there")
    try:
        with open(pkl_path, "rb") as f:
            return PlainDataUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise BadInputError(f"{pkl_path}: refused to unpickle {e.name}: gnd files may hold only plain "
                            "containers, numbers, strings and numpy arrays") from None
    except Exception as e:
        raise BadInputError(f"{pkl_path}: not a readable pickle ({type(e).__name__}: {e})") from None


def _index_array(value, what: str, n_db: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise BadInputError(f"{what} must be a list of database indices") from None
    if arr.size and (np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() >= n_db):
        raise BadInputError(f"{what} holds indices outside 0..{n_db - 1} (the database size is {n_db})")
    return arr.astype(np.int64)


def _validate(raw, source: str):
    """Check the gnd structure; return (imlist, qimlist, list of per-query dicts with numpy arrays)."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: expected a dict with keys imlist, qimlist, gnd, got {type(raw).__name__}")
    for key in ("imlist", "qimlist", "gnd"):
        if key not in raw:
            raise BadInputError(f"{source}: key {key!r} is missing (expected imlist, qimlist, gnd)")
    imlist, qimlist, gnd = (list(raw[k]) for k in ("imlist", "qimlist", "gnd"))
    for key, names in (("imlist", imlist), ("qimlist", qimlist)):
        bad = [i for i, n in enumerate(names) if not isinstance(n, str) or not n]
        if bad:
            raise BadInputError(f"{source}: {key}[{bad[0]}] is not a non-empty image name")
    if len(gnd) != len(qimlist):
        raise BadInputError(f"{source}: gnd has {len(gnd)} entries but qimlist has {len(qimlist)}; "
                            "expected one per query")
    n_db = len(imlist)
    checked = []
    for q, entry in enumerate(gnd):
        where = f"{source}: gnd[{q}]"
        if not isinstance(entry, dict):
            raise BadInputError(f"{where} is a {type(entry).__name__}, expected a dict with bbx, easy, hard, junk")
        for key in ("bbx", "easy", "hard", "junk"):
            if key not in entry:
                raise BadInputError(f"{where} lacks key {key!r} (expected bbx, easy, hard, junk)")
        try:
            box = [float(v) for v in np.asarray(entry["bbx"], dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            box = []
        if len(box) != 4:
            raise BadInputError(f"{where}['bbx'] must be 4 numbers [x1, y1, x2, y2]")
        checked.append({"bbx": box, **{k: _index_array(entry[k], f"{where}[{k!r}]", n_db)
                                        for k in ("easy", "hard", "junk")}})
    return imlist, qimlist, checked


def protocol_sets(gnd: list, level: str) -> list:
    """Per query {'ok': int64 array, 'junk': int64 array} of database indices for one protocol:
    easy: ok = easy, junk = junk ∪ hard; medium: ok = easy ∪ hard, junk = junk;
    hard: ok = hard, junk = junk ∪ easy."""
    if level not in PROTOCOLS:
        raise ValueError(f"protocol level must be one of {PROTOCOLS}, got {level!r}")
    out = []
    for g in gnd:
        easy, hard, junk = (np.asarray(g[k], dtype=np.int64) for k in ("easy", "hard", "junk"))
        if level == "easy":
            ok, bad = easy, np.concatenate([junk, hard])
        elif level == "medium":
            ok, bad = np.concatenate([easy, hard]), junk
        else:
            ok, bad = hard, np.concatenate([junk, easy])
        out.append({"ok": ok, "junk": bad})
    return out


_POSITIVE_LISTS = {"easy": "'easy'", "medium": "'easy' and 'hard'", "hard": "'hard'"}


def levels_without_positives(gnd: list) -> list:
    """The protocol levels under which no query of ``gnd`` has a positive (in PROTOCOLS order)."""
    return [level for level in PROTOCOLS if not any(len(p["ok"]) for p in protocol_sets(gnd, level))]


def _check_positives(gnd: list, source: str) -> None:
    """Refuse a ground truth where no query has a positive under any protocol."""
    if "medium" in levels_without_positives(gnd):
        raise BadInputError(
            f"{source}: no query has a positive image under any protocol (the {_POSITIVE_LISTS['medium']} lists "
            f"of all {len(gnd)} queries are empty), so mAP, a mean over the queries that have a positive, is "
            f"undefined; use the complete ground truth of the set")


def _box_problem(box, path: str) -> str:
    """Why ``box`` cannot crop the image at ``path`` ("" if it can). The image's size is read from its
    header; an image that cannot be opened is left to the loader, which names it."""
    if not all(np.isfinite(box)):
        return "is not four finite numbers"
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        return "is empty or inverted (expected x1 < x2 and y1 < y2)"
    try:
        from PIL import Image
        with Image.open(path) as img:
            width, height = img.size
    except Exception:  # unreadable here: the feature extraction reports the file
        return ""
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        return f"lies outside the {width} x {height} image"
    return ""


@dataclass
class RevisitedDataset:
    """One revisited-format dataset: absolute database / query image paths, query boxes
    ([x1, y1, x2, y2] floats), ``gnd`` the per-query dicts exactly as the pickle holds them, and
    the protocols (computed from a validated copy with int64 arrays)."""

    name: str
    root: str
    db_paths: list
    query_paths: list
    query_boxes: list
    gnd: list = field(repr=False)
    checked_gnd: list = field(repr=False)
    gnd_file: str = ""
    empty_levels: list = field(default_factory=list)

    def protocol(self, level: str) -> list:
        """Per query {'ok': int64 array, 'junk': int64 array} for level easy / medium / hard."""
        return protocol_sets(self.checked_gnd, level)

    def crop_boxes(self) -> list:
        """The query boxes, checked for cropping (module docstring); BadInputError on the first bad one."""
        for q, (box, path) in enumerate(zip(self.query_boxes, self.query_paths)):
            reason = _box_problem(box, path)
            if reason:
                shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
                name = os.path.splitext(os.path.basename(path))[0]
                raise BadInputError(f"{self.gnd_file}: query {q} ({name}) has the bounding box {shown}, which "
                                    f"{reason}; fix gnd[{q}]['bbx'] or set EVAL.QUERY_CROP False")
        return self.query_boxes


def gnd_path(name: str, root: str) -> str:
    """Where the ground truth of ``name`` is: ``<root>/<name>/gnd_<name>.pkl``, or the reference's
    ``<root>/gnd_<name>.pkl`` when only that exists."""
    primary = os.path.join(root, name, f"gnd_{name}.pkl")
    fallback = os.path.join(root, f"gnd_{name}.pkl")
    return fallback if not os.path.isfile(primary) and os.path.isfile(fallback) else primary


def load_revisited(name: str, root: str) -> RevisitedDataset:
    """Load dataset ``name`` (roxford5k, rparis6k, or any revisited-format set) from ``root``."""
    if not os.path.isdir(root):
        raise BadInputError(f"dataset root {root} is not a folder; set EVAL.ROOT to the folder holding {name}/")
    path = gnd_path(name, root)
    raw = load_gnd(path)
    imlist, qimlist, checked = _validate(raw, path)
    _check_positives(checked, path)
    image_dir = os.path.join(os.path.abspath(root), name, "jpg")
    if not os.path.isdir(image_dir):
        raise BadInputError(f"image folder {image_dir} does not exist; put the {name} images there as <name>.jpg")
    return RevisitedDataset(
        name=name,
        root=root,
        db_paths=[os.path.join(image_dir, f"{n}.jpg") for n in imlist],
        query_paths=[os.path.join(image_dir, f"{n}.jpg") for n in qimlist],
        query_boxes=[g["bbx"] for g in checked],
        gnd=list(raw["gnd"]),
        checked_gnd=checked,
        gnd_file=path,
        empty_levels=levels_without_positives(checked),
    )
