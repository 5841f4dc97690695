"""Configuration loading: defaults -> yaml (with _BASE_ inheritance) -> KEY VALUE pairs -> freeze.

Errors name the offending key: an unknown key gets the closest valid key, a type mismatch both
types. The few keys of the reference implementation that bct does not define are accepted and
mapped or ignored by the explicit table ``REFERENCE_KEYS`` (docs/reference.md), so that the
reference's own yaml files and command lines load.
"""
import ast
import difflib
import logging
import os

import yaml
from yacs.config import CfgNode as CN

from bct.config.defaults import get_cfg_defaults
from bct.utils.errors import BadInputError

__all__ = ["get_cfg_defaults", "load_cfg", "cfg_to_yaml", "cfg_from_yaml_text", "REFERENCE_KEYS"]

_BASE_KEY = "_BASE_"

# Keys of the reference implementation's configs and scripts that bct does not define:
# key -> (bct key it maps to, or "" when ignored; why). The MODEL.* keys described the trained
# model: they map to OLD_MODEL.* in a config that trains the old model (TRAIN.TYPE base, TRAIN.ROLE
# old, as the reference's old_model.yml does); in a new-model config the reference used MODEL.ARCH
# ('resnet18_resnet18') only to name its output folder and repeated NEW_MODEL.* in the others.
REFERENCE_KEYS = {
    "MULTIPROCESSING_DISTRIBUTED": ("", "torchrun starts the processes (scripts/launch.sh)"),
    "DISTRIBUTED": ("", "torchrun starts the processes (scripts/launch.sh)"),
    "DIST_URL": ("", "torchrun's env:// rendezvous uses MASTER_ADDR and MASTER_PORT"),
    "EVAL.PRINT_FREQ": ("", "feature extraction shows a progress bar instead"),
    "MODEL.ARCH": ("OLD_MODEL.ARCH", "a new-model config reads OLD_MODEL.ARCH and NEW_MODEL.ARCH"),
    "MODEL.NUM_CLASSES": ("OLD_MODEL.NUM_CLASSES", "a new-model config reads NEW_MODEL.NUM_CLASSES"),
    "MODEL.PRETRAINED": ("OLD_MODEL.PRETRAINED", "a new-model config reads NEW_MODEL.PRETRAINED"),
}


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
        if k not in cfg and _stash_reference_key(full, v, 0):
            continue
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
            _mark_set(full, 0)


# State of the load_cfg call in progress: the root config, the reference keys met and the keys set,
# each with the level it came from (0 the yaml file, 1 the command line).
_ROOT = {}


def _mark_set(key: str, level: int) -> None:
    if "explicit" in _ROOT:
        _ROOT["explicit"][key] = level


def _stash_reference_key(key: str, value, level: int) -> bool:
    """Keep a reference-only key for _apply_reference_keys; False when the key is not one of them."""
    if key not in REFERENCE_KEYS or "reference" not in _ROOT:
        return False
    _ROOT["reference"][key] = (value, level)
    return True


def _apply_reference_keys(cfg: CN, reference: dict, explicit: dict) -> str:
    """Map or ignore the reference-only keys met while loading; returns the info line ("" if none).

    A bct key given at a later level (the command line over the file) wins over the reference's
    name; both at the same level with different values is an error.
    """
    trains_old = cfg.TRAIN.TYPE == "base" and cfg.TRAIN.ROLE == "old"
    parts = []
    for key, (value, level) in reference.items():
        target, why = REFERENCE_KEYS[key]
        if not (target and trains_old):
            parts.append(f"{key} ignored ({why})")
            continue
        *path, last = target.split(".")
        node = cfg
        for p in path:
            node = node[p]
        value = _coerce(key, value, node[last], "reference key")
        if explicit.get(target, -1) > level:
            parts.append(f"{key} ignored ({target} is given)")
            continue
        if explicit.get(target, -1) == level and node[last] != value:
            raise BadInputError(f"config: {key} {value!r} (the reference's name) and {target} "
                                f"{node[last]!r} disagree; keep only {target}")
        node[last] = value
        parts.append(f"{key} -> {target}")
    if not parts:
        return ""
    if cfg.TRAIN.TYPE != "base" and cfg.OLD_MODEL.PRETRAINED_PATH and not cfg.OLD_MODEL.MODEL_PATH:
        parts.append("OLD_MODEL.PRETRAINED_PATH is an ImageNet weight file here; "
                     "the trained old model goes in OLD_MODEL.MODEL_PATH")
    return "reference config keys: " + "; ".join(parts) + " (docs/reference.md)"


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
        if _stash_reference_key(key, _parse_cli_value(text), 1):
            continue
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
        _mark_set(key, 1)


def load_cfg(path: str = "", opts=None, freeze: bool = True, notes: list = None) -> CN:
    """defaults -> yaml file (with _BASE_) -> KEY VALUE overrides -> reference keys -> checks -> (frozen) config.

    A line saying how the reference's keys were mapped or ignored is appended to ``notes`` when
    given (the tools log it once their logger is set up), else logged on the "bct" logger.
    """
    cfg = get_cfg_defaults()
    _ROOT.update(cfg=cfg, reference={}, explicit={})
    try:
        if path:
            _merge(cfg, _read_yaml(path), f"config {path}")
        merge_opts(cfg, opts)
        note = _apply_reference_keys(cfg, _ROOT["reference"], _ROOT["explicit"])
    finally:
        _ROOT.clear()
    if note:
        note = f"{path or 'command line'}: {note}"
        if notes is None:
            logging.getLogger("bct").info(note)
        else:
            notes.append(note)
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


# Keys that change how a run is evaluated, logged or scheduled on the CPU, not what it learns.
_NOT_TRAINING = ("EVAL", "VAL", "PRINT_FREQ", "NUM_THREADS")


def training_settings(cfg: CN, drop_tag: bool = False) -> str:
    """The part of a config that decides what a training run learns, as yaml text (equal text, same
    training). ``drop_tag`` also leaves out where the run is written (OUTPUT, TAG)."""
    c = cfg.clone()
    c.defrost()
    for key in _NOT_TRAINING + (("OUTPUT", "TAG") if drop_tag else ()):
        c.pop(key)
    c.TRAIN.pop("NUM_WORKERS")
    return cfg_to_yaml(c)
