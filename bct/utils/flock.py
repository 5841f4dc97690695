"""The one lock primitive of the project: an advisory ``flock`` on a file (standard library only).

The kernel releases a flock when its holder ends, however it ends (a crash, SIGKILL, a power cut),
so no lock is ever left behind by a dead process. Forked children (DataLoader workers) close their
copy at once, so a lock ends with its holder, not with its last worker. An exclusive holder may
record who it is (pid, host, start time, command line, plus the caller's fields) in the file, which a
refused second holder names. Users: bct.engine.lock.OutputLock (one training run per output folder)
and bct.index.layout's WriterLock (one writer per index) and RowsLock (searches against a writer).
"""
import fcntl
import json
import os
import socket
import sys
import time

_HELD = set()  # descriptors of the locks this process holds


def _close_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def read_holder(path: str) -> dict:
    """The record the holder of the lock file `path` wrote ({} if none or unreadable)."""
    try:
        with open(path) as f:
            data = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Busy(Exception):
    """The lock is held by another process (non-blocking acquire)."""


class FileLock:
    """flock on `path`: exclusive or shared, blocking or not (then Busy when held elsewhere).
    `same_file`: also check that the name still points at the locked file (for lock files that a
    releasing holder removes). A read-only file system or file is opened read-only (a flock needs no
    write permission), so read-only users of a finished folder can still take shared locks."""

    def __init__(self, path: str, exclusive: bool = True, blocking: bool = False, same_file: bool = False):
        self.path, self.exclusive, self.blocking, self.same_file = path, exclusive, blocking, same_file
        self.fd = None
        self.previous = {}

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except (PermissionError, OSError) as e:
            if isinstance(e, FileNotFoundError) or not os.path.exists(self.path):
                raise
            return os.open(self.path, os.O_RDONLY)

    def acquire(self, record: dict = None) -> "FileLock":
        mode = (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | (0 if self.blocking else fcntl.LOCK_NB)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                os.close(fd)
                raise Busy(self.path) from None
            except BaseException:
                os.close(fd)
                raise
            if not self.same_file:
                break
            try:  # released and removed between our open and our flock: we hold a lock on a lost name
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.previous = read_holder(self.path)  # a dead holder's record, before ours replaces it
        if record is not None:
            full = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                    "command": " ".join(sys.argv), **record}
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(full) + "\n").encode())
        self.fd = fd
        _HELD.add(fd)
        return self

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if remove:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        _HELD.discard(self.fd)
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None
