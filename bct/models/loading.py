"""The one reader of trained-model files: a bct or reference checkpoint -> a model in eval mode that
knows how to be fed (docs/models.md). The engine writes checkpoints (bct/engine/checkpoint.py); the
index, the pipeline and ``bct.load_model`` read models here.

Every file is read without running code from it (bct/utils/safe_pickle.py). A reference checkpoint
(recognised by its tensors, with or without a ``module.`` prefix) comes back in bct's layout
(bct/models/reference.py).
"""
import os

import torch

from bct.models.reference import reference_state, reference_to_bct
from bct.utils.errors import BadInputError
from bct.utils.safe_pickle import read_torch_file

__all__ = ["META_FIELDS", "load_checkpoint", "read_model_checkpoint", "check_meta", "load_model_weights",
           "model_from_checkpoint", "load_trained_model", "load_model", "input_settings", "attach_inputs"]

# The meta fields that rebuild a model with no other input.
META_FIELDS = ("arch", "emb_dim", "num_classes")


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


def read_model_checkpoint(path: str, what: str) -> dict:
    """A checkpoint (bct or reference layout) whose meta block can rebuild its model; one line otherwise."""
    if not path:
        raise BadInputError(f"{what} is empty: give a checkpoint file")
    if os.path.isdir(path):
        raise BadInputError(f"{what} {path} is a folder, not a checkpoint file")
    ckpt = load_checkpoint(path, what)
    meta = ckpt.get("meta")
    missing = [f for f in META_FIELDS if not isinstance(meta, dict) or f not in meta]
    if missing:
        raise BadInputError(f"{what} {path}: its 'meta' block lacks {', '.join(missing)}, which rebuild the model; "
                            "it was not written by bct or the reference implementation (docs/models.md)")
    return ckpt


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


def model_from_checkpoint(ckpt: dict, path: str, device="cpu"):
    """The model of a read checkpoint, in eval mode on ``device``."""
    from bct.models.build import build_model_from_meta

    model = build_model_from_meta(ckpt["meta"], pretrained=False)
    load_model_weights(model, ckpt["model"], path)
    return model.to(device).eval()


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
    ckpt = read_model_checkpoint(path, f"{key}.MODEL_PATH")
    expected = model_meta(cfg, role)
    check_meta(ckpt["meta"], {k: expected[k] for k in check}, path, key)
    return model_from_checkpoint(ckpt, path, device), ckpt["meta"]


def load_model(path: str, device="cpu", input_size: int = 0, resize: str = "", checkpoint: dict = None):
    """The embedding model of a bct or reference checkpoint, in eval mode on `device`.

    model(images) maps a (B, 3, H, W) float batch (normalised as model.mean / model.std say) to the
    (B, emb_dim) un-normalised embedding; model.embed(images) L2-normalises it. model.meta holds arch,
    emb_dim, num_classes (and, for a reference file, source == "reference"). The input the model
    expects: model.input_size, model.resize ("squash" or "aspect"), model.mean, model.std, and
    model.transform (a PIL image of any mode, or an HWC uint8 array -> the (3, H, W) tensor the tools
    feed it); model.source_path is the checkpoint's absolute path. ``input_size`` / ``resize``
    override the checkpoint's input settings; ``checkpoint``: the file's already read content.
    """
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(path, "load_model")
    # Checkpoints written before the meta held the input settings get them from their stored config.
    ckpt = dict(ckpt, meta=dict(ckpt["meta"]))
    for key, value in input_settings(ckpt).items():
        ckpt["meta"].setdefault(key, value)
    return attach_inputs(model_from_checkpoint(ckpt, path, device), ckpt, path, input_size, resize)


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


def attach_inputs(model, ckpt: dict, path: str, input_size: int = 0, resize: str = ""):
    """Give a loaded model the attributes that say how to feed it (see load_model); ``input_size`` /
    ``resize`` override the checkpoint's."""
    from bct.data.transforms import model_transform

    s = input_settings(ckpt)
    s["input_size"], s["resize"] = int(input_size or s["input_size"]), resize or s["resize"]
    model.input_size, model.resize, model.mean, model.std = s["input_size"], s["resize"], s["mean"], s["std"]
    model.transform = model_transform(s["input_size"], s["resize"], s["mean"], s["std"])
    model.source_path = os.path.abspath(path)
    return model
