"""GLDv2 retrieval benchmark (index as gallery, test queries, docs/evaluation.md, Dataset.md), read from the lists
that ``python -m bct.tools.prepare_gldv2`` writes into the GLDv2 root:

- ``gldv2_gallery_list.txt``         ``index/a/b/c/<id>.jpg <row>``
- ``gldv2_<usage>_query_list.txt``   ``test/a/b/c/<id>.jpg <i>``
- ``gldv2_<usage>_query_gt.txt``     ``test/a/b/c/<id>.jpg <i> g1,g2,...`` (gallery rows)

with usage ``public`` or ``private`` (the paper reports private).
"""
import os
from dataclasses import dataclass, field

from bct.data.lists import read_gt_list, read_index_list
from bct.utils.errors import BadInputError

USAGES = ("public", "private")


@dataclass
class GLDv2Retrieval:
    """Absolute gallery / query image paths and ``solution``: query row -> list of gallery rows."""

    root: str
    usage: str
    gallery_paths: list
    query_paths: list
    solution: dict = field(repr=False)


def _require(path: str, root: str) -> str:
    if not os.path.isfile(path):
        raise BadInputError(
            f"{path} does not exist; run `python -m bct.tools.prepare_gldv2 --root {root}` "
            "(it needs index.csv and retrieval_solution_v2.1.csv in that folder)")
    return path


def load_gldv2_retrieval(root: str, usage: str) -> GLDv2Retrieval:
    """Read the gallery, the ``usage`` queries and their ground truth from ``root``."""
    if usage not in USAGES:
        raise BadInputError(f"GLDv2 usage must be one of {', '.join(USAGES)}, got {usage!r}")
    gallery_file = _require(os.path.join(root, "gldv2_gallery_list.txt"), root)
    query_file = _require(os.path.join(root, f"gldv2_{usage}_query_list.txt"), root)
    gt_file = _require(os.path.join(root, f"gldv2_{usage}_query_gt.txt"), root)

    gallery = read_index_list(gallery_file)
    queries = read_index_list(query_file)
    gt_paths, gts = read_gt_list(gt_file)
    if gt_paths != queries:
        i = next((k for k, (a, b) in enumerate(zip(gt_paths, queries)) if a != b), min(len(gt_paths), len(queries)))
        raise BadInputError(
            f"{gt_file}:{i + 1}: does not match {query_file} line {i + 1} ({len(gt_paths)} vs {len(queries)} lines); "
            f"rerun `python -m bct.tools.prepare_gldv2 --root {root}`")
    n_gallery = len(gallery)
    for i, rows in enumerate(gts):
        too_big = [g for g in rows if g >= n_gallery]
        if too_big:
            raise BadInputError(
                f"{gt_file}:{i + 1}: gallery row {too_big[0]} but {gallery_file} has {n_gallery} lines")
    base = os.path.abspath(root)
    return GLDv2Retrieval(
        root=root,
        usage=usage,
        gallery_paths=[os.path.join(base, p) for p in gallery],
        query_paths=[os.path.join(base, p) for p in queries],
        solution=dict(enumerate(gts)),
    )
