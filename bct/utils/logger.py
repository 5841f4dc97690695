"""Logging: rank 0 writes to the console and <output>/log.txt; other ranks log warnings only.

When log.txt cannot be written any more (a full disk), the console says so once and the log goes
on there, instead of a traceback per line; the error that stops the run is reported by the tool."""
import logging
import os
import sys

from bct.utils.comm import get_rank

_FMT = "[%(asctime)s %(name)s] %(message)s"


class _LogFile(logging.FileHandler):
    def handleError(self, record):
        logger = logging.getLogger(record.name)
        logger.removeHandler(self)
        reason = sys.exc_info()[1]
        print(f"warning: cannot write {self.baseFilename} ({reason}); logging to the console only", flush=True)
        try:
            self.close()
        except OSError:
            pass


def setup_logger(output_dir: str = "", name: str = "bct") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    rank = get_rank()
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(_FMT, datefmt="%H:%M:%S"))
    logger.addHandler(console)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = _LogFile(os.path.join(output_dir, "log.txt"))
        fh.setFormatter(logging.Formatter(_FMT, datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(fh)
    return logger


def get_logger(name: str = "bct") -> logging.Logger:
    return logging.getLogger(name)
