"""What every entry point shares: the argument shape, config loading, distributed set-up and
turning known errors into one line on stderr (exit 2 for bad input, 1 for a failed run, 130 when
stopped by a signal) instead of a traceback."""
import argparse
import os
import re
import sys

from bct.config import cfg_to_yaml, load_cfg
from bct.utils.comm import get_rank, is_dist, is_main_process
from bct.utils.errors import BadInputError, CheckFailedError, TrainingError
from bct.utils.fileio import write_text_atomic
from bct.utils.logger import setup_logger


def default_parser(description: str, resume: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cfg", default="", help="yaml config file (may use _BASE_)")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the output folder")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. TRAIN.EPOCHS 5")
    return p


def setup(args, out_dir_fn=None):
    """Config (frozen), device and logger; writes config.yaml into the output folder on rank 0."""
    cfg = load_cfg(args.cfg, args.opts)
    if cfg.NUM_THREADS > 0:
        import torch
        torch.set_num_threads(cfg.NUM_THREADS)
    from bct.engine.distributed import init_distributed
    device = init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
    out_dir = out_dir_fn(cfg) if out_dir_fn else ""
    logger = setup_logger(out_dir)
    if out_dir and is_main_process():
        write_text_atomic(os.path.join(out_dir, "config.yaml"), cfg_to_yaml(cfg))
        logger.info(f"config: {args.cfg or '(defaults)'} -> {os.path.join(out_dir, 'config.yaml')}")
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


def run(main, argv=None):
    """Run `main(argv)` and map failures to one line and an exit code."""
    code = 0
    try:
        main(argv)
    except BadInputError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        code = 2
    except (TrainingError, CheckFailedError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"stopped (rank {get_rank()})", file=sys.stderr)
        code = 130
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
