"""Exact inner-product search over L2-normalised features (docs/evaluation.md).

Two backends return the same rankings:

- ``"faiss"``: ``faiss.IndexFlatIP`` on the CPU (the paper's setting).
- ``"torch"``: matmul + top-k on the GPU when one is present, else the CPU; for very deep
  rankings and galleries where a GPU helps. Its memory is bounded by ``batch_size x n_db``
  scores (4 bytes each, plus the sort's workspace for a full ranking).

Queries are processed ``batch_size`` at a time in both backends, so memory never grows with
n_q x n_db. Ties are broken deterministically: equal scores are ordered by gallery index,
ascending, both inside the returned list and at its cut-off (the k-th place goes to the
smallest tied index).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from bct.utils.errors import BadInputError

BACKENDS = ("faiss", "torch")


def _as_features(x, name: str) -> np.ndarray:
    """(n, d) float32 C-contiguous copy-if-needed of ``x``; one-line errors otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise BadInputError(f"search: {name} features must be a 2-D (n, dim) array, "
                            f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise BadInputError(f"search: {name} features contain NaN or inf; check the model "
                            "that extracted them")
    return arr


def _order_ties(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending, equal scores by gallery id ascending."""
    order = np.lexsort((ids, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)


def _faiss_batches(query, gallery, k, batch_size):
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    n_db = gallery.shape[0]
    # One extra neighbour reveals a tie straddling the cut-off, which faiss resolves arbitrarily.
    depth = k if k == n_db else k + 1
    for start in range(0, query.shape[0], batch_size):
        q = query[start:start + batch_size]
        scores, ids = index.search(q, depth)
        if (ids < 0).any():
            raise RuntimeError(f"faiss returned invalid ids (-1) for k={depth}, n_db={n_db}")
        if depth > k:
            tied = np.flatnonzero(scores[:, k - 1] == scores[:, k])
            scores, ids = scores[:, :k].copy(), ids[:, :k].copy()
            if tied.size:
                full = q[tied] @ gallery.T
                order = np.argsort(-full, axis=1, kind="stable")[:, :k]
                scores[tied] = np.take_along_axis(full, order, 1)
                ids[tied] = order
        yield scores, ids


@contextlib.contextmanager
def _full_fp32_matmul():
    """Keep float32 matmuls exact (no TF32) even if training code enabled TF32 globally."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _torch_batches(query, gallery, k, batch_size):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_db = gallery.shape[0]
    with torch.inference_mode(), _full_fp32_matmul():
        g = torch.from_numpy(gallery).to(device)
        for start in range(0, query.shape[0], batch_size):
            s = torch.from_numpy(query[start:start + batch_size]).to(device) @ g.T
            if k == n_db:
                # A stable sort already puts equal scores in ascending gallery order.
                scores, ids = torch.sort(s, dim=1, descending=True, stable=True)
            else:
                scores, ids = torch.topk(s, k + 1, dim=1)
                tied = torch.nonzero(scores[:, k - 1] == scores[:, k]).squeeze(1)
                scores, ids = scores[:, :k], ids[:, :k]
                if tied.numel():
                    full_s, full_i = torch.sort(s[tied], dim=1, descending=True, stable=True)
                    scores[tied] = full_s[:, :k]
                    ids[tied] = full_i[:, :k]
            yield scores.cpu().numpy(), ids.cpu().numpy()


def search(
    query,
    gallery,
    k: int | None = None,
    backend: str = "faiss",
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-nearest neighbours of each query in the gallery.

    ``query`` (n_q, d) and ``gallery`` (n_db, d) are converted to float32 (features are
    expected L2-normalised, so the inner product is the cosine similarity). ``k=None`` or
    ``k > n_db`` means a full ranking (k = n_db). Returns ``scores`` (n_q, k) float32 and
    ``ids`` (n_q, k) int64 gallery indices (0-based), best first, ties by ascending index.
    """
    if backend not in BACKENDS:
        raise BadInputError(f"search: unknown backend {backend!r}; use one of {list(BACKENDS)} "
                            "(EVAL.SEARCH_BACKEND)")
    query = _as_features(query, "query")
    gallery = _as_features(gallery, "gallery")
    n_db = gallery.shape[0]
    if n_db == 0:
        raise BadInputError("search: the gallery is empty; check the gallery image list")
    if query.shape[1] != gallery.shape[1]:
        raise BadInputError(
            f"search: query features have dim {query.shape[1]} but gallery features have dim "
            f"{gallery.shape[1]}; both must come from models with the same embedding size")
    if batch_size <= 0:
        raise ValueError(f"search: batch_size must be positive, got {batch_size}")
    k = n_db if k is None else int(k)
    if k <= 0:
        raise ValueError(f"search: k must be positive, got {k}")
    k = min(k, n_db)
    if query.shape[0] == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    batches = _faiss_batches if backend == "faiss" else _torch_batches
    parts = [_order_ties(s, i.astype(np.int64)) for s, i in batches(query, gallery, k, batch_size)]
    return (np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p[1] for p in parts]))


def rank_matrix(query, gallery, backend: str = "faiss", batch_size: int = 4096) -> np.ndarray:
    """Full ranking in revisitop's layout: ``ranks`` (n_db, n_q) int64, column i for query i."""
    return search(query, gallery, None, backend, batch_size)[1].T
