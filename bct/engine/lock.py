"""One writer per output folder: a training run holds ``<output folder>/train.lock`` while it runs.

The lock is an advisory ``flock`` on that file, so the kernel releases it when the holder exits,
however it exits (a crash, SIGKILL, a power cut): a lock left behind by a dead run is stale and is
taken over with one info line. The file records the holder's pid, host, start time and command
line, which the refusal names. Forked children (DataLoader workers) close their copy of the lock at
once, so the lock ends with the run itself, not with its last worker. Standard library only (no
torch), so tools can claim a folder before they import anything heavy.
"""
import fcntl
import json
import os
import socket
import sys
import time

from bct.utils.errors import BadInputError

LOCK_NAME = "train.lock"
_HELD = set()  # descriptors of the locks this process holds


def _close_in_child() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def _holder(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class OutputLock:
    """Context manager: claim ``folder`` (created if missing) or raise BadInputError naming the
    run that holds it."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd = None
        self.stale = {}  # the record of a dead holder whose lock was taken over

    def acquire(self) -> "OutputLock":
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            # The file may have been released and removed between our open and our flock: then we
            # hold a lock on a name that no longer exists; start again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.stale = _holder(self.path)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self.fd = fd
        _HELD.add(fd)
        return self

    def stale_note(self) -> str:
        """A line for the log when the lock of a dead run was taken over ("" otherwise)."""
        if not self.stale.get("pid"):
            return ""
        return (f"{self.path}: the run that held this folder (pid {self.stale['pid']} on host "
                f"{self.stale.get('host', '?')}, started {self.stale.get('started', '?')}) has ended; "
                f"taking the folder over")

    def _busy(self) -> BadInputError:
        h = _holder(self.path)
        who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started {h.get('started', '?')}"
        return BadInputError(
            f"output folder {self.folder} is in use by another training run ({who}); wait for it to "
            f"finish or choose another TAG or OUTPUT (the lock, {self.path}, goes away by itself when "
            f"that run ends)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
