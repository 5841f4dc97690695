"""Atomic file writes: write a temporary file in the target folder, fsync, then rename over the target.

A crash or kill at any point leaves either the previous file or the complete new one, never a
partial file under the final name.
"""
import json
import os
import tempfile
from contextlib import contextmanager


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


def write_json_atomic(path: str, obj, indent=None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
