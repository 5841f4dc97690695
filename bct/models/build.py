"""The retrieval model (backbone + embedding head + classifier) and its builders (docs/method.md).

`build_model(cfg, role)` reads OLD_MODEL.* (role "old") or NEW_MODEL.* (role "new") and the
shared MODEL.* / LOSS.* keys; `build_model_from_meta(meta)` rebuilds a model from a checkpoint's
meta block with no other input.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.models.backbone import build_backbone
from bct.models.heads import EmbeddingHead, build_classifier

ROLE_KEYS = {"old": "OLD_MODEL", "new": "NEW_MODEL"}


def trained_role(cfg) -> str:
    """The role of the model a config trains: TRAIN.ROLE for TRAIN.TYPE base, else the new model."""
    return cfg.TRAIN.ROLE if cfg.TRAIN.TYPE == "base" else "new"


class RetrievalModel(nn.Module):
    """images (B,3,H,W) -> embedding (B, emb_dim); with_logits=True also returns classifier logits."""

    def __init__(self, backbone: nn.Module, feat_dim: int, emb_dim: int, classifier: nn.Module, meta: dict):
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(feat_dim, emb_dim)
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
    return {
        "arch": sec.ARCH,
        "emb_dim": cfg.MODEL.EMB_DIM,
        "num_classes": sec.NUM_CLASSES,
        "role": role,
        "loss_type": cfg.LOSS.TYPE,
        "loss_scale": cfg.LOSS.SCALE,
        "loss_margin": cfg.LOSS.MARGIN,
    }


def build_model_from_meta(meta: dict, pretrained: bool = False, pretrained_path: str = "",
                          role_key: str = "MODEL") -> RetrievalModel:
    backbone, feat_dim = build_backbone(meta["arch"], pretrained, pretrained_path, role_key)
    classifier = build_classifier(meta.get("loss_type", "softmax"), meta["emb_dim"], meta["num_classes"],
                                  meta.get("loss_scale", 30.0), meta.get("loss_margin", 0.3))
    return RetrievalModel(backbone, feat_dim, meta["emb_dim"], classifier, meta)


def build_model(cfg, role: str) -> RetrievalModel:
    """The model of `role` ("old" or "new") as the config describes it, ImageNet-initialised if asked."""
    if role not in ROLE_KEYS:
        raise ValueError(f"role must be 'old' or 'new', got {role!r}")
    sec = cfg[ROLE_KEYS[role]]
    return build_model_from_meta(model_meta(cfg, role), sec.PRETRAINED, sec.PRETRAINED_PATH, ROLE_KEYS[role])
