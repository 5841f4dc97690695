"""The reference implementation's checkpoint layout, and its mapping to and from bct's.

The reference saves a dict with `epoch`, `arch` (a class name), `model`, `optimizer`,
`grad_scaler`, best-accuracy numbers and `config` (a yacs CfgNode). `model` is the state dict of
its model class, possibly with a `module.` prefix when saved from a DDP wrapper:

    reference key                        bct key
    convnet.<name>                       backbone.<name>     (a timm ResNet without its fc;
                                                              timm's names equal torchvision's)
    projection_dim.weight                head.fc.weight      (Linear(feat_dim -> 256), no bias)
    bn.<name>                            head.bn.<name>      (BatchNorm1d(256); its output is the embedding)
    projection_cls.weight                classifier.weight   (Linear(256 -> classes), no bias)
    discriminator.d_fc1/d_bn1/d_fc2.*    adv_loss.discriminator.fc1/bn/fc2.*   (kept in `extra`)
    eboundary.weight                     eboundary.weight    (kept in `extra` under its own name:
                                                              one weight per new class, while bct's
                                                              boundary weights cover old classes)

The architecture, embedding size and class count are read from the tensors, not from the file
name or its config.
"""
from collections import OrderedDict
from functools import lru_cache

import torch
import torchvision

from bct.utils.errors import BadInputError

__all__ = ["REFERENCE_ARCHS", "bct_to_reference", "infer_arch", "reference_state", "reference_to_bct"]

# torchvision models whose parameter names are those of timm's ResNet class (the reference's backbones).
REFERENCE_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                   "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")

_HEAD = {"projection_dim.weight": "head.fc.weight", "projection_cls.weight": "classifier.weight"}
_PREFIXES = (("convnet.", "backbone."), ("bn.", "head.bn."))
_DISC = (("discriminator.d_fc1.", "adv_loss.discriminator.fc1."), ("discriminator.d_bn1.", "adv_loss.discriminator.bn."),
         ("discriminator.d_fc2.", "adv_loss.discriminator.fc2."))
_KEPT = ("eboundary.weight",)


def _strip_module(state: dict) -> dict:
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state.items())


def reference_state(obj):
    """The model state dict (prefix removed) if `obj` is a reference checkpoint or a bare reference
    state dict, else None."""
    if not isinstance(obj, dict):
        return None
    state = obj.get("model", obj)
    if not isinstance(state, dict):
        return None
    state = _strip_module(state)
    if "projection_dim.weight" in state and any(k.startswith("convnet.") for k in state):
        return state
    return None


@lru_cache(maxsize=None)
def _backbone_shapes(arch: str) -> dict:
    with torch.device("meta"):
        model = torchvision.models.get_model(arch, weights=None)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("fc.")}


def infer_arch(shapes: dict, path: str) -> str:
    """The torchvision architecture whose backbone has exactly these {name: shape} tensors."""
    for arch in REFERENCE_ARCHS:
        if _backbone_shapes(arch) == shapes:
            return arch
    raise BadInputError(
        f"{path}: the backbone tensors (convnet.*, {len(shapes)} of them) match none of "
        f"{', '.join(REFERENCE_ARCHS)}; only these timm/torchvision ResNets share parameter names")


def _map(key: str, pairs) -> str:
    for src, dst in pairs:
        if key.startswith(src):
            return dst + key[len(src):]
    return ""


def _config_section(config, name: str) -> dict:
    section = config.get(name) if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


def reference_to_bct(obj, path: str) -> dict:
    """A reference checkpoint as a bct checkpoint dict: model, meta, extra and epoch (nothing else)."""
    state = reference_state(obj)
    if state is None:
        raise BadInputError(f"{path}: not a checkpoint of the reference's model (no convnet.* and "
                            f"projection_dim.weight tensors)")
    model, extra, backbone = OrderedDict(), OrderedDict(), {}
    for key, value in state.items():
        if key in _HEAD:
            model[_HEAD[key]] = value
        elif _map(key, _PREFIXES):
            model[_map(key, _PREFIXES)] = value
            if key.startswith("convnet."):
                backbone[key[len("convnet."):]] = tuple(value.shape)
        elif _map(key, _DISC):
            extra[_map(key, _DISC)] = value
        elif key in _KEPT:
            extra[key] = value
        else:
            raise BadInputError(f"{path}: tensor {key!r} is not part of the reference's landmark model "
                                f"(convnet, projection_dim, bn, projection_cls, discriminator, eboundary)")
    emb_dim = int(state["projection_dim.weight"].shape[0])
    if "projection_cls.weight" not in state:
        model["classifier.weight"] = torch.zeros(0, emb_dim)
    num_classes = int(model["classifier.weight"].shape[0])
    config = obj.get("config") if isinstance(obj, dict) else None
    train_type = _config_section(config, "TRAIN").get("TYPE", "")
    loss = _config_section(config, "LOSS")
    meta = {
        "arch": infer_arch(backbone, path),
        "emb_dim": emb_dim,
        "num_classes": num_classes,
        "role": {"base": "old", "compatible": "new", "adv_compatible": "new"}.get(train_type, ""),
        # The reference's old-model classifier (what BCT's influence loss reads) is a plain linear layer.
        "loss_type": "softmax",
        "loss_scale": float(loss.get("SCALE", 30.0)),
        "loss_margin": float(loss.get("MARGIN", 0.3)),
        "source": "reference",
    }
    epoch = obj.get("epoch", 0) if isinstance(obj, dict) else 0
    return {"model": model, "meta": meta, "extra": extra, "epoch": int(epoch) if isinstance(epoch, int) else 0}


def bct_to_reference(ckpt: dict, path: str) -> dict:
    """A bct checkpoint dict as the reference saves one (epoch, arch, model), loadable by its code.

    bct's boundary weights (comp_loss.elastic_w, one per old class) have no reference counterpart
    of that shape and are left out; other extra tensors go back under the reference's names.
    """
    meta = ckpt["meta"]
    if meta["arch"] not in REFERENCE_ARCHS:
        raise BadInputError(f"{path}: arch {meta['arch']!r} has no timm counterpart with the same parameter "
                            f"names; the reference's code reads {', '.join(REFERENCE_ARCHS)}")
    back = {v: k for k, v in _HEAD.items()}
    prefixes = tuple((dst, src) for src, dst in _PREFIXES)
    disc = tuple((dst, src) for src, dst in _DISC)
    model = OrderedDict()
    for key, value in ckpt["model"].items():
        if key in back:
            if key == "classifier.weight" and value.shape[0] == 0:
                continue
            model[back[key]] = value
        elif _map(key, prefixes):
            model[_map(key, prefixes)] = value
        else:
            raise BadInputError(f"{path}: model tensor {key!r} has no place in the reference's model")
    for key, value in ckpt.get("extra", {}).items():
        if _map(key, disc):
            model[_map(key, disc)] = value
        elif key in _KEPT:
            model[key] = value
    return {"epoch": int(ckpt.get("epoch", 0)), "arch": "CreateBaseModel", "model": model}
