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
        cos = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        target = cos.gather(1, labels[:, None])
        if self.kind == "cosface":
            shifted = target - self.margin
        else:
            theta = torch.acos(target)
            # Past pi - m, cos(theta + m) stops decreasing; the usual linear fallback keeps it monotonic.
            shifted = torch.where(
                theta + self.margin < math.pi,
                torch.cos(theta + self.margin),
                target - self.margin * math.sin(self.margin),
            )
        return cos.scatter(1, labels[:, None], shifted) * self.scale


def build_classifier(loss_type: str, emb_dim: int, num_classes: int, scale: float, margin: float) -> nn.Module:
    if loss_type == "softmax":
        return LinearClassifier(emb_dim, num_classes)
    return CosineClassifier(emb_dim, num_classes, loss_type, scale, margin)
