"""torchvision classification networks as global-average-pooled feature extractors (docs/method.md).

Any torchvision classification model works: its last Linear layer is replaced by the identity,
so the output is the pooled feature (512-d for resnet18/34, 2048-d for resnet50/101).
ImageNet weights come from torchvision's weights API (its local cache) or from a local file.
Note: the reference used timm; timm's resnet18 ImageNet weights equal torchvision's, but timm's
resnet50 weights (its "A1" recipe) differ from torchvision's, so resnet50 numbers can differ.
"""
import os

import torch
import torch.nn as nn
import torchvision

from bct.models.reference import reference_state
from bct.utils.errors import BadInputError
from bct.utils.safe_pickle import read_torch_file


def _last_linear(model: nn.Module):
    """(qualified name, parent module, attribute name, Linear) of the final classification layer."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    if found is None:
        raise BadInputError(f"{type(model).__name__} has no Linear classifier to remove")
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return found, parent, attr, getattr(parent, attr)


def available_archs():
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _imagenet_state_dict(arch: str, role_key: str):
    """ImageNet weights through torchvision's weights API; offline, say what to download where."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    url = weights.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # no network here is the usual cause
        raise BadInputError(
            f"ImageNet weights for {arch} are not available ({type(e).__name__}): download {url} and "
            f"put it at {cached}, or set {role_key}.PRETRAINED_PATH to a local weight file, "
            f"or set {role_key}.PRETRAINED False"
        ) from None


def load_weight_file(path: str, what: str) -> dict:
    """A state dict from a local file (plain state dict or one nested under 'state_dict'/'model').

    `what` is the config key, e.g. "OLD_MODEL.PRETRAINED_PATH". A trained model's checkpoint (bct's
    or the reference's) is refused with a pointer to <ROLE>.MODEL_PATH, where trained models go.
    """
    if not os.path.isfile(path):
        raise BadInputError(f"{what}: weight file {path} does not exist; put the backbone's weights there "
                            "(for the synthetic configs: python -m bct.tools.pretrain --cfg "
                            f"configs/synthetic/pretrain.yml --out {path}), or set PRETRAINED False")
    obj = read_torch_file(path, what)
    if reference_state(obj) is not None or (isinstance(obj, dict) and "model" in obj and "meta" in obj):
        role = what.rpartition(".")[0] or "MODEL"
        raise BadInputError(
            f"{what}: {path} is a trained model's checkpoint, not initial backbone weights; give it as "
            f"{role}.MODEL_PATH (the reference's {role}.PRETRAINED_PATH is {role}.MODEL_PATH here)")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BadInputError(f"{what}: {path} does not hold a state dict")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def build_backbone(arch: str, pretrained: bool, pretrained_path: str = "", role_key: str = "MODEL"):
    """(backbone nn.Module mapping (B,3,H,W) -> (B, feat_dim), feat_dim)."""
    if arch not in available_archs():
        raise BadInputError(
            f"{role_key}.ARCH {arch!r} is not a torchvision classification model "
            f"(e.g. resnet18, resnet34, resnet50, resnet101)"
        )
    model = torchvision.models.get_model(arch, weights=None)
    cls_name, parent, attr, linear = _last_linear(model)
    state = None
    if pretrained:
        state = load_weight_file(pretrained_path, f"{role_key}.PRETRAINED_PATH") if pretrained_path \
            else _imagenet_state_dict(arch, role_key)
    # The classification layer is dropped below, so a weight file without it (or with another
    # number of classes) fits as well as an ImageNet file.
    setattr(parent, attr, nn.Identity())
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith(cls_name + ".")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            source = pretrained_path or "ImageNet weights"
            raise BadInputError(
                f"{role_key}: {source} do not fit {arch}: missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]}"
            )
    return model, linear.in_features
