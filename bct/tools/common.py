"""What every entry point shares: the argument shape, config loading, distributed set-up and
turning known errors into one line on stderr (exit 2 for bad input, 1 for a failed run, 130 when
stopped by a signal) instead of a traceback."""
import argparse
import os
import sys

from bct.config import cfg_to_yaml, load_cfg
from bct.engine.distributed import cleanup_distributed, init_distributed
from bct.utils.comm import get_rank, is_main_process
from bct.utils.errors import BadInputError
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
    device = init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
    out_dir = out_dir_fn(cfg) if out_dir_fn else ""
    logger = setup_logger(out_dir)
    if out_dir and is_main_process():
        write_text_atomic(os.path.join(out_dir, "config.yaml"), cfg_to_yaml(cfg))
        logger.info(f"config: {args.cfg or '(defaults)'} -> {os.path.join(out_dir, 'config.yaml')}")
    return cfg, device, logger


def run(main, argv=None):
    """Run `main(argv)` and map failures to one line and an exit code."""
    from bct.engine.trainer import TrainingError
    code = 0
    try:
        main(argv)
    except BadInputError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"stopped (rank {get_rank()})", file=sys.stderr)
        code = 130
    finally:
        cleanup_distributed()
    if code:
        sys.exit(code)
