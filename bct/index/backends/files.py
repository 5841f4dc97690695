"""The files backend: an index folder of memory-mapped arrays, a journal and flock locks
(bct.index.layout lists the files; bct.index.journal how a commit survives a kill).

Opening maps vectors.npy read-only (nothing is copied). Exact search is faiss's flat inner-product
search (the kernel IndexFlatIP.search runs) over that map, in one pass whatever mix of models the
rows come from; ties are ordered by row, as in bct.evaluation.search. Every search holds the rows
lock shared, so a backfill running at the same time is seen step by step, never half-way through a
row.
"""
import json
import mmap
import os
from contextlib import contextmanager

import numpy as np

from bct.index import layout
from bct.index.backend import Backend, order_ties
from bct.index.layout import RowsLock, WriterLock, open_array, read_manifest, read_state
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path


def exact_search(queries: np.ndarray, vectors, k: int):
    """faiss flat inner-product top-k of float32 `queries` (n, D) over `vectors` (N, D), read in
    place (a memory map stays a map); ties at the cut-off resolved by ascending row, as
    bct.evaluation.search does. Returns (scores (n, k) float32, rows (n, k) int64)."""
    import faiss

    n_db = vectors.shape[0]
    k = min(k, n_db)
    depth = k if k == n_db else k + 1
    scores, rows = faiss.knn(queries, vectors, depth, metric=faiss.METRIC_INNER_PRODUCT)
    if depth > k:
        tied = np.flatnonzero(scores[:, k - 1] == scores[:, k])
        scores, rows = scores[:, :k].copy(), rows[:, :k].copy()
        for t in tied.tolist():  # rare: only exactly equal scores at the cut-off
            full = np.asarray(vectors) @ queries[t]
            order = np.argsort(-full, kind="stable")[:k]
            scores[t], rows[t] = full[order], order
    return order_ties(scores, rows.astype(np.int64))


class FilesBackend(Backend):
    kind = "files"

    def __init__(self, path: str):
        self.path = self.location = os.path.abspath(path)
        manifest = read_manifest(self.path)
        if manifest.get("status") != "ready":
            raise BadInputError(f"index {path} is not finished (its build was interrupted); rerun the same "
                                f"`python -m bct.tools.index build` command to complete it")
        self.n, self.dim = int(manifest["rows"]), int(manifest["dim"])
        self._vectors = self._array(layout.VECTORS, (self.n, self.dim), np.float32)
        self._tags = self._array(layout.TAGS, (self.n,), layout.TAG_DTYPE)
        self._offsets = self._array(layout.ID_OFFSETS, (self.n + 1,), np.int64)
        ids_path = os.path.join(self.path, layout.IDS)
        if os.path.getsize(ids_path) != int(self._offsets[-1]):
            raise BadInputError(f"{ids_path} has {os.path.getsize(ids_path)} bytes, its offsets say "
                                f"{int(self._offsets[-1])}; the index folder is damaged")
        with open(ids_path, "rb") as f:
            self._ids = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self._offsets[-1] else b""
        self._ann = {}
        self._writer = None

    def _array(self, name: str, shape: tuple, dtype) -> np.ndarray:
        arr = open_array(os.path.join(self.path, name))
        if arr.shape != shape or arr.dtype != dtype:
            raise BadInputError(f"{os.path.join(self.path, name)} has shape {arr.shape} {arr.dtype}, the manifest "
                                f"says {shape} {np.dtype(dtype)}; the index folder is damaged")
        return arr

    # -- metadata ------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        return read_manifest(self.path)

    def add_model(self, entry: dict) -> None:
        manifest = read_manifest(self.path)
        manifest["models"].append(entry)
        layout.write_manifest(self.path, manifest)

    # -- rows ----------------------------------------------------------------------------------------
    def ids(self, rows) -> list:
        out = []
        for r in np.asarray(rows, dtype=np.int64).ravel().tolist():
            out.append(self._ids[self._offsets[r]:self._offsets[r + 1] - 1].decode("utf-8"))
        return out

    def tags(self, rows=None) -> np.ndarray:
        src = self._writer.tags if self._writer is not None else self._tags
        return src if rows is None else np.asarray(src[np.asarray(rows, dtype=np.int64)])

    def vectors(self, rows=None) -> np.ndarray:
        src = self._writer.vectors if self._writer is not None else self._vectors
        return src if rows is None else np.asarray(src[np.asarray(rows, dtype=np.int64)])

    def labels(self):
        path = os.path.join(self.path, layout.LABELS)
        return np.load(path) if os.path.isfile(path) else None

    def _have_path(self, code: int) -> str:
        return os.path.join(self.path, layout.STORE, f"{code}.have.npy")

    def stored(self, code: int, rows, with_vectors: bool = True) -> tuple:
        rows = np.asarray(rows, dtype=np.int64)
        if self._writer is not None:
            store = self._writer.store(code)
            have, vectors = (store.have, store.vectors) if store.exists else (None, None)
        elif os.path.isfile(self._have_path(code)):
            have = open_array(self._have_path(code))
            vectors = open_array(os.path.join(self.path, layout.STORE, f"{code}.npy"))
        else:
            have = vectors = None
        if have is None:
            return np.zeros(len(rows), bool), np.zeros((len(rows), self.dim), np.float32) if with_vectors else None
        return np.asarray(have[rows]) != 0, np.asarray(vectors[rows]) if with_vectors else None

    def counts(self) -> dict:
        return {int(k): int(v) for k, v in read_state(self.path)["counts"].items() if int(v)}

    def stored_rows(self, code: int) -> int:
        if not os.path.isfile(self._have_path(code)):
            return 0
        have = np.load(self._have_path(code), mmap_mode="r")
        return int(np.count_nonzero((have != 0) & (np.asarray(self.tags()) != code)))

    def applied_steps(self) -> int:
        return int(read_state(self.path)["applied"])

    def interrupted(self) -> bool:
        return read_state(self.path).get("applying") is not None

    # -- search ----------------------------------------------------------------------------------------
    def search(self, queries, k, codes=None, ann: str = "", nprobe: int = 16):
        with RowsLock(self.path, exclusive=False) as lock:
            state = self._consistent_state(lock)
            counts = {int(c): int(n) for c, n in state["counts"].items() if int(n)}
            if ann:
                scores, rows = self._ann_search(ann, queries, k, nprobe, codes)
            elif codes is not None:
                subset = np.flatnonzero(np.isin(np.asarray(self._tags), list(codes))).astype(np.int64)
                if subset.size == 0:
                    shape = (len(queries), 0)
                    return (np.zeros(shape, np.float32), np.zeros(shape, np.int64), np.zeros(shape, np.int16),
                            counts)
                scores, sub = exact_search(queries, np.ascontiguousarray(self._vectors[subset]), k)
                scores, rows = order_ties(scores, subset[sub])
            else:
                scores, rows = exact_search(queries, self._vectors, k)
            tags = np.asarray(self._tags[rows])
        return scores, rows, tags, counts

    def _consistent_state(self, lock) -> dict:
        """The state under the shared rows lock; a writer that died in the middle of an apply left
        `applying` set: its journal entry is replayed first (under the exclusive lock)."""
        state = read_state(self.path)
        if state.get("applying") is None:
            return state
        lock.__exit__(None, None, None)
        from bct.index.journal import apply_pending
        try:
            apply_pending(self.path)
        except PermissionError as e:
            raise BadInputError(f"index {self.path} was left in the middle of an update by a killed writer and "
                                f"this process may not repair it ({e.strerror}); run `python -m bct.tools.index "
                                f"status {self.path}` as the index's owner") from None
        lock.__enter__()
        return self._consistent_state(lock)

    # -- changes ---------------------------------------------------------------------------------------
    @contextmanager
    def writer(self, action: str):
        from bct.index.journal import Writer

        with WriterLock(self.path, action):
            self._writer = Writer(self.path, self.n, self.dim)  # replays an interrupted step first
            try:
                yield self
            finally:
                self._writer = None

    def commit(self, rows, target, vectors) -> None:
        self._writer.commit(rows, target, vectors)

    def prune(self, code: int):
        if self._writer is not None:
            self._writer.stores.pop(code, None)
        paths = [os.path.join(self.path, layout.STORE, f"{code}{suffix}") for suffix in (".have.npy", ".npy")]
        if not any(os.path.isfile(p) for p in paths):
            return None
        freed = 0
        for p in paths:  # the mask goes first: without it the vectors are never read
            if os.path.isfile(p):
                freed += os.path.getsize(p)
                os.replace(p, p + ".deleted")
                os.remove(p + ".deleted")
        return freed

    def _load_row_array(self, folder: str, key: str, n: int):
        path = os.path.join(self.path, folder, f"{key}.npy")
        if os.path.isfile(path):
            arr = np.load(path)
            if arr.shape == (n,):
                return arr
        return None

    def _save_row_array(self, folder: str, key: str, arr) -> None:
        path = os.path.join(self.path, folder, f"{key}.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)

    def load_plan(self, key: str, n: int):
        return self._load_row_array(layout.PLANS, key, n)

    def save_plan(self, key: str, plan) -> None:
        self._save_row_array(layout.PLANS, key, plan)

    def load_values(self, key: str, n: int):
        return self._load_row_array(layout.VALUES, key, n)

    def save_values(self, key: str, values) -> None:
        self._save_row_array(layout.VALUES, key, np.asarray(values, dtype=np.float32))

    # -- approximate search ------------------------------------------------------------------------------
    def ann_meta(self) -> dict:
        d = os.path.join(self.path, layout.ANN)
        out = {}
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if name.endswith(".json") and not name.startswith("."):
                    with open(os.path.join(d, name)) as f:
                        out[name[:-5]] = json.load(f)
        return out

    def build_ann(self, kind: str, **params) -> dict:
        from bct.index.ann import build_ann

        with self.writer("ann build"):
            return build_ann(self, kind, **params)

    def _ann_search(self, kind: str, q: np.ndarray, k: int, nprobe: int, codes=None):
        from bct.index.ann import ann_candidates, load_ann

        meta = self.ann_meta().get(kind)
        if meta is None:
            raise BadInputError(f"index {self.path} has no approximate index {kind!r} (have: "
                                f"{', '.join(self.ann_meta()) or 'none'}); make one with "
                                f"`python -m bct.tools.index ann {self.path} --kind {kind}`")
        if self._ann.get(kind, (None,))[0] != meta["built"]:
            self._ann[kind] = (meta["built"], load_ann(self.path, kind))
        cand = ann_candidates(self._ann[kind][1], q, min(self.n, max(2 * k, k + 16)), nprobe)
        ok = cand >= 0
        if codes is not None:
            ok &= np.isin(np.asarray(self._tags)[np.where(ok, cand, 0)], list(codes))
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        for s in range(0, len(q), 64):  # re-score on the current rows, 64 queries at a time
            block = self._vectors[np.where(ok[s:s + 64], cand[s:s + 64], 0)]
            scores[s:s + 64] = np.where(ok[s:s + 64], np.einsum("qd,qkd->qk", q[s:s + 64], block), -np.inf)
        cand = np.where(ok, cand, np.iinfo(np.int64).max)
        scores, cand = order_ties(scores, cand.astype(np.int64))
        k = min(k, self.n)
        if (cand[:, :k] == np.iinfo(np.int64).max).any():
            raise BadInputError(f"approximate search returned fewer than {k} rows; raise --nprobe or search exactly")
        return scores[:, :k], cand[:, :k]
