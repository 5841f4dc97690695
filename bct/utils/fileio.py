"""Atomic file writes: write a temporary file in the target folder, fsync, then rename over the target.

A crash or kill at any point leaves either the previous file or the complete new one, never a
partial file under the final name.
"""
import hashlib
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
def atomic_path(path: str, sync: bool = True):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it.

    sync=False skips the fsync before the rename: a killed process still leaves only whole files
    (the kernel keeps what was written), but a power cut may not. It costs milliseconds per file,
    which matters for a million small files (bct.tools.resize_images)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    # mkstemp creates the file private (0600); results and checkpoints get the usual umask mode.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_atomic_temp(name: str) -> bool:
    """Whether a file name is one of atomic_path's temporary names (left behind by a killed process)."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3


def file_digest(path: str, _memo={}) -> str:
    """sha256 of a file's content, memoised by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _memo[key] = h.hexdigest()
    return _memo[key]


def write_json_atomic(path: str, obj, indent=None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
