"""Checkpoints in one format (docs/models.md; docs/configuration.md, "Checkpoints and resuming"),
and the one reader for every trained-model file.

A bct checkpoint is one dict: model state, optimiser, scheduler, scaler, epoch, the config as yaml
text, RNG states and a `meta` block (arch, embedding dim, number of classes, role, classifier type,
input size and normalisation, old-model path and digest) from which the model is rebuilt with no
other input. Files are written atomically, and only with finite weights (`non_finite_entry`).

A training run's folder holds its checkpoints, `last_checkpoint` (the name of the newest one) and
`config.yaml`; `check_resume_config` decides whether a run may go on from a checkpoint whose config
differs from its own.

`load_checkpoint` also accepts the reference implementation's checkpoints (recognised by their
tensors, with or without a `module.` prefix) and returns them in bct's layout (see
bct/models/reference.py). Every file is read without running code from it
(bct/utils/safe_pickle.py).
"""
import os
import random

import numpy as np
import torch
import yaml

from bct.models.reference import reference_state, reference_to_bct
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path
from bct.utils.safe_pickle import read_torch_file

__all__ = ["FORMAT_VERSION", "LAST_POINTER", "CONFIG_NAME", "save_checkpoint", "load_checkpoint", "load_model",
           "load_trained_model", "load_model_weights", "check_meta", "rng_state", "set_rng_state",
           "non_finite_entry", "last_checkpoint", "state_keys", "config_changes", "check_resume_config",
           "atomic_path"]

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


def _flat(cfg, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _normalised(flat: dict) -> dict:
    """A flat config in today's names: renamed keys of older checkpoints under their new names, and
    TRAIN.TYPE adv_compatible as what it means (compatible + the 'adversarial' extra term)."""
    from bct.config import RENAMED_KEYS

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
    before, now = _normalised(_flat(stored if isinstance(stored, dict) else {})), _normalised(_flat(cfg))
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


def load_checkpoint(path: str, what: str = "checkpoint") -> dict:
    """A checkpoint dict in bct's layout, from a bct or a reference checkpoint; every failure is one
    clear line. A reference checkpoint comes back with model, meta (meta["source"] == "reference"),
    extra and epoch only."""
    obj = read_torch_file(path, what)
    if isinstance(obj, dict) and "model" in obj and "meta" in obj:
        return obj
    if reference_state(obj) is not None:
        return reference_to_bct(obj, path)
    raise BadInputError(f"{what}: {path} is neither a bct checkpoint (no 'model'/'meta' entries) nor one "
                        f"of the reference implementation's (no convnet.*/projection_dim.weight tensors)")


def check_meta(meta: dict, expected: dict, path: str, key: str) -> None:
    """Refuse a checkpoint whose architecture, class count or embedding size differs from the config."""
    names = {"arch": "ARCH", "num_classes": "NUM_CLASSES", "emb_dim": "EMB_DIM"}
    for field, cfg_name in names.items():
        if field in expected and meta.get(field) != expected[field]:
            where = "MODEL.EMB_DIM" if field == "emb_dim" else f"{key}.{cfg_name}"
            raise BadInputError(
                f"checkpoint {path} has {field}={meta.get(field)!r} but the config says "
                f"{where}={expected[field]!r}; use the matching checkpoint or fix {where}"
            )


def load_model_weights(model: torch.nn.Module, state: dict, path: str) -> None:
    """Strict load that names the first differing keys or shapes on both sides."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise BadInputError(
            f"checkpoint {path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"shape mismatch {shapes[:2]}"
        )
    model.load_state_dict(state)


def load_trained_model(cfg, role: str, path: str = "", device="cpu", check=("arch", "num_classes", "emb_dim")):
    """The trained model of `role` from its checkpoint (cfg.<ROLE>_MODEL.MODEL_PATH), checked against the config
    on the meta fields in `check`.

    Returns (model in eval mode on `device`, checkpoint meta).
    """
    from bct.models.build import ROLE_KEYS, model_meta

    key = ROLE_KEYS[role]
    path = path or cfg[key].MODEL_PATH
    if not path:
        hint = (f" ({key}.PRETRAINED_PATH holds initial backbone weights here; the reference's "
                f"{key}.PRETRAINED_PATH checkpoint goes in {key}.MODEL_PATH)") if cfg[key].PRETRAINED_PATH else ""
        raise BadInputError(f"{key}.MODEL_PATH is empty: give the {role} model's checkpoint{hint}")
    ckpt = load_checkpoint(path, f"{key}.MODEL_PATH")
    expected = model_meta(cfg, role)
    check_meta(ckpt["meta"], {k: expected[k] for k in check}, path, key)
    return _eval_model(ckpt, path, device), ckpt["meta"]


def _eval_model(ckpt: dict, path: str, device):
    from bct.models.build import build_model_from_meta

    model = build_model_from_meta(ckpt["meta"], pretrained=False)
    load_model_weights(model, ckpt["model"], path)
    return model.to(device).eval()


def load_model(path: str, device="cpu"):
    """The embedding model of a bct or reference checkpoint, in eval mode on `device`.

    model(images) maps a (B, 3, H, W) float batch (ImageNet-normalised) to the (B, emb_dim)
    un-normalised embedding; model.embed(images) L2-normalises it. model.meta holds arch, emb_dim,
    num_classes (and, for a reference file, source == "reference"). The input the model expects:
    model.input_size, model.resize ("squash" or "aspect"), model.mean, model.std, and
    model.transform (an RGB PIL image -> the (3, H, W) tensor the tools feed it);
    model.source_path is the checkpoint's absolute path.
    """
    ckpt = load_checkpoint(path, "load_model")
    # Checkpoints written before the meta held the input settings get them from their stored config.
    ckpt["meta"] = dict(ckpt["meta"])
    for key, value in input_settings(ckpt).items():
        ckpt["meta"].setdefault(key, value)
    return attach_inputs(_eval_model(ckpt, path, device), ckpt, path)


def input_settings(ckpt: dict) -> dict:
    """{"input_size", "resize", "mean", "std"} of a checkpoint: its meta's values when it has them,
    else its stored config's EVAL.INPUT_SIZE (else TRAIN.INPUT_SIZE) and EVAL.RESIZE, else the
    reference's 224-pixel squash; ImageNet mean and std unless the meta says otherwise."""
    import yaml

    from bct.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    meta, stored = ckpt.get("meta", {}), {}
    if isinstance(ckpt.get("config"), str):
        try:
            stored = yaml.safe_load(ckpt["config"]) or {}
        except yaml.YAMLError:
            stored = {}

    def section(name):
        value = stored.get(name) if isinstance(stored, dict) else None
        return value if isinstance(value, dict) else {}

    size = meta.get("input_size") or section("EVAL").get("INPUT_SIZE") or section("TRAIN").get("INPUT_SIZE") or 224
    return {"input_size": int(size), "resize": str(meta.get("resize") or section("EVAL").get("RESIZE") or "squash"),
            "mean": [float(v) for v in meta.get("mean") or IMAGENET_MEAN],
            "std": [float(v) for v in meta.get("std") or IMAGENET_STD]}


def attach_inputs(model, ckpt: dict, path: str):
    """Give a loaded model the attributes that say how to feed it (see load_model)."""
    import os

    from torchvision import transforms as T

    from bct.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

    s = input_settings(ckpt)
    transform = build_transform(s["input_size"], s["resize"])
    if (tuple(s["mean"]), tuple(s["std"])) != (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)):
        transform = T.Compose(transform.transforms[:-1] + [T.Normalize(s["mean"], s["std"])])
    model.input_size, model.resize, model.mean, model.std = s["input_size"], s["resize"], s["mean"], s["std"]
    model.transform = transform
    model.source_path = os.path.abspath(path)
    return model
