"""Approximate search for large galleries (docs/deploying.md, "Approximate search").

An IVF (faiss IndexIVFFlat, inner product) or HNSW (IndexHNSWFlat, inner product) index over the
vectors as they were when it was built, in ann/<kind>.faiss with ann/<kind>.json. It only proposes
candidates: they are re-scored on the current vectors.npy, so scores and tags are always current; a
row re-embedded after the build is found through its old vector's place (close to the new one for a
compatible model) until the approximate index is built again (`index ann`).
"""
import math
import os
import time

import numpy as np

from bct.index import layout
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path, write_json_atomic

KINDS = ("ivf", "hnsw")


def _paths(folder: str, kind: str):
    d = os.path.join(folder, layout.ANN)
    return os.path.join(d, f"{kind}.faiss"), os.path.join(d, f"{kind}.json")


def build_ann(index, kind: str, nlist: int = 0, m: int = 32, train_rows: int = 100_000, seed: int = 0) -> dict:
    """Build ann/<kind> over the current vectors of a files backend (the caller holds its writer)."""
    import faiss

    if kind not in KINDS:
        raise BadInputError(f"--kind {kind!r} is not an approximate index kind; choose one of {', '.join(KINDS)}")
    n, d = index.n, index.dim
    vectors = index.vectors()
    start = time.time()
    if kind == "ivf":
        nlist = nlist or max(1, min(65536, int(4 * math.sqrt(n))))
        if nlist > n:
            raise BadInputError(f"--nlist {nlist} is larger than the {n} rows of the index")
        quantizer = faiss.IndexFlatIP(d)
        ann = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, max(train_rows, 39 * nlist)), replace=False))
        ann.train(np.ascontiguousarray(vectors[sample]))
        params = {"nlist": nlist, "train_rows": int(len(sample))}
    else:
        ann = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        params = {"m": m, "ef_construction": ann.hnsw.efConstruction}
    for s in range(0, n, 1 << 16):
        ann.add(np.ascontiguousarray(vectors[s:s + (1 << 16)]))
    index_path, meta_path = _paths(index.path, kind)
    os.makedirs(os.path.dirname(index_path), exist_ok=True)
    with atomic_path(index_path) as tmp:
        faiss.write_index(ann, tmp)
    meta = {"kind": kind, "built": layout.now() + f" #{time.time_ns()}", "at_step": index.applied_steps(),
            "seconds": time.time() - start, **params}
    write_json_atomic(meta_path, meta)
    return meta


def load_ann(folder: str, kind: str):
    import faiss

    index_path, _ = _paths(folder, kind)
    try:
        return faiss.read_index(index_path)
    except RuntimeError as e:
        raise BadInputError(f"{index_path} cannot be read by faiss ({str(e).splitlines()[0][:160]}); "
                            f"build it again with `python -m bct.tools.index ann`") from None


def ann_candidates(ann, queries: np.ndarray, depth: int, nprobe: int) -> np.ndarray:
    """Row numbers (n, depth) int64 of the approximate neighbours (-1 where there are fewer)."""
    import faiss

    if nprobe <= 0:
        raise BadInputError(f"--nprobe must be positive, got {nprobe}")
    ivf = faiss.try_extract_index_ivf(ann)
    if ivf is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)
    elif hasattr(ann, "hnsw"):
        ann.hnsw.efSearch = max(depth, 16 * nprobe)
    _, rows = ann.search(queries, depth)
    return rows.astype(np.int64)


def recall_at_k(exact_rows: np.ndarray, approx_rows: np.ndarray) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k."""
    k = exact_rows.shape[1]
    hits = [len(np.intersect1d(a[:k], e)) for a, e in zip(approx_rows, exact_rows)]
    return float(np.mean(hits)) / k


__all__ = ["KINDS", "build_ann", "load_ann", "ann_candidates", "recall_at_k"]
