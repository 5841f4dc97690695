"""Embedding head and classifiers of docs/method.md.

The head is Linear(feat_dim -> emb_dim, no bias) + BatchNorm1d(emb_dim); the BN output is the
embedding. Classifiers take the un-normalised embedding: a plain linear softmax classifier (no
bias, the paper's), or the cosine classifiers ArcFace / CosFace (scale s, margin m).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbeddingHead(nn.Module):
    """(B, feat_dim) pooled features -> (B, emb_dim) embedding (BatchNorm1d output)."""

    def __init__(self, feat_dim: int, emb_dim: int = 256):
        super().__init__()
        self.fc = nn.Linear(feat_dim, emb_dim, bias=False)
        self.bn = nn.BatchNorm1d(emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


class LinearClassifier(nn.Module):
    """Softmax classifier: logits = emb @ W.T, W of shape (num_classes, emb_dim), no bias."""

    def __init__(self, emb_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, emb_dim))
        # nn.Linear's own initialisation, as the reference's bias-free classifier gets it
        # (uniform in +-1/sqrt(emb_dim): std about 0.036 for 256 inputs).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor = None) -> torch.Tensor:
        return F.linear(emb, self.weight)


def arcface_logits(cos: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """ArcFace logits, the one implementation (the ArcFace classifier here, UniBCT in bct/losses):
    s * cos(theta_y + m) for the target class, s * cos(theta_j) elsewhere.

    cos: (B, C) cosine similarities. labels: (B,) int64; a negative label adds no margin to its
    row. Past theta_y = pi - m, cos(theta + m) would rise again: the target then falls back to the
    usual linear cos(theta_y) - m sin(m), which keeps it monotonic. Returns (B, C).
    """
    has_target = labels >= 0
    idx = labels.clamp(min=0)[:, None]
    target = cos.gather(1, idx)
    # acos clamped inside (-1, 1): finite values and gradients.
    theta = torch.acos(target.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    shifted = torch.where(theta + m < math.pi, torch.cos(theta + m), target - m * math.sin(m))
    one_hot = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, idx, has_target[:, None])
    return torch.where(one_hot, shifted, cos) * s


class CosineClassifier(nn.Module):
    """ArcFace (cos(theta + m)) or CosFace (cos(theta) - m) on normalised emb and weights, times s.

    The margin is applied to the target logit only when labels are given (training).
    """

    def __init__(self, emb_dim: int, num_classes: int, kind: str, scale: float = 30.0, margin: float = 0.3):
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"unknown cosine classifier {kind}")
        self.kind, self.scale, self.margin = kind, scale, margin
        self.weight = nn.Parameter(torch.empty(num_classes, emb_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor = None) -> torch.Tensor:
        cos = F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1))
        if labels is None:
            return cos * self.scale
        # Every cosine inside (-1, 1), as the classifier always had it (the margin term clamps anyway).
        cos = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        if self.kind == "arcface":
            return arcface_logits(cos, labels, self.scale, self.margin)
        target = cos.gather(1, labels[:, None])
        return cos.scatter(1, labels[:, None], target - self.margin) * self.scale


def build_classifier(loss_type: str, emb_dim: int, num_classes: int, scale: float, margin: float) -> nn.Module:
    if loss_type == "softmax":
        return LinearClassifier(emb_dim, num_classes)
    return CosineClassifier(emb_dim, num_classes, loss_type, scale, margin)
