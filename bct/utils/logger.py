"""Logging: rank 0 writes to the console and <output>/log.txt; other ranks log warnings only."""
import logging
import os
import sys

from bct.utils.comm import get_rank

_FMT = "[%(asctime)s %(name)s] %(message)s"


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
        fh = logging.FileHandler(os.path.join(output_dir, "log.txt"))
        fh.setFormatter(logging.Formatter(_FMT, datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(fh)
    return logger


def get_logger(name: str = "bct") -> logging.Logger:
    return logging.getLogger(name)
