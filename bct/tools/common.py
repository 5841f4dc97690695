"""What every entry point shares: the argument shape, config loading, distributed set-up and
turning known errors into one line on stderr (exit 2 for bad input or an operating-system error
such as a full disk, 1 for a failed run, 130 when stopped by a signal) instead of a traceback."""
import argparse
import errno
import os
import re
import sys

from bct.config import load_cfg
from bct.utils.comm import get_rank, is_dist, is_main_process
from bct.utils.errors import BadInputError, CheckFailedError, TrainingError
from bct.utils.logger import setup_logger


def default_parser(description: str, resume: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cfg", default="", help="yaml config file (may use _BASE_)")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the output folder")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. TRAIN.EPOCHS 5")
    return p


def setup(args, out_dir_fn=None, hold=None):
    """Config (frozen), device and logger (console, and <output folder>/log.txt on rank 0).

    With ``hold`` (a contextlib.ExitStack) rank 0 first claims the output folder for the life of
    that stack (bct.engine.lock), before anything is written into it: a second run in the same
    folder is refused. The config is not written here: each tool writes config.yaml together with
    its first output, so a run that fails early leaves an earlier run's config.yaml alone.
    """
    notes = []
    cfg = load_cfg(args.cfg, args.opts, notes=notes)
    if cfg.NUM_THREADS > 0:
        import torch
        torch.set_num_threads(cfg.NUM_THREADS)
    from bct.engine.distributed import init_distributed
    device = init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
    out_dir = out_dir_fn(cfg) if out_dir_fn else ""
    lock = None
    if hold is not None and out_dir and is_main_process():
        from bct.engine.lock import OutputLock
        lock = hold.enter_context(OutputLock(out_dir))
    logger = setup_logger(out_dir)
    for note in notes:
        logger.info(note)
    if lock is not None and lock.stale_note():
        logger.info(lock.stale_note())
    if out_dir:
        logger.info(f"config: {args.cfg or '(defaults)'}; output folder {out_dir}")
    return cfg, device, logger


def one_line(err: BaseException) -> str:
    """The user-facing line of an error. A DataLoader worker re-raises the error it caught with the
    worker's whole traceback in the message; only the original message is kept from that."""
    text = str(err).strip()
    if "\nOriginal Traceback" in text:
        last = text.splitlines()[-1].strip()
        text = re.sub(r"^[\w.]+: ", "", last, count=1)
    return text.splitlines()[0] if text else type(err).__name__


def _peer_failure(err: BaseException) -> bool:
    """A collective failed because another process died or stopped answering. NCCL raises
    DistError subclasses; gloo raises a plain RuntimeError whose message names gloo."""
    import torch.distributed as dist
    return isinstance(err, dist.DistError) or (is_dist() and "gloo" in str(err).lower())


_OS_CAUSES = {
    errno.ENOSPC: ("no space left on the device", "free some space or write to another disk; earlier files are intact"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write to another disk; earlier files are intact"),
    errno.EFBIG: ("file too large for the file system or for the process's file-size limit (ulimit -f)",
                  "raise the limit or write to another disk; earlier files are intact"),
    errno.EROFS: ("the file system is read-only", "write to a writable folder"),
    errno.EACCES: ("permission denied", "check the owner and mode of the file and its folder, or write elsewhere"),
    errno.EPERM: ("operation not permitted", "check the owner and mode of the file and its folder, or write elsewhere"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "fix the path"),
    errno.EISDIR: ("is a folder, not a file", "fix the path"),
    errno.ENOENT: ("no such file or folder", "fix the path"),
    errno.EIO: ("input/output error", "the disk or network file system is failing; check it"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or use fewer loader workers"),
}


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error: the path, the cause in words, what to do."""
    path = err.filename if err.filename is not None else "(no path)"
    if err.filename2 is not None:
        path = f"{path} -> {err.filename2}"
    code = errno.errorcode.get(err.errno, "")
    cause, hint = _OS_CAUSES.get(err.errno, (err.strerror or one_line(err), ""))
    return f"{path}: {cause}" + (f" ({code})" if code else "") + (f"; {hint}" if hint else "")


def run(main, argv=None):
    """Run `main(argv)` and map failures to one line and an exit code; returns what main returned."""
    code = 0
    result = None
    try:
        result = main(argv)
    except BadInputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        code = 2
    except (TrainingError, CheckFailedError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"stopped (rank {get_rank()})", file=sys.stderr)
        code = 130
    except OSError as e:
        if is_dist() and isinstance(e, ConnectionError):
            print(f"error: rank {get_rank()}: the connection to another process broke ({one_line(e)}); "
                  f"read the other ranks' logs and restart with --resume", file=sys.stderr)
            code = 1
        else:
            print(f"error: {os_error_line(e)}", file=sys.stderr)
            code = 2
    except RuntimeError as e:
        if not _peer_failure(e):
            raise
        reason = re.sub(r"^\[[^\]]*\]\s*", "", one_line(e))[:200]
        timeout = os.environ.get("BCT_DIST_TIMEOUT", "1800")
        print(f"error: rank {get_rank()}: a collective operation failed ({reason}); another process "
              f"probably died or stopped answering: read its log, fix the cause and restart with --resume "
              f"(waits are bounded by BCT_DIST_TIMEOUT={timeout} s)", file=sys.stderr)
        code = 1
    finally:
        if "torch.distributed" in sys.modules:  # tools that never imported torch have nothing to clean
            from bct.engine.distributed import cleanup_distributed
            cleanup_distributed()
    if code:
        sys.exit(code)
    return result
