"""Configuration loading: defaults -> yaml (with _BASE_ inheritance) -> KEY VALUE pairs -> freeze.

Errors name the offending key: an unknown key gets the closest valid key, a type mismatch both
types, a value outside its rule (declared next to each default in bct/config/defaults.py) what is
allowed and the file and line, or the command line, that set it. A key given twice in one yaml
block is refused with both lines.
The few keys of the reference implementation that bct does not define, and bct's own earlier names
of renamed keys, are accepted and mapped or ignored by the explicit table ``REFERENCE_KEYS``
(docs/reference.md), with one note line, so that older yaml files and command lines load.

Loading and checking a yaml imports neither torch nor the loss registry: the names of the
compatibility terms (COMP_LOSS.TYPE, COMP_LOSS.EXTRA_TERMS, after MODULES) are checked where the terms
are built (bct.losses.registry.term_names).
"""
import ast
import difflib
import logging
import os
import re

import yaml
from yacs.config import CfgNode as CN

from bct.config.defaults import RULES, get_cfg_defaults
from bct.utils import keys
from bct.utils.errors import BadInputError
from bct.utils.fileio import read_text

__all__ = ["load_layers", "merge_opts", "check_values", "cfg_to_yaml", "cfg_from_yaml_text", "training_settings",
           "REFERENCE_KEYS", "RENAMED_KEYS"]

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
    # Renamed: the old names said the wrong thing (a list file, training inputs kept under EVAL, a
    # loss parameter under TRAIN, a switch named like a method).
    "TRAIN.FILE_DIR": ("TRAIN.LIST_FILE", "renamed"),
    "EVAL.OLD_SAVE_FILE": ("COMP_LOSS.RADIUS_FILE", "renamed"),
    "EVAL.OLD_ANGLE_FILE": ("COMP_LOSS.ANGLE_FILE", "renamed"),
    "EVAL.HOT_REFRESH": ("EVAL.PARTIAL_BACKFILL", "renamed"),
    "TRAIN.THRESHOLD": ("COMP_LOSS.THRESHOLD", "renamed"),
    # Dead keys: nothing ever read them. A section entry covers its keys too.
    "UPGRADE_LOSS": ("", "no upgrade loss is defined"),
    "TRAIN.DATASET_TYPE": ("", "every dataset is read the same way"),
    "EVAL.DATASET_TYPE": ("", "every dataset is read the same way"),
    "EVAL.DATASET_NAME": ("", "EVAL.DATASET names the set"),
}
# The entries that map only when the config trains the old model (decided once every layer is read).
_TRAINED_MODEL_KEYS = ("MODEL.ARCH", "MODEL.NUM_CLASSES", "MODEL.PRETRAINED")
# Old name -> new name of the renamed keys (checkpoints written before the rename store the old names).
RENAMED_KEYS = {k: t for k, (t, why) in REFERENCE_KEYS.items() if why == "renamed"}


def _reference_entry(key: str):
    """(key of the table, (target, why)) for a reference or former key, else None. A section entry
    (UPGRADE_LOSS) covers every key under it, and any *.DATASET_TYPE is dead."""
    if key in REFERENCE_KEYS:
        return key, REFERENCE_KEYS[key]
    for name, entry in REFERENCE_KEYS.items():
        if key.startswith(name + ".") and "." not in name:
            return name, entry
    if key.split(".")[-1] == "DATASET_TYPE":
        return key, ("", "every dataset is read the same way")
    return None


def _all_keys(node: CN, prefix: str = ""):
    for k, v in node.items():
        full = f"{prefix}{k}"
        yield full
        if isinstance(v, CN):
            yield from _all_keys(v, full + ".")


def _words(name: str) -> list:
    return [w for w in name.split("_") if w]


def _closest(key: str, cfg: CN) -> str:
    """The valid key a user most likely meant: the same last name in another section first
    (TRAIN.EMB_DIM -> MODEL.EMB_DIM), then a last name holding the given one as a word (TRAIN.LR ->
    TRAIN.OPTIMIZER.BASE_LR), else the closest spelling of the whole key."""
    leaves = [k for k in _all_keys(cfg) if not isinstance(keys.get(cfg, k), CN)]
    last = key.split(".")[-1].upper()

    def spelling(k):
        return difflib.SequenceMatcher(None, key.upper(), k.upper()).ratio()

    same = [k for k in leaves if k.split(".")[-1] == last]
    if same:
        return max(same, key=spelling)
    words = _words(last)
    holding = [k for k in leaves if words and set(words) <= set(_words(k.split(".")[-1]))]
    if holding:
        return min(holding, key=lambda k: (len(_words(k.split(".")[-1])), -spelling(k)))
    match = difflib.get_close_matches(key, list(_all_keys(cfg)), n=1, cutoff=0.0)
    return match[0] if match else ""


def _unknown_key(source: str, key: str, cfg: CN) -> BadInputError:
    return BadInputError(f"{source}: unknown config key {key} (closest valid key: {_closest(key, cfg)})")


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
        where = f"in {source}, line {lines[k]}" if k in lines else f"in {source}"
        if k not in cfg and _take_reference_key(full, v, 0, source, where, origins):
            continue
        if k not in cfg:
            raise _unknown_key(source, full, _root(cfg))
        if isinstance(cfg[k], CN):
            if not isinstance(v, dict):
                raise BadInputError(f"{source}: key {full} is a section; expected a mapping")
            _merge(cfg[k], v, source, origins, full + ".")
        else:
            cfg[k] = _coerce(full, v, cfg[k], source)
            _spelled(full, full, cfg[k], source)
            _mark_set(full, 0)
            origins[full] = where


# State of the load_cfg call in progress: the root config, the reference keys met and the keys set,
# each with the level it came from (0 the yaml file, 1 the command line).
_ROOT = {}


def _spelled(target: str, spelling: str, value, source: str) -> None:
    """A renamed key and its new name given in the same file (or both on the command line) must agree:
    which one would win depends on their order, so different values are refused, naming both."""
    if "cfg" not in _ROOT:
        return
    seen = _ROOT.setdefault("spelled", {})
    prev = seen.get(target)
    if prev is not None and prev[0] == source and prev[1] != spelling and prev[2] != value:
        (old, old_value), (new, new_value) = sorted([(prev[1], prev[2]), (spelling, value)], key=lambda p: p[0] == target)
        raise BadInputError(f"{source}: {old} {old_value!r} (the older name of {new}) and {new} {new_value!r} "
                            f"disagree; keep only {new}")
    seen[target] = (source, spelling, value)


def _mark_set(key: str, level: int) -> None:
    if "explicit" in _ROOT:
        _ROOT["explicit"][key] = level


def _take_reference_key(key: str, value, level: int, source: str, where: str, origins: dict) -> bool:
    """Handle a key of REFERENCE_KEYS met while merging: a renamed key sets its new name right away
    (so later layers override it as usual), a dead one is dropped, a MODEL.* key waits for
    _apply_reference_keys. False when the key is none of them."""
    found = _reference_entry(key)
    if found is None or "cfg" not in _ROOT:
        return False
    name, (target, why) = found
    if name in _TRAINED_MODEL_KEYS:
        _ROOT["reference"][key] = (value, level)
    elif not target:
        _note(f"{key} ignored ({why})")
    else:
        if isinstance(value, dict):
            raise BadInputError(f"{source}: key {key} (now {target}) expects a value, got a mapping")
        node, last = keys.parent(_ROOT["cfg"], target)
        if level == 1 and isinstance(node[last], str) and not isinstance(value, str):
            value = str(value)
        node[last] = _coerce(key, value, node[last], source)
        _spelled(target, key, node[last], source)
        _mark_set(target, level)
        origins[target] = f"{where} as {key}"
        _note(f"{key} -> {target} ({why})")
    return True


def _note(part: str) -> None:
    if part not in _ROOT["notes"]:
        _ROOT["notes"].append(part)


def _apply_reference_keys(cfg: CN, reference: dict, explicit: dict) -> str:
    """Map or ignore the reference-only keys met while loading; returns the info line ("" if none).

    A bct key given at a later level (the command line over the file) wins over the reference's
    name; both at the same level with different values is an error.
    """
    trains_old = cfg.TRAIN.TYPE == "base" and cfg.TRAIN.ROLE == "old"
    parts = list(_ROOT.get("notes", []))
    for key, (value, level) in reference.items():
        target, why = REFERENCE_KEYS[key]
        if not (target and trains_old):
            parts.append(f"{key} ignored ({why})")
            continue
        node, last = keys.parent(cfg, target)
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


_KEY_LIKE = re.compile(r"^[A-Z_][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


def _check_pairs(opts: list) -> None:
    """KEY VALUE pairs: a KEY=VALUE token, or a missing value, is one line that says so."""
    for i in range(0, len(opts), 2):
        token = str(opts[i])
        head = token.split("=", 1)[0]
        if "=" in token and _KEY_LIKE.match(head):
            raise BadInputError(f"command line: {token}: overrides are KEY VALUE pairs separated by a space, "
                                f"not KEY=VALUE: write {head} {token.split('=', 1)[1]}")
    if len(opts) % 2:
        raise BadInputError(f"command line: overrides come as KEY VALUE pairs; {opts[-1]} has no value")


def merge_opts(cfg: CN, opts, origins: dict = None) -> None:
    """Merge command-line KEY VALUE pairs (older names of renamed keys included, with a logged note)."""
    if "cfg" not in _ROOT:
        _ROOT.update(cfg=cfg, reference={}, explicit={}, notes=[])
        try:
            _merge_opts(cfg, opts, origins)
            note = _apply_reference_keys(cfg, _ROOT["reference"], _ROOT["explicit"])
        finally:
            _ROOT.clear()
        if note:
            logging.getLogger("bct").info(f"command line: {note}")
        return
    _merge_opts(cfg, opts, origins)


def _merge_opts(cfg: CN, opts, origins: dict = None) -> None:
    opts = list(opts or [])
    _check_pairs(opts)
    origins = {} if origins is None else origins
    for key, text in zip(opts[0::2], opts[1::2]):
        if _take_reference_key(key, _parse_cli_value(text), 1, "command line", "on the command line", origins):
            continue
        node = cfg
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            if p not in node or not isinstance(node[p], CN):
                if p in node:
                    raise BadInputError(f"command line: {'.'.join(parts[:i + 1])} is a key, not a section; "
                                        f"{key} does not exist (closest valid key: {_closest(key, cfg)})")
                raise _unknown_key("command line", key, cfg)
            node = node[p]
        last = parts[-1]
        if last in node and isinstance(node[last], CN):
            example = next(iter(node[last].keys()), "")
            raise BadInputError(f"command line: {key} is a section, not a key; give one of its keys, "
                                f"e.g. {key}.{example} VALUE")
        if last not in node:
            raise _unknown_key("command line", key, cfg)
        value = _parse_cli_value(text)
        # A string default accepts whatever was typed, verbatim (paths like 1e-3 or 'True').
        if isinstance(node[last], str) and not isinstance(value, str):
            value = text
        node[last] = _coerce(key, value, node[last], "command line")
        _spelled(key, key, node[last], "command line")
        _mark_set(key, 1)
        origins[key] = "on the command line"


def load_layers(paths: list, opts=None, freeze: bool = True, notes: list = None, label: str = "",
                sets: dict = None) -> CN:
    """The loader itself: defaults -> each yaml file of ``paths`` in turn (each with its _BASE_ chain)
    -> ``sets`` ({key: value} applied by the caller, e.g. METHOD.NAME) -> KEY VALUE ``opts`` ->
    reference keys -> derived values -> checks -> (frozen) config."""
    cfg = get_cfg_defaults()
    origins = {}
    _ROOT.update(cfg=cfg, reference={}, explicit={}, notes=[])
    try:
        for path in paths:
            for file, data in _read_yaml(path):
                _merge(cfg, data, f"config {file}", origins)
        for key, value in (sets or {}).items():
            node, last = keys.parent(cfg, key)
            node[last] = value
            origins[key] = f"by {label or 'the loader'}"
        _merge_opts(cfg, opts, origins)
        note = _apply_reference_keys(cfg, _ROOT["reference"], _ROOT["explicit"])
    finally:
        _ROOT.clear()
    if note:
        note = f"{label or 'command line'}: {note}"
        if notes is None:
            logging.getLogger("bct").info(note)
        else:
            notes.append(note)
    _derive(cfg, origins)
    check_values(cfg, origins)
    if freeze:
        cfg.freeze()
    return cfg


def _derive(cfg: CN, origins: dict) -> None:
    """Derived values: a TAG holding {method} gets METHOD.NAME (a setting's Base-new.yml names the
    output folders of all its methods at once)."""
    if "{method}" in cfg.TAG:
        if not cfg.METHOD.NAME:
            raise BadInputError(f"config: TAG {cfg.TAG!r} (set {origins.get('TAG', 'by the defaults')}) holds "
                                f"{{method}} but no method is named: load the setting's new model as "
                                f"<setting>/new_<method>.yml or give TAG")
        cfg.TAG = cfg.TAG.replace("{method}", cfg.METHOD.NAME)


def check_values(cfg: CN, origins: dict = None) -> None:
    """Every key against its rule in bct/config/defaults.py; the message names the key, the value,
    what is allowed and where the value was set."""
    origins = origins or {}
    for key, rule in RULES.items():
        value = keys.get(cfg, key)
        if not rule.ok(value):
            where = origins.get(key, "by the defaults")
            raise BadInputError(f"config: {key} is {value!r}; expected {rule.expected} (set {where})")


def cfg_to_yaml(cfg: CN) -> str:
    return cfg.dump()


def cfg_from_yaml_text(text: str) -> CN:
    """Rebuild a config from the yaml text stored in a checkpoint (unknown keys are ignored)."""
    cfg = get_cfg_defaults()
    data = yaml.safe_load(text) or {}

    def merge_known(node, d, prefix=""):
        for k, v in d.items():
            new = RENAMED_KEYS.get(prefix + k)
            if new is not None and not isinstance(v, dict):
                target, last = keys.parent(cfg, new)
                target[last] = v
                continue
            if k in node:
                if isinstance(node[k], CN) and isinstance(v, dict):
                    merge_known(node[k], v, prefix + k + ".")
                elif not isinstance(node[k], CN):
                    node[k] = v

    merge_known(cfg, data)
    return cfg


# Keys that change how a run is evaluated, logged, named or scheduled on the CPU, not what it learns
# (every training input, the statistics files COMP_LOSS.RADIUS_FILE / ANGLE_FILE included, stays).
_NOT_TRAINING = ("EVAL", "VAL", "PRINT_FREQ", "NUM_THREADS", "METHOD")


def training_settings(cfg: CN, drop_tag: bool = False) -> str:
    """The part of a config that decides what a training run learns, as yaml text (equal text, same
    training). ``drop_tag`` also leaves out where the run is written (OUTPUT, TAG)."""
    c = cfg.clone()
    c.defrost()
    for key in _NOT_TRAINING + (("OUTPUT", "TAG") if drop_tag else ()):
        c.pop(key)
    c.TRAIN.pop("NUM_WORKERS")
    c.TRAIN.pop("CACHE_OLD_FEATURES")  # the kept embeddings are the ones a live old forward would give
    return cfg_to_yaml(c)
