"""Atomic file writes: write a temporary file in the target folder, fsync, then rename over the target.

A crash or kill at any point leaves either the previous file or the complete new one, never a
partial file under the final name.
"""
import json
import math
import os
import tempfile
from contextlib import contextmanager

import numpy as np


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any worker thread exists.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    # mkstemp creates the file private (0600); results and checkpoints get the usual umask mode.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def jsonable(obj):
    """A copy of `obj` that json can write: numpy arrays and scalars become lists and Python numbers,
    tuples lists, dict keys strings, and NaN None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json_atomic(path: str, obj, indent=None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
