"""A user's own retrieval set: labelled query and gallery images in a folder (docs/evaluation.md).

The folder holds three files:

- ``set.json``     ``{"format": "bct-retrieval-set", "version": 1, "image_root": ..., "num_queries": N,
                   "num_gallery": M}``; ``image_root`` is the folder the list paths are relative to
                   (relative to the set folder, or absolute);
- ``query.txt``    N lines ``relative/path label``;
- ``gallery.txt``  M lines ``relative/path label``.

Lines follow the image-list format of the training lists (bct/data/lists.py): a path relative to
the image root, white space, an integer label >= 0; each path at most once per file. The positives of
a query are the gallery images with its label. An image that is both a query and in the gallery
(the same normalised path) is never its own positive: it is taken out of that query's ranking. The
counts in ``set.json`` must match the lists, so a half-written set is refused rather than scored.
``write_retrieval_set`` writes the lists first and the manifest last, each atomically.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from bct.data.lists import check_relative_path, read_image_list
from bct.utils.errors import BadInputError
from bct.utils.fileio import read_text, write_json_atomic, write_text_atomic

FORMAT = "bct-retrieval-set"
VERSION = 1
MANIFEST = "set.json"
QUERY_LIST = "query.txt"
GALLERY_LIST = "gallery.txt"


@dataclass
class RetrievalSet:
    """One loaded set. Paths are absolute; labels int64 (n,); ``self_index`` (n_query,) holds the
    gallery index of each query's own image (-1 when the query is not in the gallery); ``n_pos``
    (n_query,) the number of positives of each query (its own image not counted)."""

    folder: str
    manifest: str
    image_root: str
    query_paths: list
    query_labels: np.ndarray = field(repr=False)
    gallery_paths: list = field(repr=False)
    gallery_labels: np.ndarray = field(repr=False)
    self_index: np.ndarray = field(repr=False)
    n_pos: np.ndarray = field(repr=False)

    @property
    def query_list(self) -> str:
        return os.path.join(self.folder, QUERY_LIST)

    @property
    def gallery_list(self) -> str:
        return os.path.join(self.folder, GALLERY_LIST)


def manifest_path(path: str) -> str:
    """The set.json of a set given by its folder or by its set.json."""
    return path if os.path.basename(path) == MANIFEST and not os.path.isdir(path) else os.path.join(path, MANIFEST)


def is_retrieval_set(path: str) -> bool:
    """Whether ``path`` is a set folder (holding set.json) or a set.json file."""
    return os.path.isfile(manifest_path(path))


def _read_manifest(path: str) -> dict:
    if os.path.isdir(path):
        raise BadInputError(f"{path} is a folder, expected the set's {MANIFEST} file")
    if not os.path.isfile(path):
        raise BadInputError(f"{path} does not exist: a retrieval set folder holds {MANIFEST}, {QUERY_LIST} and "
                            f"{GALLERY_LIST} (docs/evaluation.md)")
    try:
        data = json.loads(read_text(path))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadInputError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object with format, version, image_root, num_queries, "
                            f"num_gallery, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise BadInputError(f"{path}: \"format\" is {json.dumps(data.get('format'))}, expected \"{FORMAT}\"")
    if data.get("version") != VERSION or isinstance(data.get("version"), bool):
        raise BadInputError(f"{path}: version {json.dumps(data.get('version'))} of the {FORMAT} format is not "
                            f"supported; this bct reads version {VERSION}")
    root = data.get("image_root")
    if not isinstance(root, str) or not root:
        raise BadInputError(f"{path}: \"image_root\" must be a folder name (relative to the set folder or "
                            f"absolute), got {json.dumps(root)}")
    for key in ("num_queries", "num_gallery"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInputError(f"{path}: \"{key}\" must be a whole number >= 1, got {json.dumps(value)}")
    return data


def _read_list(list_path: str, image_root: str, expected: int, key: str, manifest: str):
    if os.path.isdir(list_path):
        raise BadInputError(f"{list_path} is a folder, expected a list of `relative/path label` lines")
    if not os.path.isfile(list_path):
        raise BadInputError(f"{list_path} does not exist; {manifest} names a set whose lists are incomplete")
    paths, labels = read_image_list(list_path, image_root)
    if len(paths) != expected:
        raise BadInputError(f"{manifest}: \"{key}\" is {expected} but {list_path} has {len(paths)} lines; the set "
                            "is incomplete or was edited by hand: write it again")
    return paths, labels


def load_retrieval_set(path: str) -> RetrievalSet:
    """Read and check the set whose folder (or set.json) is ``path``."""
    manifest = manifest_path(path)
    data = _read_manifest(manifest)
    folder = os.path.dirname(os.path.abspath(manifest))
    image_root = os.path.normpath(os.path.join(folder, data["image_root"]))
    if not os.path.isdir(image_root):
        raise BadInputError(f"{manifest}: image_root {data['image_root']!r} ({image_root}) is not a folder")
    q_paths, q_labels = _read_list(os.path.join(folder, QUERY_LIST), image_root, data["num_queries"],
                                   "num_queries", manifest)
    g_paths, g_labels = _read_list(os.path.join(folder, GALLERY_LIST), image_root, data["num_gallery"],
                                   "num_gallery", manifest)
    g_row = {p: i for i, p in enumerate(g_paths)}
    self_index = np.array([g_row.get(p, -1) for p in q_paths], dtype=np.int64)
    inside = np.flatnonzero(self_index >= 0)
    clash = inside[g_labels[self_index[inside]] != q_labels[inside]]
    if clash.size:
        q = int(clash[0])
        g = int(self_index[q])
        raise BadInputError(f"{os.path.join(folder, QUERY_LIST)}:{q + 1}: {q_paths[q]} has label {int(q_labels[q])} "
                            f"but {os.path.join(folder, GALLERY_LIST)}:{g + 1} gives it label {int(g_labels[g])}; "
                            "an image has one label")
    n_pos = count_positives(q_labels, g_labels, self_index)
    if not (n_pos > 0).any():
        raise BadInputError(f"{folder}: no query has a positive in the gallery (no other gallery image carries its "
                            "label), so no retrieval score is defined; check the labels of the two lists")
    return RetrievalSet(folder=folder, manifest=manifest, image_root=image_root,
                        query_paths=[os.path.join(image_root, p) for p in q_paths], query_labels=q_labels,
                        gallery_paths=[os.path.join(image_root, p) for p in g_paths], gallery_labels=g_labels,
                        self_index=self_index, n_pos=n_pos)


def count_positives(query_labels, gallery_labels, self_index) -> np.ndarray:
    """(n_query,) int64: gallery images with each query's label, its own image (``self_index``,
    -1 for none) not counted."""
    query_labels = np.asarray(query_labels, dtype=np.int64)
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    self_index = np.asarray(self_index, dtype=np.int64)
    if gallery_labels.size == 0:
        return np.zeros(query_labels.shape, dtype=np.int64)
    values, counts = np.unique(gallery_labels, return_counts=True)
    at = np.minimum(np.searchsorted(values, query_labels), len(values) - 1)
    n = np.where(values[at] == query_labels, counts[at], 0)
    own = self_index >= 0
    n[own] -= (gallery_labels[self_index[own]] == query_labels[own])
    return n.astype(np.int64)


def _list_text(items, what: str) -> str:
    lines = []
    for i, (path, label) in enumerate(items):
        path = str(path)
        check_relative_path(path, f"{what} item {i}")
        if not path or any(c.isspace() for c in path):
            raise BadInputError(f"{what} item {i}: path {path!r} is empty or holds white space, which the list "
                                "format cannot carry")
        if isinstance(label, bool) or int(label) != label or int(label) < 0:
            raise BadInputError(f"{what} item {i}: label {label!r} is not a whole number >= 0")
        lines.append(f"{path} {int(label)}\n")
    if not lines:
        raise BadInputError(f"{what}: no image; a retrieval set needs at least one query and one gallery image")
    return "".join(lines)


def write_retrieval_set(folder: str, image_root: str, queries, gallery) -> str:
    """Write a set into ``folder``: ``queries`` and ``gallery`` are sequences of (relative path,
    label); ``image_root`` is stored as given (relative to ``folder``, or absolute). The lists are
    written first and set.json last, each atomically, so an interrupted write leaves no readable
    set. Returns the path of set.json."""
    queries, gallery = list(queries), list(gallery)
    q_text, g_text = _list_text(queries, QUERY_LIST), _list_text(gallery, GALLERY_LIST)
    os.makedirs(folder, exist_ok=True)
    manifest = os.path.join(folder, MANIFEST)
    if os.path.exists(manifest):
        os.remove(manifest)  # the old manifest would describe lists that are being replaced
    write_text_atomic(os.path.join(folder, QUERY_LIST), q_text)
    write_text_atomic(os.path.join(folder, GALLERY_LIST), g_text)
    write_json_atomic(manifest, {"format": FORMAT, "version": VERSION, "image_root": image_root,
                                 "num_queries": len(queries), "num_gallery": len(gallery)}, indent=1)
    return manifest
