"""`bct.Index`: open a gallery index folder, search it, and report or change which model serves each
row (docs/deploying.md).

Opening maps vectors.npy read-only (nothing is copied). Exact search is faiss's flat inner-product
search (the kernel IndexFlatIP.search runs) over that map, in one pass whatever mix of models the
rows come from; ties are ordered by row, as in bct.evaluation.search. Every search holds the rows
lock shared, so a backfill running at the same time is seen step by step, never half-way through a
row. Searching, status and the reading side import neither torch nor the models.
"""
import csv
import json
import mmap
import os
from dataclasses import dataclass, field

import numpy as np

from bct.index import layout
from bct.index.layout import RowsLock, WriterLock, open_array, read_manifest, read_state
from bct.index.models import ModelInfo, check_compatible, describe
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path


@dataclass
class SearchResult:
    """Top-k rows of each query, best first (ties by ascending row).

    scores (n_q, k) float32 inner products; rows (n_q, k) int64; ids: n_q lists of k image ids;
    models (n_q, k) int16 codes of the model that embedded each returned row; tags: code -> model tag.
    """

    scores: np.ndarray
    rows: np.ndarray
    ids: list
    models: np.ndarray
    tags: dict
    queries: list
    warnings: list = field(default_factory=list)

    def records(self) -> list:
        """One dict per (query, rank): query, rank (1-based), id, row, score, model."""
        out = []
        for q, name in enumerate(self.queries):
            for r in range(self.rows.shape[1]):
                out.append({"query": name, "rank": r + 1, "id": self.ids[q][r], "row": int(self.rows[q, r]),
                            "score": float(self.scores[q, r]), "model": self.tags[int(self.models[q, r])]})
        return out

    def write(self, path: str) -> None:
        """Write the results as CSV (path ending .csv) or JSON (any other), atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                if path.lower().endswith(".csv"):
                    w = csv.DictWriter(f, fieldnames=["query", "rank", "id", "row", "score", "model"])
                    w.writeheader()
                    w.writerows(self.records())
                else:
                    json.dump([{"query": name, "results": [
                        {"id": self.ids[q][r], "row": int(self.rows[q, r]), "score": float(self.scores[q, r]),
                         "model": self.tags[int(self.models[q, r])]} for r in range(self.rows.shape[1])]}
                        for q, name in enumerate(self.queries)], f, indent=1)


def _order_ties(scores: np.ndarray, rows: np.ndarray):
    order = np.lexsort((rows, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(rows, order, -1)


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
    return _order_ties(scores, rows.astype(np.int64))


class Index:
    """A gallery index folder. `Index.open(path)`, `Index.build(out, model, ...)`; then
    `search`, `status`, `backfill`, `rollback`, `prune`, `build_ann`."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        manifest = read_manifest(self.path)
        if manifest.get("status") != "ready":
            raise BadInputError(f"index {path} is not finished (its build was interrupted); rerun the same "
                                f"`python -m bct.tools.index build` command to complete it")
        self.n, self.dim = int(manifest["rows"]), int(manifest["dim"])
        self.vectors = self._array(layout.VECTORS, (self.n, self.dim), np.float32)
        self.tags = self._array(layout.TAGS, (self.n,), layout.TAG_DTYPE)
        self._offsets = self._array(layout.ID_OFFSETS, (self.n + 1,), np.int64)
        ids_path = os.path.join(self.path, layout.IDS)
        if os.path.getsize(ids_path) != int(self._offsets[-1]):
            raise BadInputError(f"{ids_path} has {os.path.getsize(ids_path)} bytes, its offsets say "
                                f"{int(self._offsets[-1])}; the index folder is damaged")
        with open(ids_path, "rb") as f:
            self._ids = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self._offsets[-1] else b""
        self._ann = {}
        self._model_cache = {}

    def _array(self, name: str, shape: tuple, dtype) -> np.ndarray:
        arr = open_array(os.path.join(self.path, name))
        if arr.shape != shape or arr.dtype != dtype:
            raise BadInputError(f"{os.path.join(self.path, name)} has shape {arr.shape} {arr.dtype}, the manifest "
                                f"says {shape} {np.dtype(dtype)}; the index folder is damaged")
        return arr

    # -- opening and building -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> "Index":
        """Open an index folder (memory maps only; nothing is copied)."""
        return cls(path)

    @classmethod
    def from_vectors(cls, out: str, vectors, ids, model, **kwargs) -> "Index":
        """An index of vectors computed elsewhere by `model`; see bct.index.build.build_from_vectors."""
        from bct.index.build import build_from_vectors

        build_from_vectors(out, vectors, ids, model, **kwargs)
        return cls(out)

    @classmethod
    def build(cls, out: str, model, list_path: str = "", root: str = "", folder: str = "", **kwargs) -> "Index":
        """Embed a gallery (image list + root, or a folder) with `model` (checkpoint path or
        bct.load_model model) into a new index folder `out`; see bct.index.build.build_index."""
        from bct.index.build import build_index

        build_index(out, model, list_path=list_path, root=root, folder=folder, **kwargs)
        return cls(out)

    # -- reading --------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict:
        return read_manifest(self.path)

    def models(self) -> list:
        """The models table: ModelInfo entries, by code."""
        return [ModelInfo.from_entry(m) for m in self.manifest["models"]]

    def model(self, key) -> ModelInfo:
        """A table entry by code, name, tag, digest (or its prefix) or checkpoint path."""
        table = self.models()
        if isinstance(key, (int, np.integer)):
            found = [m for m in table if m.code == int(key)]
        else:
            key = str(key)
            digest = ""
            if os.path.isfile(key):
                from bct.utils.fileio import file_digest
                digest = file_digest(key)
            found = [m for m in table if key in (m.name, m.tag) or m.digest == digest
                     or (len(key) >= 6 and m.digest.startswith(key))]
        if len(found) != 1:
            names = ", ".join(m.tag for m in table)
            what = "matches no model" if not found else "matches several models"
            raise BadInputError(f"index {self.path}: {key!r} {what} of the index ({names})")
        return found[0]

    def ids(self, rows) -> list:
        """Image ids of `rows` (ints)."""
        out = []
        for r in np.asarray(rows, dtype=np.int64).ravel().tolist():
            out.append(self._ids[self._offsets[r]:self._offsets[r + 1] - 1].decode("utf-8"))
        return out

    def status(self) -> dict:
        """Rows per model now, what can be rolled back, pending work."""
        state = self._read_state()
        counts = {int(k): int(v) for k, v in state["counts"].items()}
        models = []
        tags = None
        for m in self.models():
            have_path = os.path.join(self.path, layout.STORE, f"{m.code}.have.npy")
            restorable = 0
            if os.path.isfile(have_path):
                tags = np.asarray(self.tags) if tags is None else tags
                restorable = int(np.count_nonzero((np.load(have_path, mmap_mode="r") != 0) & (tags != m.code)))
            models.append({"code": m.code, "tag": m.tag, "name": m.name, "digest": m.digest,
                           "rows": counts.get(m.code, 0), "fraction": counts.get(m.code, 0) / self.n,
                           "stored_rows": restorable, "lineage": m.lineage, "lineage_complete": m.lineage_complete})
        manifest = self.manifest
        return {"path": self.path, "rows": self.n, "dim": self.dim, "models": models,
                "gallery": manifest.get("gallery", {}), "applied_steps": state["applied"],
                "interrupted_apply": state.get("applying") is not None,
                "ann": {kind: meta for kind, meta in self._ann_meta().items()}}

    # -- search ----------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        return read_state(self.path)

    def query_model(self, model) -> ModelInfo:
        """The ModelInfo of a query model: a checkpoint path (read once, then cached), a model from
        bct.load_model, or the name, tag or digest of a model in the index's table (no file read)."""
        if isinstance(model, (str, os.PathLike)) and not os.path.exists(model):
            try:
                return self.model(os.fspath(model))
            except BadInputError:
                names = ", ".join(m.tag for m in self.models())
                raise BadInputError(f"model {os.fspath(model)} is neither a checkpoint file nor a model of the index "
                                    f"{self.path} ({names})") from None
        path = model if isinstance(model, (str, os.PathLike)) else getattr(model, "source_path", "")
        key = (os.fspath(path), os.stat(path).st_mtime_ns) if path and os.path.isfile(path) else None
        if key is None or key not in self._model_cache:
            info = describe(model, table=self.models())
            if key is None:
                return info
            self._model_cache[key] = info
        return self._model_cache[key]

    def search(self, queries, k: int = 10, model=None, *, force: bool = False, ann: str = "", nprobe: int = 16,
               root: str = "", batch_size: int = 64, workers: int = 0, device="cpu",
               names=None) -> SearchResult:
        """Top-k rows for each query.

        queries: (n, D) vectors (numpy or torch), or a list of image paths (relative to `root`)
        that `model` embeds. model: the checkpoint (path or bct.load_model model) that made or
        makes the queries; its compatibility with every model that embedded rows is checked (one
        line if not; force=True searches anyway). ann: "" for exact search, or the kind of an
        approximate index built with build_ann ("ivf", "hnsw"), whose candidates are re-scored on
        the current vectors.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise BadInputError(f"search: k must be a positive integer, got {k!r}")
        info = None
        if model is not None:
            info = self.query_model(model)
        elif not force:
            raise BadInputError("search: say which model embedded the queries (--model CHECKPOINT, model=...) so that "
                                "its compatibility with the index rows can be checked, or give --force")
        if isinstance(queries, (list, tuple)) and queries and isinstance(queries[0], (str, os.PathLike)):
            if model is None:
                raise BadInputError("search: image queries need a model to embed them (--model CHECKPOINT)")
            from bct.index.embed import embed_images
            from bct.models.loading import load_model
            names = names or [os.fspath(q) for q in queries]
            net = model if not isinstance(model, (str, os.PathLike)) else load_model(model, device)
            queries = embed_images(net, queries, root, batch_size, workers, device)
        q = self._as_queries(queries, info)
        names = list(names) if names is not None else list(range(q.shape[0]))
        with RowsLock(self.path, exclusive=False) as lock:
            state = self._consistent_state(lock)
            counts = {int(c): n for c, n in state["counts"].items() if n}
            table = {m.code: m for m in self.models()}
            warnings = check_compatible(info, [table[c] for c in sorted(counts)], force) if info else []
            if ann:
                scores, rows = self._ann_search(ann, q, k, nprobe)
            else:
                scores, rows = exact_search(q, self.vectors, k)
            codes = np.asarray(self.tags[rows])
        return SearchResult(scores=scores, rows=rows, ids=[self.ids(r) for r in rows], models=codes,
                            tags={m.code: m.tag for m in table.values()}, queries=names, warnings=warnings)

    def _as_queries(self, queries, info) -> np.ndarray:
        if hasattr(queries, "detach"):
            queries = queries.detach().cpu().numpy()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[0] == 0:
            raise BadInputError(f"search: queries must be a non-empty (n, {self.dim}) array, got shape {q.shape}")
        if q.shape[1] != self.dim:
            who = f"model {info.tag}" if info else "the query vectors"
            raise BadInputError(f"search: {who} embeds in {q.shape[1]} dimensions but the index {self.path} holds "
                                f"{self.dim}-dimensional rows; use a model of the index's embedding size")
        if not np.isfinite(q).all():
            raise BadInputError("search: the query vectors contain NaN or inf")
        return q

    def _consistent_state(self, lock) -> dict:
        """The state under the shared rows lock; a writer that died in the middle of an apply left
        `applying` set: its journal entry is replayed first (under the exclusive lock)."""
        state = self._read_state()
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

    # -- approximate search ------------------------------------------------------------------------
    def _ann_meta(self) -> dict:
        d = os.path.join(self.path, layout.ANN)
        out = {}
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if name.endswith(".json") and not name.startswith("."):
                    with open(os.path.join(d, name)) as f:
                        out[name[:-5]] = json.load(f)
        return out

    def _ann_search(self, kind: str, q: np.ndarray, k: int, nprobe: int):
        from bct.index.ann import ann_candidates, load_ann

        meta = self._ann_meta().get(kind)
        if meta is None:
            raise BadInputError(f"index {self.path} has no approximate index {kind!r} (have: "
                                f"{', '.join(self._ann_meta()) or 'none'}); make one with "
                                f"`python -m bct.tools.index ann {self.path} --kind {kind}`")
        if self._ann.get(kind, (None,))[0] != meta["built"]:
            self._ann[kind] = (meta["built"], load_ann(self.path, kind))
        cand = ann_candidates(self._ann[kind][1], q, min(self.n, max(2 * k, k + 16)), nprobe)
        ok = cand >= 0
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        for s in range(0, len(q), 64):  # re-score on the current rows, 64 queries at a time
            block = self.vectors[np.where(ok[s:s + 64], cand[s:s + 64], 0)]
            scores[s:s + 64] = np.where(ok[s:s + 64], np.einsum("qd,qkd->qk", q[s:s + 64], block), -np.inf)
        cand = np.where(ok, cand, np.iinfo(np.int64).max)
        scores, cand = _order_ties(scores, cand.astype(np.int64))
        k = min(k, self.n)
        if (cand[:, :k] == np.iinfo(np.int64).max).any():
            raise BadInputError(f"approximate search returned fewer than {k} rows; raise --nprobe or search exactly")
        return scores[:, :k], cand[:, :k]

    def build_ann(self, kind: str = "ivf", nlist: int = 0, m: int = 32, train_rows: int = 100_000, seed: int = 0):
        """(Re)build the approximate index `kind` over the current vectors."""
        from bct.index.ann import build_ann

        from bct.index.journal import apply_pending

        with WriterLock(self.path, "ann build"):
            apply_pending(self.path)
            return build_ann(self, kind, nlist=nlist, m=m, train_rows=train_rows, seed=seed)

    # -- changes ----------------------------------------------------------------------------------
    def backfill(self, model, **kwargs) -> dict:
        """Re-embed rows with `model`; see bct.index.backfill.backfill."""
        from bct.index.backfill import backfill

        return backfill(self, model, **kwargs)

    def rollback(self, to=None, step_rows: int = 4096, progress=None) -> dict:
        """Bring back the vectors of model `to` (default: the model served before the newest one)
        for every row it embedded before; see bct.index.backfill.rollback."""
        from bct.index.backfill import rollback

        return rollback(self, to, step_rows=step_rows, progress=progress)

    def prune(self, model=None) -> dict:
        """Delete stored vectors (after which rollback to them is impossible); see
        bct.index.backfill.prune."""
        from bct.index.backfill import prune

        return prune(self, model)
