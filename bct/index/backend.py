"""The one storage interface of a gallery index (docs/deploying.md, "Backends").

`bct.Index` (search, status), the backfill, rollback and prune, the orders and the compatibility
check talk only to a `Backend`; no code outside a backend opens its files or its collection. Two
backends implement it:

- ``files`` (bct.index.backends.files, the default): a folder of memory-mapped arrays, a journal and
  flock locks; exact search with faiss.
- ``milvus`` (bct.index.backends.milvus): one Milvus collection per index (Milvus Lite on a local
  ``.db`` path, or a Milvus server by URL and token).

A row holds an image id, the code of the model that embedded its current vector, that vector, and
(kept for a rollback) the vectors of other models. Model codes index the models table (the
manifest's "models" list of ModelInfo entries, each with its lineage).
"""
from abc import ABC, abstractmethod

import numpy as np

from bct.utils.errors import BadInputError

BACKENDS = ("files", "milvus")


class Backend(ABC):
    """What an index stores and how it changes. `location` names it in messages (a folder, or
    uri#collection); `n` rows of `dim` float32 dimensions."""

    kind = ""
    location = ""
    n = 0
    dim = 0

    # -- the models table and the gallery's description ---------------------------------------------
    @abstractmethod
    def manifest(self) -> dict:
        """format, version, rows, dim, gallery, build settings and the models table ("models")."""

    @abstractmethod
    def add_model(self, entry: dict) -> None:
        """Append a model (a ModelInfo entry with its lineage and code) to the models table (writer)."""

    # -- rows --------------------------------------------------------------------------------------
    @abstractmethod
    def ids(self, rows) -> list:
        """Image ids of `rows`."""

    @abstractmethod
    def tags(self, rows=None) -> np.ndarray:
        """(len(rows),) int16 model codes of the rows' current vectors (all rows when None)."""

    @abstractmethod
    def vectors(self, rows=None) -> np.ndarray:
        """(len(rows), dim) float32 current vectors (all rows when None; may be a read-only map)."""

    @abstractmethod
    def stored(self, code: int, rows, with_vectors: bool = True) -> tuple:
        """(have (len(rows),) bool, vectors (len(rows), dim) float32 or None): model `code`'s kept
        vectors of `rows` (have is False where none is kept)."""

    @abstractmethod
    def counts(self) -> dict:
        """{model code: rows it serves now} (codes serving no row left out)."""

    @abstractmethod
    def stored_rows(self, code: int) -> int:
        """Rows that model `code` does not serve now but whose vector of it is kept (restorable)."""

    def labels(self):
        """(N,) int64 labels of the gallery list, or None."""
        return None

    # -- search ------------------------------------------------------------------------------------
    @abstractmethod
    def search(self, queries: np.ndarray, k: int, codes=None, ann: str = "", nprobe: int = 16) -> tuple:
        """(scores (n, k) float32, rows (n, k) int64, row codes (n, k) int16, counts) in one consistent
        view: every row whole (its vector and its code from the same commit), counts as of that view.
        Exact inner-product top-k, ties by ascending row; `codes`: only rows of these models;
        `ann`: through an approximate index of that kind (candidates re-scored exactly)."""

    # -- changes (between writer() and its exit) ---------------------------------------------------
    @abstractmethod
    def writer(self, action: str):
        """A context manager: the one writer of this index (a second is refused with one line naming
        the holder); on entry, an interrupted commit is finished."""

    @abstractmethod
    def commit(self, rows: np.ndarray, target: int, vectors: np.ndarray) -> None:
        """Atomically serve `vectors` of model `target` on `rows` (none of them already `target`'s),
        keeping the replaced vectors for a rollback. A kill at any moment leaves each row entirely
        before or entirely after; a rerun of the same work is idempotent."""

    @abstractmethod
    def prune(self, code: int):
        """Delete model `code`'s kept vectors; bytes freed, or None when none were kept."""

    @abstractmethod
    def load_plan(self, key: str, n: int):
        """The saved backfill order `key` ((n,) int64), or None."""

    @abstractmethod
    def save_plan(self, key: str, plan: np.ndarray) -> None:
        """Keep a backfill order so that a rerun follows it."""

    @abstractmethod
    def load_values(self, key: str, n: int):
        """The per-row values kept under `key` ((n,) float32; NaN where a row has none), or None."""

    @abstractmethod
    def save_values(self, key: str, values: np.ndarray) -> None:
        """Keep one float32 value per row (a transformation's uncertainties) under `key`, replacing
        what was kept there."""

    # -- approximate search (optional) ---------------------------------------------------------------
    def ann_meta(self) -> dict:
        return {}

    def build_ann(self, kind: str, **params) -> dict:
        raise BadInputError(f"index {self.location}: the {self.kind} backend has no separate approximate index; "
                            f"its search uses the collection's own vector index")

    def applied_steps(self) -> int:
        """How many commits the index has seen (for status and the approximate index's age)."""
        return 0

    def interrupted(self) -> bool:
        """Whether a writer was killed in the middle of a commit that the next writer finishes."""
        return False

    def close(self) -> None:
        pass


def order_ties(scores: np.ndarray, rows: np.ndarray):
    """Sort each query's results by descending score, ties by ascending row."""
    order = np.lexsort((rows, -scores), axis=-1)
    return np.take_along_axis(scores, order, -1), np.take_along_axis(rows, order, -1)
