"""Reading text and writing results safely.

Writes are atomic: each output is written to a temporary file in the target folder, fsynced,
then renamed over the target. ``AtomicGroup`` does this for every output of one step together:
nothing gets its final name unless the whole step succeeded, so a crash or an error at any point
leaves either all the previous files or all the new ones (a kill during the renames themselves,
a few microseconds, can leave a mix of whole files, never a partial one). An ``OSError`` raised
while writing always names the final path.

Reads of text files go through ``read_text`` / ``text_lines``: strict UTF-8, a leading byte-order
mark skipped, and a file in another encoding refused with one line naming the file, line and
byte.
"""
import errno
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager

import numpy as np

from bct.utils.errors import BadInputError

BOM = "\ufeff"


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any worker thread exists.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _name_path(err: OSError, path: str) -> OSError:
    if err.filename is None:
        err.filename = path
    return err


class AtomicGroup:
    """The outputs of one step, committed together.

    ``tmp(path)`` returns a temporary path next to ``path`` to write into. When the ``with`` block
    ends without an exception every temporary file is fsynced and renamed to its final name, in
    the order they were asked for (put the file that marks completion, e.g. a manifest, last);
    when it raises, every temporary file is removed and no final name is touched.
    """

    def __init__(self, sync: bool = True):
        self.pending = []  # (tmp, final)
        self.sync = sync

    def tmp(self, path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        except OSError as e:
            raise _name_path(e, path)
        os.close(fd)
        # mkstemp creates the file private (0600); results and checkpoints get the usual umask mode.
        os.chmod(tmp, 0o666 & ~_UMASK)
        self.pending.append((tmp, path))
        return tmp

    def __enter__(self):
        return self

    def _discard(self):
        for tmp, _ in self.pending:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.pending = []

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if isinstance(exc, OSError) and self.pending:
                # Name the output, not its hidden temporary file; a buffered write names no file
                # at all, and then the file being written is the last one asked for.
                finals = dict(self.pending)
                exc.filename = finals.get(exc.filename, exc.filename) if exc.filename else self.pending[-1][1]
            self._discard()
            return False
        try:
            for tmp, path in (self.pending if self.sync else []):
                try:
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                except OSError as e:
                    raise _name_path(e, path)
            for tmp, path in self.pending:
                try:
                    os.replace(tmp, path)
                except OSError as e:
                    e.filename, e.filename2 = path, None  # the output, not the hidden temporary file
                    raise
        finally:
            self._discard()
        return False


@contextmanager
def atomic_path(path: str, sync: bool = True):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it.
    An OSError while writing names `path` when the error itself names no file.

    sync=False skips the fsync before the rename: a killed process still leaves only whole files
    (the kernel keeps what was written), but a power cut may not. It saves milliseconds per file,
    which matters for a million small files (bct.tools.resize_images)."""
    with AtomicGroup(sync) as group:
        yield group.tmp(path)


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


def reserve(path: str, label: str) -> None:
    """Allocate a file's blocks now, so that a full disk is an OSError here (naming `label`, the file
    the user knows), not a SIGBUS when a memory-mapped page is written back later."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # file systems without fallocate
            return
        e.filename = label
        raise
    finally:
        os.close(fd)


def file_signature(path: str) -> tuple:
    """(size, modification time in ns) of a file, or ("missing",): what tells a changed file."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return st.st_size, st.st_mtime_ns


def write_json_atomic(path: str, obj, indent=None) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


# ---------------------------------------------------------------------------------------------
# Reading text
# ---------------------------------------------------------------------------------------------

def _not_utf8(label: str, data: bytes, err: UnicodeDecodeError, first_line: int = 1) -> BadInputError:
    """The one-line error for bytes that are not UTF-8: line and column of the first bad byte."""
    line = first_line + data.count(b"\n", 0, err.start)
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return BadInputError(f"{label}: not a UTF-8 text file (byte 0x{data[err.start]:02x} at line {line}, "
                         f"column {column}: {err.reason}); save it as UTF-8")


def read_text(path: str, label: str = "") -> str:
    """The content of a UTF-8 text file, without a leading byte-order mark. ``label`` starts the
    error message (default: the path)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(label or path, data, e) from None
    return text[1:] if text.startswith(BOM) else text


def text_lines(path: str, label: str = ""):
    """Yield the lines of a UTF-8 text file one by one (line ends kept, a leading byte-order mark
    dropped), for files too large to hold twice in memory; ``csv.reader`` accepts the iterator."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(label or path, raw, e, first_line=number) from None
            if number == 1 and line.startswith(BOM):
                line = line[1:]
            yield line
