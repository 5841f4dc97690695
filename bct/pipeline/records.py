"""What a reused result is keyed by: the settings that shape it and the digests of its input files,
never file times. A step writes its record (``<folder>/<name>``: key, settings, inputs) next to its
outputs; a later step reuses those outputs only when its own record has the same key, and is refused
with one line naming the first difference otherwise, so it never writes over another run's output.
"""
import hashlib
import json
import os

import yaml

from bct.config.loader import training_settings
from bct.utils import keys
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest, write_json_atomic

RUN_RECORD = "run.json"
# Config keys that may name a training input file; the ones a run reads enter its record by digest.
_PATH_KEYS = ("OLD_MODEL.PRETRAINED_PATH", "NEW_MODEL.PRETRAINED_PATH", "OLD_MODEL.MODEL_PATH")
# The config keys of the old-class statistics files (radius first: every statistics-reading term reads it).
STATISTICS_KEYS = ("COMP_LOSS.RADIUS_FILE", "COMP_LOSS.ANGLE_FILE")


def digest_of(path: str, key: str):
    """The file's sha256; None when it does not exist (the step's own reader then says so)."""
    if os.path.isdir(path):
        raise BadInputError(f"{key} {path} is a folder, not a file")
    return file_digest(path) if os.path.isfile(path) else None


def make_record(settings: dict, inputs: dict) -> dict:
    """{"key", "settings", "inputs": {name: {"path", "sha256"}}} of settings and input files; "key" is
    None while an input file is missing (nothing can be keyed by it)."""
    files = {name: {"path": path, "sha256": digest_of(path, name)} for name, path in inputs.items()}
    if any(f["sha256"] is None for f in files.values()):
        return {"key": None, "settings": settings, "inputs": files}
    text = json.dumps({"settings": settings, "inputs": {k: v["sha256"] for k, v in files.items()}},
                      sort_keys=True, default=str)
    return {"key": hashlib.sha256(text.encode()).hexdigest()[:16], "settings": settings, "inputs": files}


def refuse_missing(record: dict) -> None:
    """One line for the first input file of ``record`` that does not exist."""
    for key, entry in record["inputs"].items():
        if entry["sha256"] is None:
            raise BadInputError(f"{key} {entry['path']} does not exist")


def statistics_read(cfg) -> tuple:
    """The config keys of the old-class statistics files that the terms of ``cfg`` read."""
    from bct.losses.registry import needs_angles, needs_stats

    if cfg.TRAIN.TYPE == "base" or not needs_stats(cfg):
        return ()
    return STATISTICS_KEYS if needs_angles(cfg) else STATISTICS_KEYS[:1]


def training_inputs(cfg) -> dict:
    """{config key: path} of the files a training run reads: its list, the pretrained start of the
    trained model, and for a compatible model the old model and the statistics files its method reads."""
    from bct.models.build import ROLE_KEYS, trained_role

    inputs = {"TRAIN.LIST_FILE": cfg.TRAIN.LIST_FILE}
    sec = ROLE_KEYS[trained_role(cfg)]
    if cfg[sec].PRETRAINED and cfg[sec].PRETRAINED_PATH:
        inputs[f"{sec}.PRETRAINED_PATH"] = cfg[sec].PRETRAINED_PATH
    if cfg.TRAIN.TYPE != "base":
        inputs["OLD_MODEL.MODEL_PATH"] = cfg.OLD_MODEL.MODEL_PATH
        for key in statistics_read(cfg):
            inputs[key] = keys.get(cfg, key)
    return inputs


def training_record(cfg) -> dict:
    """The record of a training run: its training settings (where it is written left out) with the
    input files by digest instead of by path."""
    settings = keys.flatten(yaml.safe_load(training_settings(cfg, drop_tag=True)))
    for key in _PATH_KEYS + ("TRAIN.LIST_FILE",) + STATISTICS_KEYS:
        settings.pop(key, None)
    return make_record(settings, training_inputs(cfg))


def read_record(folder: str, name: str = RUN_RECORD):
    """The record written in ``folder`` (None when there is none or it is unreadable)."""
    try:
        with open(os.path.join(folder, name)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "key" in data else None


def write_record(folder: str, record: dict, name: str = RUN_RECORD, **extra) -> None:
    write_json_atomic(os.path.join(folder, name), dict(record, **extra), indent=1)


def differences(stored: dict, now: dict) -> list:
    """Lines "KEY: was A, now B" for every setting and input file that differs (settings first)."""
    out = []
    sa, sb = stored.get("settings", {}), now.get("settings", {})
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key, "(unset)") != sb.get(key, "(unset)"):
            out.append(f"{key}: was {sa.get(key, '(unset)')!r}, now {sb.get(key, '(unset)')!r}")
    a, b = stored.get("inputs", {}), now.get("inputs", {})
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(f"{key}: not read before, now {b[key]['path']}")
        elif key not in b:
            out.append(f"{key}: read before ({a[key]['path']}), not now")
        elif a[key]["sha256"] != b[key]["sha256"]:
            out.append(f"{key}: another file content ({a[key]['path']} sha256 {a[key]['sha256'][:12]}, now "
                       f"{b[key]['path']} sha256 {b[key]['sha256'][:12]})")
    return out


def check_same(folder: str, what: str, stored, now: dict, hint: str) -> None:
    """Refuse (one line) when ``folder`` holds ``what`` made under another key, or without a record."""
    if stored is None:
        raise BadInputError(f"{folder} holds {what} with no record of the settings and inputs that made it "
                            f"({RUN_RECORD} missing); it is not reused or written over: {hint}")
    if stored.get("key") != now["key"]:
        diff = differences(stored, now) or ["the record's key"]
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        raise BadInputError(f"{folder} holds {what} made with other settings or inputs: {diff[0]}{more}; it is not "
                            f"reused or written over: {hint}")


def check_inputs(folder: str, stored, now: dict, hint: str) -> None:
    """Refuse continuing the run in ``folder`` with other input files than it started with."""
    if stored is None:
        return  # a run from before records: the trainer's config check is all there is
    diff = [d for d in differences({"inputs": stored.get("inputs", {})}, {"inputs": now["inputs"]})]
    if diff:
        raise BadInputError(f"{folder} holds a run that read other input files: {diff[0]}; it is not continued "
                            f"or written over: {hint}")
