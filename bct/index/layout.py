"""The files of an index folder, how each is written, and the two locks (docs/deploying.md, "Layout").

```
manifest.json        format name and version, rows, dim, the gallery's source, the models table
state.json           the small state file: last applied journal entry, one being applied, rows per model
vectors.npy          (N, D) float32: the current vector of every row (what search reads, memory-mapped)
tags.npy             (N,) int16: the code of the model that embedded each row's current vector
ids.txt, ids.offsets.npy   the image id of each row (one per line) and each line's byte offset (N + 1)
labels.npy           (N,) int64, when the gallery list had labels
store/<code>.npy     (N, D) float32 + store/<code>.have.npy (N,) uint8: a model's vectors of rows whose
                     current vector is another model's (kept for rollback until `prune`)
journal/<seq>.npz    rows, target model code and target vectors of one committed backfill/rollback step
plans/*.npy          a backfill's row order (kept so that a rerun follows the same order)
ann/<kind>.faiss     an optional approximate faiss index (candidates, re-scored on vectors.npy)
build/               shards of an unfinished build (one file per chunk of rows), removed when done
writer.lock          held by the one process that may change the index (build, backfill, rollback, prune)
rows.lock            shared by searches, exclusive while a journal entry is applied to vectors/tags
rows.lock.intent     taken by a waiting writer so that new searches queue behind it
```

Every file is either written once under a temporary name and renamed, or (vectors.npy, tags.npy,
store/*) allocated in full when created (a full disk fails then, not in the middle of an update)
and changed in place only through the journal, whose replay is idempotent.
"""
import fcntl
import json
import os
import socket
import sys
import time

import numpy as np

from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path, is_atomic_temp, reserve, write_json_atomic

FORMAT_NAME = "bct-index"
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
STATE = "state.json"
VECTORS = "vectors.npy"
TAGS = "tags.npy"
IDS = "ids.txt"
ID_OFFSETS = "ids.offsets.npy"
LABELS = "labels.npy"
STORE = "store"
JOURNAL = "journal"
PLANS = "plans"
ANN = "ann"
BUILD = "build"
WRITER_LOCK = "writer.lock"
ROWS_LOCK = "rows.lock"
TAG_DTYPE = np.int16


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------
# manifest and state
# ---------------------------------------------------------------------------------------------

def read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise BadInputError(f"{what} {path} cannot be read ({e}); the index folder is damaged") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{what} {path} is not a JSON object; the index folder is damaged")
    return data


def read_manifest(folder: str) -> dict:
    """The manifest of an index folder; one line if the folder is no index or of another version."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        raise BadInputError(f"index {folder} is not a folder (build one with `python -m bct.tools.index build`)")
    if not os.path.isfile(path):
        raise BadInputError(f"{folder} is not a bct index: it has no {MANIFEST} "
                            f"(build one with `python -m bct.tools.index build`)")
    manifest = read_json(path, "index manifest")
    if manifest.get("format") != FORMAT_NAME:
        raise BadInputError(f"{path}: format {manifest.get('format')!r} is not {FORMAT_NAME!r}; this folder "
                            f"is not a bct index")
    if manifest.get("version") != FORMAT_VERSION:
        raise BadInputError(f"{path}: index format version {manifest.get('version')!r}, but this bct reads "
                            f"version {FORMAT_VERSION}; use the bct release that wrote it or build the index again")
    return manifest


def write_manifest(folder: str, manifest: dict) -> None:
    write_json_atomic(os.path.join(folder, MANIFEST), manifest, indent=1)


def read_state(folder: str) -> dict:
    return read_json(os.path.join(folder, STATE), "index state")


def write_state(folder: str, state: dict) -> None:
    write_json_atomic(os.path.join(folder, STATE), state)


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------

def create_array(path: str, shape: tuple, dtype, fill=None) -> None:
    """Write a new .npy file of `shape` (allocated in full, optionally filled) atomically."""
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        reserve(tmp, path)
        if fill is not None:
            arr[...] = fill
        arr.flush()
        del arr


def open_array(path: str, writable: bool = False) -> np.memmap:
    """A memory map of a .npy file (read-only unless `writable`)."""
    try:
        return np.load(path, mmap_mode="r+" if writable else "r")
    except FileNotFoundError:
        raise BadInputError(f"{path} is missing; the index folder is incomplete") from None
    except ValueError as e:
        raise BadInputError(f"{path} cannot be read as an array ({e}); the index folder is damaged") from None


def write_ids(folder: str, ids: list) -> None:
    """ids.txt (UTF-8, one id per line) and the byte offset of each line (N + 1 int64)."""
    data = [(i + "\n").encode("utf-8") for i in ids]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    with atomic_path(os.path.join(folder, IDS)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"".join(data))
    with atomic_path(os.path.join(folder, ID_OFFSETS)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, offsets)


def remove_stale_temps(folder: str) -> None:
    """Delete temporary files that a killed writer left (only the lock holder calls this)."""
    for sub in ("", STORE, JOURNAL, PLANS, ANN, BUILD):
        d = os.path.join(folder, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if is_atomic_temp(name) or name.endswith(".deleted"):
                try:
                    os.remove(os.path.join(d, name))
                except FileNotFoundError:
                    pass


# ---------------------------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------------------------

_HELD = set()  # lock descriptors this process holds; forked children (loader workers) close theirs


def _close_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class WriterLock:
    """The one writer of an index folder: an advisory flock on writer.lock, released by the kernel
    however the holder ends (a kill -9 included). A second writer is refused with one line naming
    the holder."""

    def __init__(self, folder: str, action: str):
        self.folder, self.action = folder, action
        self.path = os.path.join(folder, WRITER_LOCK)
        self.fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                with open(self.path) as f:
                    holder = json.loads(f.read() or "{}")
            except (OSError, ValueError):
                holder = {}
            raise BadInputError(
                f"index {self.folder} is being changed by another process ({holder.get('action', '?')}, pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}); "
                f"one {self.action} at a time: wait for it to finish or stop it (a rerun continues where it "
                f"stopped)") from None
        record = {"action": self.action, "pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                  "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self.fd = fd
        _HELD.add(fd)
        return self

    def __exit__(self, *exc):
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None
        return False


class RowsLock:
    """Readers (searches) hold rows.lock shared while they read vectors and tags; the writer holds
    it exclusively while it applies a journal entry (milliseconds). Blocking, and writer-preferring:
    a writer first takes rows.intent exclusively, which new readers pass through (shared) before
    taking rows.lock, so a stream of overlapping searches cannot hold a waiting writer off; it waits
    only for the searches already running."""

    def __init__(self, folder: str, exclusive: bool):
        self.path = os.path.join(folder, ROWS_LOCK)
        self.intent_path = self.path + ".intent"
        self.exclusive = exclusive
        self.fds = []

    @staticmethod
    def _open(path: str) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # a read-only user of a finished index
            return os.open(path, os.O_RDONLY)

    def _take(self, path: str, mode: int) -> int:
        fd = self._open(path)
        fcntl.flock(fd, mode)
        _HELD.add(fd)
        return fd

    def _drop(self, fd: int) -> None:
        _HELD.discard(fd)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self):
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        intent = self._take(self.intent_path, mode)
        try:
            rows = self._take(self.path, mode)
        except BaseException:
            self._drop(intent)
            raise
        if self.exclusive:
            self.fds = [rows, intent]
        else:
            self._drop(intent)
            self.fds = [rows]
        return self

    def __exit__(self, *exc):
        for fd in self.fds:
            self._drop(fd)
        self.fds = []
        return False
