"""Checkpoints in one format (docs/models.md; docs/configuration.md, "Checkpoints and resuming"):
how training writes them and resumes from them (bct/models/loading.py reads trained models).

A bct checkpoint is one dict: model state, optimiser, scheduler, scaler, epoch, the config as yaml
text, RNG states and a `meta` block (arch, embedding dim, number of classes, role, classifier type,
input size and normalisation, old-model path and digest) from which the model is rebuilt with no
other input. Files are written atomically, and only with finite weights (`non_finite_entry`).

A training run's folder holds its checkpoints, `last_checkpoint` (the name of the newest one) and
`config.yaml`; `check_resume_config` decides whether a run may go on from a checkpoint whose config
differs from its own.

"""
import os
import random

import numpy as np
import torch
import yaml

from bct.utils import keys
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path

__all__ = ["FORMAT_VERSION", "LAST_POINTER", "CONFIG_NAME", "save_checkpoint", "rng_state", "set_rng_state",
           "non_finite_entry", "last_checkpoint", "state_keys", "config_changes", "check_resume_config"]

FORMAT_VERSION = 1
# In a run's folder: the file naming its newest checkpoint, and the config the checkpoints were written with.
LAST_POINTER = "last_checkpoint"
CONFIG_NAME = "config.yaml"
# Keys whose values are baked into a checkpoint's optimiser and model state: after a change,
# loading that state fails (another optimiser, other parameters) or silently undoes the change
# (the optimiser's saved lr, momentum and weight decay win over the config's).
_STATE_KEYS = ("TRAIN.TYPE", "TRAIN.ROLE", "MODEL.EMB_DIM", "LOSS.TYPE", "COMP_LOSS.TYPE", "COMP_LOSS.EXTRA_TERMS",
               "COMP_LOSS.ELASTIC_BOUNDARY", "COMP_LOSS.DISC_HIDDEN", "TRAIN.OPTIMIZER.NAME",
               "TRAIN.OPTIMIZER.BASE_LR", "TRAIN.OPTIMIZER.MOMENTUM", "TRAIN.OPTIMIZER.WEIGHT_DECAY")


def non_finite_entry(*states: dict) -> str:
    """The name of the first tensor of the given state dicts that holds a NaN or an infinity ("" if none)."""
    for state in states:
        for name, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return name
    return ""


def last_checkpoint(out_dir: str) -> str:
    """The checkpoint `last_checkpoint` names in a run's folder ("" when there is none)."""
    pointer = os.path.join(out_dir, LAST_POINTER)
    if not os.path.isfile(pointer):
        return ""
    with open(pointer) as f:
        name = f.read().strip()
    path = os.path.join(out_dir, name)
    return path if name and os.path.isfile(path) else ""


def state_keys(cfg) -> list:
    """The config keys a resumed run must share with its checkpoint (TRAIN.OPTIMIZER.BASE_LR may
    change under TRAIN.RESUME_WITH_NEW_LR)."""
    from bct.models.build import ROLE_KEYS

    trained = cfg.TRAIN.ROLE if cfg.TRAIN.TYPE == "base" else "new"
    roles = ["old", "new"] if cfg.TRAIN.TYPE != "base" else [trained]
    model_keys = [f"{ROLE_KEYS[r]}.{k}" for r in roles for k in ("ARCH", "NUM_CLASSES")]
    keys = list(_STATE_KEYS) + model_keys
    if cfg.TRAIN.RESUME_WITH_NEW_LR:
        keys.remove("TRAIN.OPTIMIZER.BASE_LR")
    return keys


def _normalised(flat: dict) -> dict:
    """A flat config in today's names: renamed keys of older checkpoints under their new names, and
    TRAIN.TYPE adv_compatible as what it means (compatible + the 'adversarial' extra term)."""
    from bct.config.loader import RENAMED_KEYS

    out = {RENAMED_KEYS.get(k, k): v for k, v in flat.items()}
    if out.get("TRAIN.TYPE") == "adv_compatible":
        out["TRAIN.TYPE"] = "compatible"
        extra = list(out.get("COMP_LOSS.EXTRA_TERMS") or [])
        out["COMP_LOSS.EXTRA_TERMS"] = extra + ([] if "adversarial" in extra else ["adversarial"])
    elif "TRAIN.TYPE" in out and "COMP_LOSS.EXTRA_TERMS" not in out:
        out["COMP_LOSS.EXTRA_TERMS"] = []
    if "COMP_LOSS.EXTRA_TERMS" in out:
        out["COMP_LOSS.EXTRA_TERMS"] = list(out["COMP_LOSS.EXTRA_TERMS"])
    return out


def config_changes(stored_yaml: str, cfg) -> list:
    """[(key, checkpoint value, current value)] for every key of the stored config that differs."""
    stored = yaml.safe_load(stored_yaml)
    before, now = _normalised(keys.flatten(stored if isinstance(stored, dict) else {})), _normalised(keys.flatten(cfg))
    return [(k, before[k], v) for k, v in now.items() if k in before and before[k] != v]


def check_resume_config(ckpt: dict, path: str, cfg, log=None) -> None:
    """Refuse a resume whose config changed a key the saved state depends on; `log` the others."""
    if not isinstance(ckpt.get("config"), str):
        return
    changes = config_changes(ckpt["config"], cfg)
    keys = set(state_keys(cfg))
    bad = [c for c in changes if c[0] in keys]
    if bad:
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in bad)
        lr_hint = ("; to go on at another learning rate add TRAIN.RESUME_WITH_NEW_LR True"
                   if [k for k, _, _ in bad] == ["TRAIN.OPTIMIZER.BASE_LR"] else "")
        raise BadInputError(
            f"--resume: the config differs from the one {path} was written with in {shown}; the saved "
            f"optimiser and model state depend on these keys: set them back to the checkpoint's values "
            f"or start a fresh run under another TAG{lr_hint}")
    if changes and log is not None:
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)
        log(f"--resume: config keys changed since {path}: {shown}")


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _KeepWriteError:
    """A file wrapper that keeps the OSError of a failed write: torch.save reports a failed write
    (a full disk, a file-size limit) only as an opaque RuntimeError."""

    def __init__(self, f):
        self.f = f
        self.error = None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.f.flush()


def save_checkpoint(path: str, ckpt: dict) -> None:
    """Write atomically (temporary file + fsync + rename). A failed write raises the OSError that
    caused it, naming `path`; the file previously at `path` is untouched."""
    ckpt = dict(ckpt, format_version=FORMAT_VERSION)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            out = _KeepWriteError(f)
            try:
                torch.save(ckpt, out)
            except RuntimeError as e:
                if out.error is None:
                    raise
                out.error.filename = path
                raise out.error from e
