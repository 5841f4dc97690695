"""Configuration loading: defaults -> yaml (with _BASE_ inheritance) -> KEY VALUE pairs -> freeze.

Errors name the offending key: an unknown key gets the closest valid key, a type mismatch both
types. See DESIGN.md "Configuration".
"""
import ast
import difflib
import os

import yaml
from yacs.config import CfgNode as CN

from bct.config.defaults import get_cfg_defaults
from bct.utils.errors import BadInputError

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


def _read_yaml(path: str, chain: tuple = ()) -> dict:
    """Read a yaml file and resolve its _BASE_ chain (paths relative to the including file)."""
    if not os.path.isfile(path):
        if chain:
            raise BadInputError(f"config {chain[-1]}: _BASE_ file {path} does not exist")
        raise BadInputError(f"config file {path} does not exist")
    if os.path.abspath(path) in chain:
        raise BadInputError(f"config {path}: _BASE_ inheritance loops back on itself")
    try:
        with open(path, "r") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise BadInputError(f"config {path}: not valid yaml ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"config {path}: expected a mapping of KEY: value at the top level")
    base = data.pop(_BASE_KEY, None)
    if base is None:
        return data
    bases = base if isinstance(base, list) else [base]
    merged: dict = {}
    for b in bases:
        bpath = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        _deep_update(merged, _read_yaml(bpath, chain + (os.path.abspath(path),)))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


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


def _merge(cfg: CN, data: dict, source: str, prefix: str = "") -> None:
    for k, v in data.items():
        full = f"{prefix}{k}"
        if k not in cfg:
            raise BadInputError(
                f"{source}: unknown config key {full} (closest valid key: {_closest(full, _root(cfg))})"
            )
        if isinstance(cfg[k], CN):
            if not isinstance(v, dict):
                raise BadInputError(f"{source}: key {full} is a section; expected a mapping")
            _merge(cfg[k], v, source, full + ".")
        else:
            cfg[k] = _coerce(full, v, cfg[k], source)


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


def merge_opts(cfg: CN, opts) -> None:
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


def load_cfg(path: str = "", opts=None, freeze: bool = True) -> CN:
    """defaults -> yaml file (with _BASE_) -> KEY VALUE overrides -> checks -> (frozen) config."""
    cfg = get_cfg_defaults()
    _ROOT["cfg"] = cfg
    try:
        if path:
            _merge(cfg, _read_yaml(path), f"config {path}")
        merge_opts(cfg, opts)
    finally:
        _ROOT.pop("cfg", None)
    check_cfg(cfg)
    if freeze:
        cfg.freeze()
    return cfg


_CHOICES = {
    "TRAIN.TYPE": ("base", "compatible", "adv_compatible"),
    "TRAIN.ROLE": ("old", "new"),
    "LOSS.TYPE": ("softmax", "arcface", "cosface"),
    "COMP_LOSS.RADIUS": ("min", "median", "max"),
    "COMP_LOSS.DISC_MODE": ("separate", "joint"),
    "TRAIN.OPTIMIZER.NAME": ("sgd", "adamw"),
    "TRAIN.LR_SCHEDULER.NAME": ("multistep", "cosine"),
    "EVAL.RESIZE": ("squash", "aspect"),
    "DATA.DECODE_DEVICE": ("cpu", "cuda"),
    "DATA.EVAL_DECODE_DEVICE": ("cpu", "cuda"),
    "EVAL.SEARCH_BACKEND": ("faiss", "torch"),
    "DEVICE": ("auto", "cuda", "cpu"),
    "DIST_BACKEND": ("auto", "nccl", "gloo"),
    "UPGRADE_LOSS.TYPE": ("base",),
}


def _get(cfg: CN, key: str):
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node


def check_cfg(cfg: CN) -> None:
    """Value checks that yacs' type check cannot express."""
    for key, choices in _CHOICES.items():
        v = _get(cfg, key)
        if v not in choices:
            raise BadInputError(f"config: {key} is {v!r}; expected one of {', '.join(choices)}")
    if cfg.TRAIN.BATCH_SIZE < 1 or cfg.EVAL.BATCH_SIZE < 1:
        raise BadInputError("config: TRAIN.BATCH_SIZE and EVAL.BATCH_SIZE must be at least 1")
    if cfg.TRAIN.EPOCHS < 1:
        raise BadInputError("config: TRAIN.EPOCHS must be at least 1")
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
