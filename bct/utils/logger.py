"""Logging: rank 0 writes to the console and to the log.txt of the run in progress; other ranks log
warnings only.

`setup_logger(folder)` sets up the console and the tool's own log file (<folder>/log.txt).
`log_file(folder)` sends the lines to <folder>/log.txt for as long as a run lasts (a training inside a
comparison): while it is open the lines go to that file alone, and when it closes the enclosing file
(the comparison's) gets them again. So every line lands in the log of the run that wrote it, and a
comparison's table never ends up in the last trained model's log.

When log.txt cannot be written any more (a full disk), the console says so once and the log goes
on there, instead of a traceback per line; the error that stops the run is reported by the tool."""
import logging
import os
import sys
from contextlib import contextmanager

from bct.utils.comm import get_rank

_FMT = "[%(asctime)s %(name)s] %(message)s"
_FILES = {}  # logger name -> stack of file handlers (None: no file), innermost last


class _Console(logging.StreamHandler):
    pass


class _LogFile(logging.FileHandler):
    def handleError(self, record):
        logger = logging.getLogger(record.name)
        logger.removeHandler(self)
        stack = _FILES.get(record.name, [])
        for i, h in enumerate(stack):
            if h is self:
                stack[i] = None
        reason = sys.exc_info()[1]
        print(f"warning: cannot write {self.baseFilename} ({reason}); logging to the console only", flush=True)
        try:
            self.close()
        except OSError:
            pass


def _file_handler(folder: str):
    if not folder or get_rank() != 0:
        return None
    os.makedirs(folder, exist_ok=True)
    fh = _LogFile(os.path.join(folder, "log.txt"))
    fh.setFormatter(logging.Formatter(_FMT, datefmt="%Y-%m-%d %H:%M:%S"))
    return fh


def _show_innermost(logger: logging.Logger) -> None:
    """Attach the innermost file handler of the stack and detach the others."""
    stack = _FILES.setdefault(logger.name, [])
    for h in list(logger.handlers):
        if isinstance(h, _LogFile):
            logger.removeHandler(h)
    if stack and stack[-1] is not None:
        logger.addHandler(stack[-1])


def _ensure_console(logger: logging.Logger) -> None:
    if any(isinstance(h, _Console) for h in logger.handlers):
        return
    logger.propagate = False
    logger.setLevel(logging.INFO if get_rank() == 0 else logging.WARNING)
    console = _Console(sys.stdout)
    console.setFormatter(logging.Formatter(_FMT, datefmt="%H:%M:%S"))
    logger.addHandler(console)


def setup_logger(output_dir: str = "", name: str = "bct") -> logging.Logger:
    """The console (set up again, on the current sys.stdout) and, with ``output_dir``, the tool's own
    <output_dir>/log.txt as the outermost log file. Log files of runs still open stay attached."""
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if isinstance(h, _Console) or (not isinstance(h, _LogFile) and isinstance(h, logging.StreamHandler)):
            logger.removeHandler(h)
    _ensure_console(logger)
    stack = _FILES.setdefault(name, [])
    if stack and stack[0] is not None:
        stack[0].close()
    handler = _file_handler(output_dir)
    if stack:
        stack[0] = handler
    else:
        stack.append(handler)
    _show_innermost(logger)
    return logger


@contextmanager
def log_file(folder: str, name: str = "bct"):
    """Send the log to <folder>/log.txt (and the console) until the block ends; yields the logger."""
    logger = logging.getLogger(name)
    _ensure_console(logger)
    stack = _FILES.setdefault(name, [])
    handler = _file_handler(folder)
    stack.append(handler)
    _show_innermost(logger)
    try:
        yield logger
    finally:
        if handler in stack:
            stack.reverse()
            stack.remove(handler)
            stack.reverse()
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
        _show_innermost(logger)


def get_logger(name: str = "bct") -> logging.Logger:
    return logging.getLogger(name)
