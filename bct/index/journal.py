"""Changing rows of an index without ever showing or keeping a half-changed row (docs/deploying.md,
"How a backfill survives a kill").

One step of a backfill or a rollback moves rows R to target model t:

1. the current vectors of R are kept in their models' stores (store/<code>.npy, marked in
   store/<code>.have.npy) unless already there, and flushed: a rollback can bring them back;
2. the commit: journal/<seq>.npz (R, t, R's current tags, t's vectors of R) is written under a
   temporary name, fsynced and renamed;
3. the apply, under the exclusive rows lock: state.json records `applying: seq`, t's vectors and
   tag are written into vectors.npy / tags.npy and flushed, state.json records `applied: seq` with the
   new row counts, and the journal file is removed.

A kill before 2 loses nothing (the step is redone); after 2 the entry is replayed (the apply is
idempotent) by the next writer, or at once by a search that finds `applying` set (the writer died in
the middle of an apply: vectors.npy may hold some of R's new rows under old tags). Searches hold the
rows lock shared, so they see each row entirely old or entirely new, with its matching tag.
"""
import hashlib
import os
import sys
import zipfile

import numpy as np

from bct.index.layout import (JOURNAL, STORE, TAG_DTYPE, VECTORS, TAGS, RowsLock, create_array, open_array,
                              read_state, remove_stale_temps, write_state)
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path


def journal_path(folder: str, seq: int) -> str:
    return os.path.join(folder, JOURNAL, f"{seq:010d}.npz")


def entry_digest(rows, target, old_tags, vectors) -> str:
    h = hashlib.sha256()
    for a in (rows, np.int64(target), old_tags, vectors):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def read_entry(path: str):
    """(rows, target, old_tags, vectors) of a journal entry, or None if it is damaged or truncated."""
    try:
        with np.load(path) as entry:
            rows, target = entry["rows"], int(entry["target"])
            old_tags, vectors = entry["old_tags"], entry["vectors"]
            digest = str(entry["sha256"]) if "sha256" in entry.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if digest is not None and digest != entry_digest(rows, target, old_tags, vectors):
        return None
    return rows, target, old_tags, vectors


def pending(folder: str, applied: int) -> list:
    """Sequence numbers of committed entries not yet applied, ascending (removing applied leftovers).
    A damaged entry that was never applied is dropped and reported (its rows keep their current
    vectors: a rerun of the backfill or rollback redoes that step); one being applied when its
    writer died cannot be dropped: one line names the file to restore."""
    d = os.path.join(folder, JOURNAL)
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if not (name.endswith(".npz") and name[:-4].isdigit()):
            continue
        seq = int(name[:-4])
        if seq <= applied:
            os.remove(os.path.join(d, name))
            continue
        path = os.path.join(d, name)
        if read_entry(path) is None:
            if read_state(folder).get("applying") == seq:
                raise BadInputError(f"journal entry {path} is damaged and was being applied when its writer stopped; "
                                    f"restore this file from a backup (the rows it changes are half-written)")
            os.replace(path, path + ".damaged")
            print(f"warning: journal entry {path} is damaged and was never applied: dropped (kept as "
                  f"{name}.damaged); rerun the backfill or rollback to redo its rows", file=sys.stderr)
            for later in sorted(os.listdir(d)):  # entries after it depend on it: dropped too
                if later.endswith(".npz") and later[:-4].isdigit() and int(later[:-4]) > seq:
                    os.replace(os.path.join(d, later), os.path.join(d, later) + ".damaged")
            break
        out.append(seq)
    return out


def _apply(folder: str, seq: int, vectors, tags) -> None:
    """Replay entry `seq` into the writable maps `vectors` / `tags`; the caller holds the rows lock
    exclusively and no other entry is pending before it."""
    rows, target, old_tags, new_vectors = read_entry(journal_path(folder, seq))
    state = read_state(folder)
    if state["applied"] >= seq:
        return
    if seq != state["applied"] + 1:
        raise BadInputError(f"{folder}: journal entry {seq} follows applied entry {state['applied']}; "
                            f"the index folder is damaged")
    write_state(folder, dict(state, applying=seq))
    vectors[rows] = new_vectors
    tags[rows] = target
    vectors.flush()
    tags.flush()
    counts = {int(k): int(v) for k, v in state["counts"].items()}
    codes, n = np.unique(old_tags, return_counts=True)
    for c, m in zip(codes.tolist(), n.tolist()):
        counts[c] = counts.get(c, 0) - m
    counts[target] = counts.get(target, 0) + len(rows)
    write_state(folder, dict(state, applied=seq, applying=None,
                             counts={str(k): v for k, v in sorted(counts.items()) if v}))


def apply_pending(folder: str, vectors=None, tags=None) -> int:
    """Replay every committed entry not yet applied (under the exclusive rows lock); returns how
    many. Opens vectors.npy / tags.npy writable when the caller passes no maps."""
    state = read_state(folder)
    seqs = pending(folder, state["applied"])
    if not seqs and state.get("applying") is None:
        return 0
    if vectors is None:
        vectors = open_array(os.path.join(folder, VECTORS), writable=True)
        tags = open_array(os.path.join(folder, TAGS), writable=True)
    with RowsLock(folder, exclusive=True):
        state = read_state(folder)
        for seq in pending(folder, state["applied"]):
            _apply(folder, seq, vectors, tags)
            os.remove(journal_path(folder, seq))
        state = read_state(folder)
        if state.get("applying") is not None:  # its entry was applied and removed: the marker alone is left
            write_state(folder, dict(state, applying=None))
    return len(seqs)


class Store:
    """A model's vectors of the rows it no longer (or not yet) serves: (N, D) float32 + (N,) uint8
    mask, allocated in full on first use."""

    def __init__(self, folder: str, code: int, n: int, dim: int, create: bool):
        d = os.path.join(folder, STORE)
        self.vectors_path = os.path.join(d, f"{code}.npy")
        self.have_path = os.path.join(d, f"{code}.have.npy")
        if not os.path.isfile(self.have_path):
            if not create:
                self.vectors = self.have = None
                return
            os.makedirs(d, exist_ok=True)
            if not os.path.isfile(self.vectors_path):
                create_array(self.vectors_path, (n, dim), np.float32)
            create_array(self.have_path, (n,), np.uint8, fill=0)
        self.vectors = open_array(self.vectors_path, writable=True)
        self.have = open_array(self.have_path, writable=True)

    @property
    def exists(self) -> bool:
        return self.have is not None

    def count(self) -> int:
        return 0 if self.have is None else int(np.count_nonzero(self.have))

    def keep(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Store `vectors` of `rows` (durable before the mask says they are there)."""
        self.vectors[rows] = vectors
        self.vectors.flush()
        self.have[rows] = 1
        self.have.flush()


class Writer:
    """The writable side of an index: the caller holds its WriterLock."""

    def __init__(self, folder: str, n: int, dim: int):
        self.folder, self.n, self.dim = folder, n, dim
        self.vectors = open_array(os.path.join(folder, VECTORS), writable=True)
        self.tags = open_array(os.path.join(folder, TAGS), writable=True)
        self.stores = {}
        with RowsLock(folder, exclusive=True):  # a search repairing an interrupted step writes temporaries too
            remove_stale_temps(folder)
        apply_pending(folder, self.vectors, self.tags)

    def store(self, code: int, create: bool = False) -> Store:
        s = self.stores.get(code)
        if s is None or (create and not s.exists):
            s = self.stores[code] = Store(self.folder, code, self.n, self.dim, create)
        return s

    def commit(self, rows: np.ndarray, target: int, vectors: np.ndarray) -> None:
        """Move `rows` (int64, none already of `target`) to `target`'s `vectors` (len(rows), D)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        old_tags = np.asarray(self.tags[rows]).astype(TAG_DTYPE)
        for code in np.unique(old_tags).tolist():
            mine = rows[old_tags == code]
            store = self.store(code, create=True)
            need = mine[store.have[mine] == 0]
            if need.size:
                store.keep(need, self.vectors[need])
        seq = read_state(self.folder)["applied"] + 1
        os.makedirs(os.path.join(self.folder, JOURNAL), exist_ok=True)
        with atomic_path(journal_path(self.folder, seq)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, rows=rows, target=np.int64(target), old_tags=old_tags, vectors=vectors,
                         sha256=np.array(entry_digest(rows, target, old_tags, vectors)))
        apply_pending(self.folder, self.vectors, self.tags)
