"""The retrieval model (backbone + embedding head + classifier) and its builders (docs/method.md).

`build_model(cfg, role)` reads OLD_MODEL.* (role "old") or NEW_MODEL.* (role "new") and the
shared MODEL.* / LOSS.* keys; `build_model_from_meta(meta)` rebuilds a model from a checkpoint's
meta block with no other input.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.models.backbone import build_backbone
from bct.models.heads import EmbeddingHead, build_classifier
from bct.utils.errors import BadInputError

ROLE_KEYS = {"old": "OLD_MODEL", "new": "NEW_MODEL"}


def trained_role(cfg) -> str:
    """The role of the model a config trains: TRAIN.ROLE for TRAIN.TYPE base, else the new model."""
    return cfg.TRAIN.ROLE if cfg.TRAIN.TYPE == "base" else "new"


class RetrievalModel(nn.Module):
    """images (B,3,H,W) -> embedding (B, emb_dim); with_logits=True also returns classifier logits."""

    def __init__(self, backbone: nn.Module, feat_dim: int, emb_dim: int, classifier: nn.Module, meta: dict):
        super().__init__()
        self.backbone = backbone
        # BT2: the first compatible_dims of the emb_dim are the old-compatible part (docs/method.md).
        compatible = int(meta.get("compatible_dims", emb_dim))
        self.head = EmbeddingHead(feat_dim, compatible, emb_dim - compatible)
        self.classifier = classifier
        self.meta = dict(meta)

    def forward(self, x: torch.Tensor, labels: torch.Tensor = None, with_logits: bool = False):
        emb = self.head(self.backbone(x))
        if not with_logits:
            return emb
        # The classifier runs in fp32: margins and large class counts are fragile in fp16.
        return emb, self.classifier(emb.float(), labels)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised fp32 embedding for retrieval."""
        return F.normalize(self.forward(x).float(), dim=1)


def model_meta(cfg, role: str) -> dict:
    sec = cfg[ROLE_KEYS[role]]
    meta = {
        "arch": sec.ARCH,
        "emb_dim": cfg.MODEL.EMB_DIM,
        "num_classes": sec.NUM_CLASSES,
        "role": role,
        "loss_type": cfg.LOSS.TYPE,
        "loss_scale": cfg.LOSS.SCALE,
        "loss_margin": cfg.LOSS.MARGIN,
    }
    if cfg.LOSS.TYPE == "simplex":
        meta["simplex_classes"] = cfg.LOSS.SIMPLEX_CLASSES or cfg.NEW_MODEL.NUM_CLASSES
    if role == "new" and cfg.NEW_MODEL.EXTRA_DIMS:
        # BT2: a wider new embedding whose first MODEL.EMB_DIM dimensions meet the old gallery.
        meta["emb_dim"] = cfg.MODEL.EMB_DIM + cfg.NEW_MODEL.EXTRA_DIMS
        meta["compatible_dims"] = cfg.MODEL.EMB_DIM
    return meta


def compatible_part(feats, meta: dict):
    """The old-compatible part of embeddings (N, emb_dim) of a model with ``meta`` (its first
    compatible_dims columns, L2-normalised again): what meets an old gallery. Others are returned as
    they are. Works on numpy arrays and torch tensors."""
    dims = int(meta.get("compatible_dims", meta["emb_dim"]))
    if dims >= feats.shape[1]:
        return feats
    part = feats[:, :dims]
    if isinstance(part, torch.Tensor):
        return F.normalize(part, dim=1)
    return part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)


def build_model_from_meta(meta: dict, pretrained: bool = False, pretrained_path: str = "",
                          role_key: str = "MODEL") -> RetrievalModel:
    backbone, feat_dim = build_backbone(meta["arch"], pretrained, pretrained_path, role_key)
    try:
        classifier = build_classifier(meta.get("loss_type", "softmax"), meta["emb_dim"], meta["num_classes"],
                                      meta.get("loss_scale", 30.0), meta.get("loss_margin", 0.3),
                                      meta.get("simplex_classes", 0))
    except ValueError as e:
        raise BadInputError(f"{role_key}: {e}") from None
    return RetrievalModel(backbone, feat_dim, meta["emb_dim"], classifier, meta)


def build_model(cfg, role: str) -> RetrievalModel:
    """The model of `role` ("old" or "new") as the config describes it, ImageNet-initialised if asked."""
    if role not in ROLE_KEYS:
        raise ValueError(f"role must be 'old' or 'new', got {role!r}")
    sec = cfg[ROLE_KEYS[role]]
    return build_model_from_meta(model_meta(cfg, role), sec.PRETRAINED, sec.PRETRAINED_PATH, ROLE_KEYS[role])
