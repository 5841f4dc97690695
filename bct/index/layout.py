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
values/<key>.npy     (N,) float32 per-row values, e.g. a FastFill transformation's uncertainties
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
import errno
import hashlib
import json
import os
import time

import numpy as np

from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path, is_atomic_temp, reserve, write_json_atomic
from bct.utils.flock import Busy, FileLock, read_holder

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
VALUES = "values"
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

CHECKSUM = "sha256"


def _digest(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_json(path: str, what: str, verify: bool = True) -> dict:
    """A JSON object written by write_checked; one line naming the file if it is damaged or truncated
    (its recorded sha256 does not match). Files written before checksums existed have none."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise BadInputError(f"{what} {path} is damaged or truncated ({str(e)[:80]}); restore this file from a "
                            f"backup (or build the index again)") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{what} {path} is not a JSON object; restore this file from a backup")
    if verify:
        verify_checksum(data, path, what)
    return data


def verify_checksum(data: dict, path: str, what: str) -> None:
    if CHECKSUM in data and data[CHECKSUM] != _digest(data):
        raise BadInputError(f"{what} {path} is damaged (its sha256 does not match its content); restore this file "
                            f"from a backup (or build the index again)")


def write_checked(path: str, data: dict, indent=None) -> None:
    """Write a JSON object with its sha256, atomically."""
    write_json_atomic(path, dict(data, **{CHECKSUM: _digest(data)}), indent=indent)


def read_manifest(folder: str) -> dict:
    """The manifest of an index folder; one line if the folder is no index or of another version."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        raise BadInputError(f"index {folder} is not a folder (build one with `python -m bct.tools.index build`)")
    if not os.path.isfile(path):
        raise BadInputError(f"{folder} is not a bct index: it has no {MANIFEST} "
                            f"(build one with `python -m bct.tools.index build`)")
    manifest = read_json(path, "index manifest", verify=False)  # another version may record another checksum
    if manifest.get("format") != FORMAT_NAME:
        raise BadInputError(f"{path}: format {manifest.get('format')!r} is not {FORMAT_NAME!r}; this folder "
                            f"is not a bct index")
    if manifest.get("version") != FORMAT_VERSION:
        raise BadInputError(f"{path}: index format version {manifest.get('version')!r}, but this bct reads "
                            f"version {FORMAT_VERSION}; use the bct release that wrote it or build the index again")
    verify_checksum(manifest, path, "index manifest")
    manifest.pop(CHECKSUM, None)
    return manifest


def write_manifest(folder: str, manifest: dict) -> None:
    write_checked(os.path.join(folder, MANIFEST), manifest, indent=1)


def read_state(folder: str) -> dict:
    state = read_json(os.path.join(folder, STATE), "index state")
    state.pop(CHECKSUM, None)
    return state


def write_state(folder: str, state: dict) -> None:
    write_checked(os.path.join(folder, STATE), state)


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
    for sub in ("", STORE, JOURNAL, PLANS, VALUES, ANN, BUILD):
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

class WriterLock:
    """The one writer of an index folder: a flock on writer.lock (bct.utils.flock), released by the
    kernel however the holder ends (a kill -9 included). A second writer is refused with one line
    naming the holder."""

    def __init__(self, folder: str, action: str):
        self.folder, self.action = folder, action
        self.path = os.path.join(folder, WRITER_LOCK)
        self.lock = FileLock(self.path, exclusive=True, blocking=False)

    @property
    def fd(self):
        return self.lock.fd

    def __enter__(self):
        try:
            self.lock.acquire(record={"action": self.action})
        except Busy:
            holder = read_holder(self.path)
            raise BadInputError(
                f"index {self.folder} is being changed by another process ({holder.get('action', '?')}, pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}); "
                f"one {self.action} at a time: wait for it to finish or stop it (a rerun continues where it "
                f"stopped)") from None
        return self

    def __exit__(self, *exc):
        self.lock.release()
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
        self.locks = []

    def __enter__(self):
        intent = FileLock(self.intent_path, self.exclusive, blocking=True).acquire()
        try:
            rows = FileLock(self.path, self.exclusive, blocking=True).acquire()
        except BaseException:
            intent.release()
            raise
        if self.exclusive:
            self.locks = [rows, intent]
        else:
            intent.release()
            self.locks = [rows]
        return self

    def __exit__(self, *exc):
        for lock in self.locks:
            lock.release()
        self.locks = []
        return False
