"""One writer per output folder: a training run holds ``<output folder>/train.lock`` while it runs.

The lock is an advisory ``flock`` on that file, so the kernel releases it when the holder exits,
however it exits (a crash, SIGKILL, a power cut): a lock left behind by a dead run is stale and is
taken over with one info line. The file records the holder's pid, host, start time and command
line, which the refusal names. Forked children (DataLoader workers) close their copy of the lock at
once, so the lock ends with the run itself, not with its last worker. Standard library only (no
torch), so tools can claim a folder before they import anything heavy.
"""
import os

from bct.utils.errors import BadInputError
from bct.utils.flock import Busy, FileLock, read_holder

LOCK_NAME = "train.lock"


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
        lock = FileLock(self.path, exclusive=True, blocking=False, same_file=True)
        try:
            lock.acquire(record={})
        except Busy:
            raise self._busy() from None
        self.stale = lock.previous
        self.lock = lock
        self.fd = lock.fd
        return self

    def stale_note(self) -> str:
        """A line for the log when the lock of a dead run was taken over ("" otherwise)."""
        if not self.stale.get("pid"):
            return ""
        return (f"{self.path}: the run that held this folder (pid {self.stale['pid']} on host "
                f"{self.stale.get('host', '?')}, started {self.stale.get('started', '?')}) has ended; "
                f"taking the folder over")

    def _busy(self) -> BadInputError:
        h = read_holder(self.path)
        who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started {h.get('started', '?')}"
        return BadInputError(
            f"output folder {self.folder} is in use by another training run ({who}); wait for it to "
            f"finish or choose another TAG or OUTPUT (the lock, {self.path}, goes away by itself when "
            f"that run ends)")

    def release(self) -> None:
        if self.fd is None:
            return
        self.lock.release(remove=True)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
