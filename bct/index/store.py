"""`bct.Index`: open a gallery index, search it, and report or change which model serves each row
(docs/deploying.md).

The facade over one storage backend (bct.index.backend): a folder (``files``, the default) or a
Milvus collection (``milvus``). Searching, status and the reading side import neither torch nor
the models.
"""
import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np

from bct.index.backend import BACKENDS, Backend
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


def open_backend(location: str, backend: str = "files", *, uri: str = "", token: str = "",
                 collection: str = "") -> Backend:
    """The backend of an existing index: a folder (files) or a Milvus collection (uri + collection name,
    default: the location's base name)."""
    if backend == "files":
        from bct.index.backends.files import FilesBackend
        return FilesBackend(location)
    if backend == "milvus":
        from bct.index.backends.milvus import MilvusBackend
        return MilvusBackend.open(uri or location, token=token, collection=collection or (location if uri else ""))
    raise BadInputError(f"--backend {backend!r} is not an index backend; choose one of {', '.join(BACKENDS)}")


class Index:
    """A gallery index. `Index.open(path)` (a folder), `Index.open(name, backend="milvus", uri=...)`,
    `Index.build(out, model, ...)`; then `search`, `status`, `backfill`, `rollback`, `prune`,
    `build_ann`."""

    def __init__(self, path: str = "", backend="files", *, uri: str = "", token: str = "", collection: str = ""):
        self.store = backend if isinstance(backend, Backend) else \
            open_backend(path, backend, uri=uri, token=token, collection=collection)
        self.path = self.store.location
        self.n, self.dim = self.store.n, self.store.dim
        self._model_cache = {}

    def close(self) -> None:
        """Release the backend (Milvus Lite: lets another process open its file)."""
        self.store.close()

    @property
    def backend(self) -> str:
        return self.store.kind

    @property
    def vectors(self):
        """The current vectors (N, D) float32 (a read-only map for the files backend)."""
        return self.store.vectors()

    @property
    def tags(self):
        """The model code of each row's current vector (N,) int16."""
        return self.store.tags()

    # -- opening and building -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str = "", backend: str = "files", **where) -> "Index":
        """Open an index: a folder (memory maps only; nothing is copied), or with backend="milvus"
        the collection `collection` (default: `path`'s base name) at `uri` (a local .db file for
        Milvus Lite, or http(s)://host:port with `token`)."""
        return cls(path, backend, **where)

    @classmethod
    def from_vectors(cls, out: str, vectors, ids, model, **kwargs) -> "Index":
        """An index of vectors computed elsewhere by `model`; see bct.index.build.build_from_vectors."""
        from bct.index.build import build_from_vectors

        where = {k: kwargs.pop(k) for k in ("backend", "uri", "token", "collection") if k in kwargs}
        build_from_vectors(out, vectors, ids, model, **kwargs, **where)
        return cls(out, **where)

    @classmethod
    def build(cls, out: str, model, list_path: str = "", root: str = "", folder: str = "", **kwargs) -> "Index":
        """Embed a gallery (image list + root, or a folder) with `model` (checkpoint path or
        bct.load_model model) into a new index folder `out`; see bct.index.build.build_index."""
        from bct.index.build import build_index

        where = {k: kwargs.pop(k) for k in ("backend", "uri", "token", "collection") if k in kwargs}
        build_index(out, model, list_path=list_path, root=root, folder=folder, **kwargs, **where)
        return cls(out, **where)

    # -- reading --------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict:
        return self.store.manifest()

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
            if found:
                raise BadInputError(f"index {self.path}: {key!r} matches {len(found)} models of the index "
                                    f"({', '.join(m.tag for m in found)}); give the tag (name@digest) of the one you mean")
            raise BadInputError(f"index {self.path}: {key!r} matches no model of the index ({names})")
        return found[0]

    def ids(self, rows) -> list:
        """Image ids of `rows` (ints)."""
        return self.store.ids(rows)

    def status(self) -> dict:
        """Rows per model now, what can be rolled back, pending work."""
        counts = self.store.counts()
        models = []
        for m in self.models():
            models.append({"code": m.code, "tag": m.tag, "name": m.name, "digest": m.digest,
                           "rows": counts.get(m.code, 0), "fraction": counts.get(m.code, 0) / self.n,
                           "stored_rows": self.store.stored_rows(m.code), "lineage": m.lineage,
                           "lineage_complete": m.lineage_complete, "transformed": bool(m.space)})
        manifest = self.manifest
        transformed = sum(m["rows"] for m in models if m["transformed"])
        return {"path": self.path, "backend": self.backend, "rows": self.n, "dim": self.dim, "models": models,
                "transformed_fraction": transformed / self.n,
                "gallery": manifest.get("gallery", {}), "applied_steps": self.store.applied_steps(),
                "interrupted_apply": self.store.interrupted(), "ann": self.store.ann_meta()}

    # -- search ----------------------------------------------------------------------------------
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
               names=None, only=None) -> SearchResult:
        """Top-k rows for each query.

        queries: (n, D) vectors (numpy or torch), or a list of image paths (relative to `root`)
        that `model` embeds. model: the checkpoint (path or bct.load_model model) that made or
        makes the queries; its compatibility with every model that embedded rows is checked (one
        line if not; force=True searches anyway). ann: "" for exact search, or the kind of an
        approximate index built with build_ann ("ivf", "hnsw"), whose candidates are re-scored on
        the current vectors. only: search only the rows of these models (names, tags, digests or
        codes of the index's models table).
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
        codes = None if only is None else sorted({self.model(m).code for m in only})
        scores, rows, tags, counts = self.store.search(q, k, codes=codes, ann=ann, nprobe=nprobe)
        table = {m.code: m for m in self.models()}
        served = [c for c in sorted(counts) if codes is None or c in codes]
        warnings = check_compatible(info, [table[c] for c in served], force) if info else []
        # One read of the ids of every result (a read per query is a Milvus round-trip each, O(N) on Lite).
        unique, where = np.unique(rows, return_inverse=True)
        ids = np.asarray(self.ids(unique), dtype=object)[where.reshape(rows.shape)].tolist()
        return SearchResult(scores=scores, rows=rows, ids=ids, models=tags,
                            tags={m.code: m.tag for m in table.values()}, queries=names, warnings=warnings)

    def _as_queries(self, queries, info) -> np.ndarray:
        if hasattr(queries, "detach"):
            queries = queries.detach().cpu().numpy()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[0] == 0:
            raise BadInputError(f"search: queries must be a non-empty (n, {self.dim}) array, got shape {q.shape}")
        if info is not None and q.shape[1] == info.emb_dim and self.dim in info.sizes() and q.shape[1] != self.dim:
            from bct.index.backfill import fit_rows
            q = np.ascontiguousarray(fit_rows(q, self.dim), dtype=np.float32)  # BT2: the compatible part
        if q.shape[1] != self.dim:
            who = f"model {info.tag}" if info else "the query vectors"
            raise BadInputError(f"search: {who} embeds in {q.shape[1]} dimensions but the index {self.path} holds "
                                f"{self.dim}-dimensional rows; use a model of the index's embedding size")
        if not np.isfinite(q).all():
            raise BadInputError("search: the query vectors contain NaN or inf")
        return q

    def build_ann(self, kind: str = "ivf", nlist: int = 0, m: int = 32, train_rows: int = 100_000, seed: int = 0):
        """(Re)build the approximate index `kind` over the current vectors (files backend)."""
        return self.store.build_ann(kind, nlist=nlist, m=m, train_rows=train_rows, seed=seed)

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

    def transform(self, transformation, model, **kwargs) -> dict:
        """Serve FastFill estimates h(old vector) of `model`'s embeddings on every row of the old model
        the transformation was trained on; see bct.index.transform.transform."""
        from bct.index.transform import transform

        return transform(self, transformation, model, **kwargs)

    def prune(self, model=None) -> dict:
        """Delete stored vectors (after which rollback to them is impossible); see
        bct.index.backfill.prune."""
        from bct.index.backfill import prune

        return prune(self, model)
