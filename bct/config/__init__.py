"""Configuration loading: defaults -> yaml (with _BASE_ inheritance) -> KEY VALUE pairs -> freeze.

Errors name the offending key: an unknown key gets the closest valid key, a type mismatch both
types, a value outside its rule (declared next to each default in bct/config/defaults.py) what is
allowed and the file and line, or the command line, that set it. A key given twice in one yaml
block is refused with both lines. See DESIGN.md "Configuration".
"""
import ast
import difflib
import os

import yaml
from yacs.config import CfgNode as CN

from bct.config.defaults import RULES, get_cfg_defaults
from bct.utils.errors import BadInputError
from bct.utils.fileio import read_text

__all__ = ["get_cfg_defaults", "load_cfg", "cfg_to_yaml", "cfg_from_yaml_text"]

_BASE_KEY = "_BASE_"


def _all_keys(node: CN, prefix: str = ""):
    for k, v in node.items():
        full = f"{prefix}{k}"
        yield full
        if isinstance(v, CN):
            yield from _all_keys(v, full + ".")


def _closest(key: str, cfg: CN) -> str:
    keys = list(_all_keys(cfg))
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.0)
    return match[0] if match else ""


class _DuplicateKey(Exception):
    def __init__(self, key, line, first):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _LinedDict(dict):
    """A yaml mapping that remembers the 1-based line of each key (``lines``)."""

    lines: dict


class _Loader(yaml.SafeLoader):
    """yaml's safe loader, but a key given twice in one mapping is an error (yaml would silently
    keep the last one: two TRAIN: blocks would lose the first) and each mapping records the line
    of each key, so that a bad value can be traced to its line."""

    def construct_mapping(self, node, deep=False):
        first = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in first:
                raise _DuplicateKey(key, line, first[key])
            first[key] = line
        out = _LinedDict(super().construct_mapping(node, deep=deep))
        out.lines = first
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)


def _yaml_error(path: str, e: yaml.YAMLError) -> BadInputError:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = "; indent with spaces: yaml does not allow tabs" if "'\\t'" in problem else ""
    return BadInputError(f"config {path}: not valid yaml{where} ({problem}){hint}")


def _read_yaml(path: str, chain: tuple = ()) -> list:
    """Read a yaml file and its _BASE_ chain (paths relative to the including file).

    Returns [(file, mapping)] in the order they apply: bases first, the file itself last.
    """
    if not os.path.isfile(path):
        if chain:
            raise BadInputError(f"config {chain[-1]}: _BASE_ file {path} does not exist")
        raise BadInputError(f"config file {path} does not exist")
    if os.path.abspath(path) in chain:
        raise BadInputError(f"config {path}: _BASE_ inheritance loops back on itself")
    text = read_text(path, f"config {path}")
    try:
        data = yaml.load(text, Loader=_Loader)
    except _DuplicateKey as e:
        raise BadInputError(f"config {path}: key {e.key} appears twice in the same block (lines {e.first} and "
                            f"{e.line}); yaml would keep only the second: merge the two") from None
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if data is None:
        data = _LinedDict()
    if not isinstance(data, dict):
        raise BadInputError(f"config {path}: expected a mapping of KEY: value at the top level")
    base = data.pop(_BASE_KEY, None)
    if base is None:
        return [(path, data)]
    bases = base if isinstance(base, list) else [base]
    bad = [b for b in bases if not isinstance(b, str) or not b]
    if bad:
        raise BadInputError(f"config {path}: _BASE_ must be a file name or a list of file names, "
                            f"got {type(bad[0]).__name__} {bad[0]!r}")
    layers = []
    for b in bases:
        bpath = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        layers += _read_yaml(bpath, chain + (os.path.abspath(path),))
    return layers + [(path, data)]


def _coerce(key: str, value, default, source: str):
    """Check a value against the default's type; ints widen to floats, lists/tuples interchange."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads 5e-4 (no dot) as a string; it is still a number to a user.
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
    elif default is None:
        return value
    raise BadInputError(
        f"{source}: key {key} expects {type(default).__name__} (currently {default!r}) "
        f"but got {type(value).__name__} {value!r}"
    )


def _merge(cfg: CN, data: dict, source: str, origins: dict, prefix: str = "") -> None:
    """Merge a yaml mapping into cfg; origins[key] records where each value came from."""
    lines = getattr(data, "lines", {})
    for k, v in data.items():
        full = f"{prefix}{k}"
        if k not in cfg:
            raise BadInputError(
                f"{source}: unknown config key {full} (closest valid key: {_closest(full, _root(cfg))})"
            )
        if isinstance(cfg[k], CN):
            if not isinstance(v, dict):
                raise BadInputError(f"{source}: key {full} is a section; expected a mapping")
            _merge(cfg[k], v, source, origins, full + ".")
        else:
            cfg[k] = _coerce(full, v, cfg[k], source)
            origins[full] = f"in {source}, line {lines[k]}" if k in lines else f"in {source}"


_ROOT = {}


def _root(node: CN) -> CN:
    return _ROOT.get("cfg", node)


def _parse_cli_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


def merge_opts(cfg: CN, opts, origins: dict = None) -> None:
    """Merge command-line KEY VALUE pairs."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise BadInputError(f"command line: overrides come as KEY VALUE pairs; {opts[-1]} has no value")
    for key, text in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], CN):
                raise BadInputError(
                    f"command line: unknown config key {key} (closest valid key: {_closest(key, cfg)})"
                )
            node = node[p]
        last = parts[-1]
        if last not in node or isinstance(node[last], CN):
            raise BadInputError(
                f"command line: unknown config key {key} (closest valid key: {_closest(key, cfg)})"
            )
        value = _parse_cli_value(text)
        # A string default accepts whatever was typed, verbatim (paths like 1e-3 or 'True').
        if isinstance(node[last], str) and not isinstance(value, str):
            value = text
        node[last] = _coerce(key, value, node[last], "command line")
        if origins is not None:
            origins[key] = "on the command line"


def load_cfg(path: str = "", opts=None, freeze: bool = True) -> CN:
    """defaults -> yaml file (with _BASE_) -> KEY VALUE overrides -> checks -> (frozen) config."""
    cfg = get_cfg_defaults()
    origins = {}
    _ROOT["cfg"] = cfg
    try:
        if path:
            for file, data in _read_yaml(path):
                _merge(cfg, data, f"config {file}", origins)
        merge_opts(cfg, opts, origins)
    finally:
        _ROOT.pop("cfg", None)
    check_cfg(cfg, origins)
    if freeze:
        cfg.freeze()
    return cfg


def _get(cfg: CN, key: str):
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node


def check_values(cfg: CN, origins: dict = None) -> None:
    """Every key against its rule in bct/config/defaults.py; the message names the key, the value,
    what is allowed and where the value was set."""
    origins = origins or {}
    for key, rule in RULES.items():
        value = _get(cfg, key)
        if not rule.ok(value):
            where = origins.get(key, "by the defaults")
            raise BadInputError(f"config: {key} is {value!r}; expected {rule.expected} (set {where})")


def check_cfg(cfg: CN, origins: dict = None) -> None:
    """Value checks that yacs' type check cannot express."""
    check_values(cfg, origins)
    if cfg.TRAIN.TYPE != "base" and cfg.COMP_LOSS.TYPE == "none" and cfg.TRAIN.TYPE == "compatible":
        raise BadInputError(
            "config: TRAIN.TYPE compatible needs COMP_LOSS.TYPE (bct, lce, uni_bct, hot_refresh, bct_limit)"
        )


def cfg_to_yaml(cfg: CN) -> str:
    return cfg.dump()


def cfg_from_yaml_text(text: str) -> CN:
    """Rebuild a config from the yaml text stored in a checkpoint (unknown keys are ignored)."""
    cfg = get_cfg_defaults()
    data = yaml.safe_load(text) or {}

    def merge_known(node, d):
        for k, v in d.items():
            if k in node:
                if isinstance(node[k], CN) and isinstance(v, dict):
                    merge_known(node[k], v)
                elif not isinstance(node[k], CN):
                    node[k] = v

    merge_known(cfg, data)
    return cfg
