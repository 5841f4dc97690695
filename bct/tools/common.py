"""What every command-line tool shares: the parser (`python -m bct.tools.<name>` as its name, the
docstring as written, bad input as one `error: ...` line), value types that fail with one line
(counts, files, folders, comma-separated lists), the outputs that may never replace an input, config
loading and set-up, and turning known errors into one line on stderr (exit 2 for bad input or an
operating-system error such as a full disk, 1 for a failed run, 130 when stopped by a signal)
instead of a traceback.

The convention: list-valued flags take ONE comma-separated value (--datasets a,b, --seeds 1,2,3,
--models old=A.pth,new=B.pth); one model is --model PATH; an output is --out PATH; config overrides
are trailing KEY VALUE pairs.
"""
import argparse
import errno
import os
import re
import signal
import sys

from bct.utils.comm import get_rank, is_dist
from bct.utils.errors import BadInputError, CheckFailedError, TrainingError

_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


class Parser(argparse.ArgumentParser):
    """argparse with the tool's module as its name, the docstring kept as written, and a bad
    argument raised as BadInputError (one line, exit 2 through `run`)."""

    def error(self, message):
        raise BadInputError(f"{message} (see {self.prog} --help)")


def parser(module_file: str, doc: str, cfg: bool = False, opts: bool = False) -> Parser:
    """The parser of the tool in ``module_file``; ``cfg`` adds --cfg, ``opts`` the trailing KEY VALUE overrides
    (add them last)."""
    name = os.path.splitext(os.path.basename(module_file))[0]
    p = Parser(prog=f"python -m bct.tools.{name}", description=doc,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    if cfg:
        p.add_argument("--cfg", default="", type=config_file, help="yaml config file (may use _BASE_; "
                       "<setting>/new_<method>.yml is the method's new model in that setting)")
    return p


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. TRAIN.EPOCHS 5")


def overrides(opts) -> list:
    """The trailing KEY VALUE pairs, checked for shape (a leading "--" is dropped)."""
    opts = list(opts or [])
    if opts[:1] == ["--"]:
        opts = opts[1:]
    for key in opts[0::2]:
        if not _KEY.match(key):
            hint = ("; list flags take one comma-separated value (e.g. --seeds 1,2,3)" if not key.startswith("-")
                    else "; flags go before the KEY VALUE overrides")
            raise BadInputError(f"{key!r} is not a config key (KEY VALUE overrides such as TRAIN.EPOCHS 5){hint}")
    if len(opts) % 2:
        raise BadInputError(f"overrides come as KEY VALUE pairs; {opts[-1]} has no value")
    return opts


# -- value types (argparse calls them; an error becomes one line) -------------------------------

def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (>= 1)")
    return value


def nonneg_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction such as 0.3") from None


def existing_file(path: str) -> str:
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def config_file(path: str) -> str:
    """A config file, or <setting>/new_<method>.yml of a catalogue method (made from the catalogue)."""
    from bct.config.methods import method_spec_of_path
    return path if not path or method_spec_of_path(path) else existing_file(path)


def existing_dir(path: str) -> str:
    if os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def _writable_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        if os.path.exists(parent):
            raise BadInputError(f"{path}: {parent} is a file, not a folder (ENOTDIR); fix the path")
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{path}: cannot write into {parent}: permission denied (EACCES); write elsewhere")


# The output types raise BadInputError themselves: the line names the path, as an OS error would.
def output_file(path: str) -> str:
    """A file to write: not a folder, in a folder that can be written."""
    if os.path.isdir(path):
        raise BadInputError(f"{path}: is a folder, not a file (EISDIR); give a file to write")
    _writable_parent(path)
    return path


def output_dir(path: str) -> str:
    """A folder to write into: not a file, inside a folder that can be written."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise BadInputError(f"{path}: is a file, not a folder (ENOTDIR); give a folder to write into")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise BadInputError(f"{path}: cannot write into it: permission denied (EACCES); write elsewhere")
    else:
        _writable_parent(path)
    return path


def csv_list(item=str):
    """A type for one comma-separated value: '1,2,3' -> [item('1'), ...], at least one item."""
    def parse(text: str) -> list:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} names nothing; give one comma-separated value such as a,b")
        return [item(x) for x in items]
    return parse


def named_paths(text: str, flag: str) -> list:
    """'a=x.pth,b=y.pth' -> [('a', 'x.pth'), ('b', 'y.pth')], names unique. An item that is an existing
    file is a path (named after the file) even if it contains '='."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if os.path.isfile(item):
            name, path = os.path.splitext(os.path.basename(item))[0], item
        else:
            name, sep, path = (s.strip() for s in item.partition("="))
            if not sep or not name or not path:
                raise BadInputError(f"{flag}: {item!r} is not NAME=PATH (e.g. gen1=output/old.pth,gen2=output/new.pth)")
        if name in dict(out):
            raise BadInputError(f"{flag}: the name {name!r} is given twice; every model needs its own name")
        if os.path.isdir(path):
            raise BadInputError(f"{flag}: checkpoint {path} of {name!r} is a folder, not a file")
        if not os.path.isfile(path):
            raise BadInputError(f"{flag}: checkpoint {path} of {name!r} does not exist")
        out.append((name, path))
    return out


def refuse_overwrite(out: str, inputs: dict, flag: str = "--out") -> None:
    """Refuse an output that is (or resolves to) one of ``inputs`` ({what: path}), or that would
    replace a file of a training run's folder (a checkpoint this tool did not make)."""
    real = os.path.realpath(out)
    for what, path in inputs.items():
        if path and os.path.exists(path) and os.path.realpath(path) == real:
            raise BadInputError(f"{flag} {out} is {what} ({path}); a tool never writes over its input: "
                                "give another output")
    folder = os.path.dirname(real)
    if os.path.isfile(real) and any(os.path.exists(os.path.join(folder, n)) for n in ("last_checkpoint", "run.json")):
        raise BadInputError(f"{flag} {out} is a file of the run in {folder}, which this tool did not make; "
                            "write elsewhere")


def config(args, notes_to=None):
    """The frozen config of --cfg and the overrides; the loader's notes are logged by ``notes_to``."""
    from bct.config import load_cfg

    notes = []
    cfg = load_cfg(getattr(args, "cfg", ""), overrides(getattr(args, "opts", [])), notes=notes)
    for note in notes:
        (notes_to or print)(note)
    return cfg


def setup(args, out_dir_fn=None):
    """Config (frozen), device and logger (console, and <output folder>/log.txt on rank 0)."""
    from bct.engine.distributed import init_distributed
    from bct.pipeline.train import apply_threads
    from bct.utils.logger import setup_logger

    notes = []
    cfg = config(args, notes.append)
    apply_threads(cfg)
    device = init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
    out_dir = out_dir_fn(cfg) if out_dir_fn else ""
    logger = setup_logger(out_dir)
    for note in notes:
        logger.info(note)
    if out_dir:
        logger.info(f"config: {getattr(args, 'cfg', '') or '(defaults)'}; output folder {out_dir}")
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


def _stop(signum, frame):
    raise KeyboardInterrupt


def run(main, argv=None):
    """Run `main(argv)` and map failures to one line and an exit code; returns what main returned.
    SIGTERM stops the tool as Ctrl-C does (its worker processes are ended, exit 130)."""
    code = 0
    result = None
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread
        previous = None
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
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if "torch.distributed" in sys.modules:  # tools that never imported torch have nothing to clean
            from bct.engine.distributed import cleanup_distributed
            cleanup_distributed()
    if code:
        sys.exit(code)
    return result
