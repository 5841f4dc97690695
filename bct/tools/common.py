"""What every command-line tool shares: the parser (`python -m bct.tools.<name>` as its name, the
docstring as written, bad input as one `error: ...` line), the declared kinds of values, config
loading and set-up, and turning known errors into one line on stderr (exit 2 for bad input or an
operating-system error such as a full disk, 1 for a failed run, 130 when stopped by a signal)
instead of a traceback.

Every flag of every entry point (the tools, benchmarks/*.py) is declared here: its ``type=`` is a
Kind (a count, a seed, a fraction, an existing file or folder, an output file or folder, a comma
list of a kind, ...), which converts the text, refuses a bad value with one line naming the flag,
and tells whether the value names an input or an output. The parse step itself then refuses any
output that is, lies inside, or holds one of the inputs (files and folders, through symlinks), so a
new flag or a new tool cannot escape either check. ``kind_of(action)`` reads the declaration back.

The convention: list-valued flags take ONE comma-separated value (--datasets a,b, --seeds 1,2,3,
--models old=A.pth,new=B.pth); one model is --model PATH; an output is --out PATH; config overrides
are trailing KEY VALUE pairs.
"""
import argparse
import errno
import math
import os
import re
import signal
import sys

from bct.utils.comm import barrier, get_rank, is_dist
from bct.utils.errors import AgreedError, BadInputError, CheckFailedError, TrainingError

_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")
# The largest whole number a count, a size or an index flag accepts (a 32-bit signed int).
MAX_INT = 2 ** 31 - 1
INPUT, OUTPUT = "input", "output"


# -- the parser ----------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """argparse with the tool's module as its name, the docstring kept as written, a bad argument
    raised as BadInputError (one line, exit 2 through `run`), and after parsing the one check that
    no output of the command lies over one of its inputs (``refuse_overlap``)."""

    def error(self, message):
        raise BadInputError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        check_paths(self, namespace)
        return namespace, extra


def parser(module_file: str, doc: str, cfg: bool = False, opts: bool = False, prog: str = "") -> Parser:
    """The parser of the tool in ``module_file`` (``prog``: its command when not ``python -m
    bct.tools.<name>``, e.g. a benchmark script); ``cfg`` adds --cfg, ``opts`` the trailing KEY VALUE
    overrides (add_overrides adds them last otherwise)."""
    name = os.path.splitext(os.path.basename(module_file))[0]
    p = Parser(prog=prog or f"python -m bct.tools.{name}", description=doc,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    if cfg:
        p.add_argument("--cfg", default="", type=config_file, help="yaml config file (may use _BASE_; "
                       "<setting>/new_<method>.yml is the method's new model in that setting)")
    if opts:
        add_overrides(p)
    return p


def script_parser(script_file: str, doc: str) -> Parser:
    """The parser of a script run as ``python benchmarks/<name>.py``."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(script_file)))
    return parser(script_file, doc, prog=f"python {folder}/{os.path.basename(script_file)}")


# -- declared kinds -------------------------------------------------------------------------------

class Kind:
    """A declared kind of value. Called as argparse's ``type`` it turns the text into the value or
    raises ArgumentTypeError (argparse prefixes the flag). Its declaration, read back by tests and by
    the overlap check: ``family`` (int, float, file, folder, path, config, output_file, output_folder,
    work_path, choice, list, models, datasets, result_folders, device, text, overrides, switch),
    ``lo``/``hi`` (a number's range; ``lo_open``/``hi_open`` when a bound is excluded), ``choices``,
    ``item`` (a list's kind) and ``role`` (INPUT, OUTPUT or None: what the overlap check compares)."""

    def __init__(self, family: str, convert, *, role=None, lo=None, hi=None, lo_open=False, hi_open=False,
                 choices=None, item=None, describe: str = ""):
        self.family, self._convert, self.role = family, convert, role
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.choices, self.item = choices, item
        self.__name__ = describe or family  # argparse names a type by it

    def __call__(self, text):
        return self._convert(self, text)

    def __repr__(self):
        return f"Kind({self.__name__})"

    def paths(self, value) -> list:
        """The paths a parsed value names (for the overlap check): none unless the kind has a role."""
        if self.role is None or value is None or value == "":
            return []
        if self.family == "list":
            return [p for v in value for p in self.item.paths(v)]
        if self.family == "models":
            return [path for _, path in value]
        if self.family == "datasets":
            from bct.evaluation.sets import parse_set_specs
            return [root for _, root in parse_set_specs(value) if root]
        if self.family == "result_folders":  # what is read: the result files of the folder
            folder = _folder_of(value)
            return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".json")]
        return [value] if isinstance(value, str) else []


def _int(kind, text) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if kind.lo is not None and value < kind.lo:
        if kind.lo == 1:
            raise argparse.ArgumentTypeError(f"{value} is not a positive number (>= 1)")
        raise argparse.ArgumentTypeError(f"{value} is negative" if kind.lo == 0 else f"{value} is below {kind.lo}")
    if kind.hi is not None and value > kind.hi:
        raise argparse.ArgumentTypeError(f"{text} is too large (at most {kind.hi})")
    return value


def integer(lo=None, hi=MAX_INT, describe: str = "") -> Kind:
    """A whole number in lo..hi (both included)."""
    return Kind("int", _int, lo=lo, hi=hi, describe=describe or f"whole number {lo}..{hi}")


def _float(kind, text) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind.__name__}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    low = kind.lo is not None and (value <= kind.lo if kind.lo_open else value < kind.lo)
    high = kind.hi is not None and (value >= kind.hi if kind.hi_open else value > kind.hi)
    if low or high:
        raise argparse.ArgumentTypeError(f"{text} is not {kind.__name__}")
    return value


def real(lo=None, hi=None, lo_open=False, hi_open=False, describe: str = "") -> Kind:
    """A finite number in the range (``describe``: what it is, in words, e.g. 'a positive number')."""
    return Kind("float", _float, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, describe=describe or "a number")


positive_int = count = integer(1, describe="count >= 1")
nonneg_int = integer(0, describe="whole number >= 0")
seed = integer(0, 2 ** 32 - 1, describe="seed 0..4294967295")
positive_float = real(0, None, lo_open=True, describe="a positive number")
fraction = real(0, 1, lo_open=True, describe="a fraction in (0, 1] such as 0.3")
open_fraction = real(0, 1, lo_open=True, hi_open=True, describe="a fraction strictly between 0 and 1 such as 0.3")


def _text(kind, text) -> str:
    if kind.choices is not None and text not in kind.choices:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(map(str, kind.choices))}")
    return text


text = Kind("text", _text, describe="text")


def choice(*values) -> Kind:
    """One of ``values`` (as ``choices=``: argparse names the flag and the choices)."""
    return Kind("choice", _text, choices=tuple(values), describe="choice")


def _device(kind, text) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: auto, cpu, cuda or cuda:N")
    return text


device = Kind("device", _device, describe="device")


def _existing_file(kind, path: str) -> str:
    if path == "":  # the flag's empty default: not given
        return path
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def _existing_dir(kind, path: str) -> str:
    if path == "":
        return path
    if os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def _existing_path(kind, path: str) -> str:
    if path and not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


existing_file = Kind("file", _existing_file, role=INPUT, describe="existing file")
existing_dir = Kind("folder", _existing_dir, role=INPUT, describe="existing folder")
existing_path = Kind("path", _existing_path, role=INPUT, describe="existing file or folder")


def _config_file(kind, path: str) -> str:
    """A config file, or <setting>/new_<method>.yml of a catalogue method (made from the catalogue)."""
    from bct.config.methods import method_spec_of_path
    return path if not path or method_spec_of_path(path) else _existing_file(kind, path)


config_file = Kind("config", _config_file, role=INPUT, describe="config file")


def _writable_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        if os.path.exists(parent):
            raise argparse.ArgumentTypeError(f"{path}: {parent} is a file, not a folder (ENOTDIR); fix the path")
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write into {parent}: permission denied (EACCES); "
                                         "write elsewhere")


def _output_file(kind, path: str) -> str:
    """A file to write: not a folder, in a folder that can be written."""
    if path == "":
        return path
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: is a folder, not a file (EISDIR); give a file to write")
    _writable_parent(path)
    return path


def _output_dir(kind, path: str) -> str:
    """A folder to write into: not a file, inside a folder that can be written."""
    if path == "":
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a folder (ENOTDIR); give a folder to write into")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{path}: cannot write into it: permission denied (EACCES); "
                                             "write elsewhere")
    else:
        _writable_parent(path)
    return path


output_file = Kind("output_file", _output_file, role=OUTPUT, describe="file to write")
output_dir = Kind("output_folder", _output_dir, role=OUTPUT, describe="folder to write into")
# A folder read and written in place (made when missing): an output may not lie over it.
work_dir = Kind("output_folder", _output_dir, role=INPUT, describe="folder read and written")


def _work_path(kind, path: str) -> str:
    return _output_dir(kind, path) if not os.path.isfile(path) else path


# A file read, or a folder read and written (made when missing).
work_path = Kind("work_path", _work_path, role=INPUT, describe="file, or folder read and written")


def _as_kind(item) -> Kind:
    return item if isinstance(item, Kind) else Kind("text", lambda kind, t: item(t), describe=getattr(item, "__name__", "text"))


def csv_list(item=text) -> Kind:
    """One comma-separated value: '1,2,3' -> [item('1'), ...], at least one item, each of ``item``'s kind."""
    item = _as_kind(item)

    def parse(kind, value: str) -> list:
        items = [x.strip() for x in value.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{value!r} names nothing; give one comma-separated value such as a,b")
        return [item(x) for x in items]
    return Kind("list", parse, role=item.role, item=item, describe=f"comma list of {item.__name__}")


def _named_paths(text: str) -> list:
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if os.path.isfile(item):
            name, path = os.path.splitext(os.path.basename(item))[0], item
        else:
            name, sep, path = (s.strip() for s in item.partition("="))
            if not sep or not name or not path:
                raise argparse.ArgumentTypeError(f"{item!r} is not NAME=PATH (e.g. gen1=output/old.pth,"
                                                 "gen2=output/new.pth)")
        if name in dict(out):
            raise argparse.ArgumentTypeError(f"the name {name!r} is given twice; every model needs its own name")
        if os.path.isdir(path):
            raise argparse.ArgumentTypeError(f"checkpoint {path} of {name!r} is a folder, not a file")
        if not os.path.isfile(path):
            raise argparse.ArgumentTypeError(f"checkpoint {path} of {name!r} does not exist")
        out.append((name, path))
    return out


def named_paths(text: str, flag: str) -> list:
    """'a=x.pth,b=y.pth' -> [('a', 'x.pth'), ('b', 'y.pth')], names unique. An item that is an existing
    file is a path (named after the file) even if it contains '='."""
    try:
        return _named_paths(text)
    except argparse.ArgumentTypeError as e:
        raise BadInputError(f"{flag}: {e}") from None


models = Kind("models", lambda kind, t: _named_paths(t), role=INPUT, describe="NAME=CHECKPOINT list")


def _datasets(kind, value: str) -> str:
    """The text, once its sets are known to be well formed (the tool reads them with parse_sets)."""
    from bct.evaluation.sets import parse_set_specs
    if value == "":  # the flag's empty default: not given
        return value
    try:
        sets = parse_set_specs(value, "")
    except BadInputError as e:
        raise argparse.ArgumentTypeError(str(e).lstrip(": ")) from None
    if value and not sets:
        raise argparse.ArgumentTypeError(f"{value!r} names no set")
    return value


datasets = Kind("datasets", _datasets, role=INPUT, describe="comma list of NAME or NAME=ROOT")


def _folder_of(item: str) -> str:
    return item.partition("=")[2] if "=" in item and not os.path.isdir(item) else item


def _result_folder(kind, item: str) -> str:
    _existing_dir(kind, _folder_of(item))
    return item


# summarize's FOLDER or NAME=FOLDER (one per positional value): its input is the folder's .json results.
result_folder = Kind("result_folders", _result_folder, role=INPUT, describe="FOLDER or NAME=FOLDER")
# The trailing KEY VALUE overrides (declared on the action: its values stay text).
OVERRIDES = Kind("overrides", lambda kind, t: t, describe="KEY VALUE overrides")
SWITCH = Kind("switch", lambda kind, t: t, describe="switch")
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
             argparse._CountAction, argparse._AppendConstAction)


def kind_of(action: argparse.Action):
    """The declared kind of a parser's action; None for help, version and the sub-command action, and
    for an action declared with no kind (a plain ``type=int`` or none: undeclared)."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return None
    declared = getattr(action, "kind", None)
    if declared is not None:
        return declared
    if action.choices is not None and (action.type is None or action.type is text):
        return choice(*action.choices)
    if isinstance(action.type, Kind):
        return action.type
    if isinstance(action, _SWITCHES):
        return SWITCH
    return None


def undeclared(p: argparse.ArgumentParser) -> list:
    """'prog FLAG' of every action of ``p`` and its sub-commands that has no declared kind."""
    out = []
    for prog, action in walk(p):
        if kind_of(action) is None and not isinstance(
                action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            out.append(f"{prog} {flag_of(action)}")
    return out


def walk(p: argparse.ArgumentParser):
    """(prog, action) of every action of ``p`` and of its sub-commands' parsers."""
    for action in p._actions:
        yield p.prog, action
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from walk(sub)


def flag_of(action: argparse.Action) -> str:
    """How the user names an action: its longest option string, or its positional name."""
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


def add_overrides(p: argparse.ArgumentParser) -> None:
    action = p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. TRAIN.EPOCHS 5")
    action.kind = OVERRIDES


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


# -- no output over an input ---------------------------------------------------------------------

def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _within(inner: str, outer: str) -> bool:
    return inner != outer and inner.startswith(outer.rstrip(os.sep) + os.sep)


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # the same file through a hard link as well
    except OSError:
        return False


def refuse_overlap(outputs, inputs) -> None:
    """THE check that a command writes over none of its inputs. ``outputs`` and ``inputs`` are
    (label, path) pairs (label: the flag or the config key that named the path, or words); an
    output is refused when it is an input (also through a symlink or a hard link), lies inside an
    input folder, or is a folder holding an input; and an existing output file of a training run's
    folder (a checkpoint the command did not make) is refused too. One BadInputError line names both."""
    inputs = [(label, path, _real(path)) for label, path in inputs if path]
    for olabel, out in outputs:
        if not out:
            continue
        ro = _real(out)
        for ilabel, inp, ri in inputs:
            if ro == ri or _same(out, inp):
                raise BadInputError(f"{olabel} {out} is {ilabel} ({inp}); a tool never writes over its input: "
                                    "give another output")
            if _within(ro, ri):
                raise BadInputError(f"{olabel} {out} lies inside {ilabel} ({inp}); a tool never writes into its "
                                    "input: give an output outside it")
            if _within(ri, ro):
                raise BadInputError(f"{olabel} {out} holds {ilabel} ({inp}); a tool never writes where its input "
                                    "lies: give an output that does not contain it")
        folder = os.path.dirname(ro)
        if os.path.isfile(ro) and any(os.path.exists(os.path.join(folder, n)) for n in ("last_checkpoint", "run.json")):
            raise BadInputError(f"{olabel} {out} is a file of the run in {folder}, which this tool did not make; "
                                "write elsewhere")


def check_paths(p: argparse.ArgumentParser, namespace) -> None:
    """The overlap check of a parsed command: every path of an output-kind flag against every path of
    an input-kind flag (the chosen sub-command's flags included)."""
    outputs, inputs = [], []

    def collect(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
                if chosen is not None:
                    collect(chosen)
                continue
            kind = kind_of(action)
            if kind is None or kind.role is None or not hasattr(namespace, action.dest):
                continue
            value = getattr(namespace, action.dest)
            values = value if action.nargs in ("+", "*") and isinstance(value, list) else [value]
            paths = [path for v in values if v is not None for path in kind.paths(v)]
            target = outputs if kind.role == OUTPUT else inputs
            target += [(flag_of(action), path) for path in paths]
    collect(p)
    refuse_overlap(outputs, [(f"the input of {flag}", path) for flag, path in inputs])


def refuse_overwrite(out: str, inputs: dict, flag: str = "--out") -> None:
    """``refuse_overlap`` of one output named by ``flag`` against ``inputs`` ({what: path}), for the
    paths a tool knows only after parsing (a config's files)."""
    refuse_overlap([(flag, out)], list(inputs.items()))


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


def _all_printed() -> None:
    """After an AgreedError's line: wait until every rank has printed its own (each raised the same
    error, so each reaches this barrier at once) before this one exits and torchrun stops the rest."""
    try:
        sys.stderr.flush()
        barrier()
    except Exception:  # a rank gone already: its line is out or its log says why
        pass


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
    except (BadInputError, argparse.ArgumentTypeError) as e:  # the latter: a kind called directly
        print(f"error: {one_line(e)}", file=sys.stderr)
        code = 2
        if isinstance(e, AgreedError):
            _all_printed()
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
