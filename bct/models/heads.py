"""Embedding head and classifiers of docs/method.md.

The head is Linear(feat_dim -> emb_dim, no bias) + BatchNorm1d(emb_dim); the BN output is the
embedding. With ``extra_dims`` (BT2) the head is wider by that much and a learnable orthonormal basis
transformation follows the BN; the first ``emb_dim`` dimensions of its output are the old-compatible
part. Classifiers take the un-normalised embedding: a plain linear softmax classifier (no bias, the
paper's), the cosine classifiers ArcFace / CosFace (scale s, margin m), or the fixed d-Simplex
classifier of stationary representations (prototypes that are never learned).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbeddingHead(nn.Module):
    """(B, feat_dim) pooled features -> (B, emb_dim + extra_dims) embedding (BatchNorm1d output, then
    the orthonormal basis transformation when extra_dims > 0)."""

    def __init__(self, feat_dim: int, emb_dim: int = 256, extra_dims: int = 0):
        super().__init__()
        width = emb_dim + extra_dims
        self.fc = nn.Linear(feat_dim, width, bias=False)
        self.bn = nn.BatchNorm1d(width)
        self.basis = None
        if extra_dims:
            # Orthogonal by construction (torch's parametrisation): distances in the full embedding
            # stay those of the BN output; the basis decides which emb_dim directions come first.
            # The Cayley map: a linear solve per step, about 12x cheaper on a CPU than the default
            # matrix exponential (320 x 320: ~70 ms against ~890 ms with one busy core).
            self.basis = nn.utils.parametrizations.orthogonal(nn.Linear(width, width, bias=False),
                                                              orthogonal_map="cayley")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.bn(self.fc(x))
        return emb if self.basis is None else self.basis(emb)


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


def simplex_prototypes(k: int, dim: int) -> torch.Tensor:
    """(k, dim) unit vertices of a regular simplex centred at the origin: every pair has cosine
    -1/(k-1), the most separated k directions there are. They span k-1 dimensions, so dim >= k-1;
    the coordinates past k-1 are zero.

    Row j is e_j of R^k written in the Helmert basis of the hyperplane sum(x) = 0 (orthonormal rows
    (1, .., 1, -i, 0, ..)/sqrt(i(i+1)), i = 1..k-1), then scaled to unit norm.
    """
    if k < 2:
        raise ValueError(f"a simplex classifier needs at least 2 classes, got {k}")
    if dim < k - 1:
        raise ValueError(f"a regular simplex of {k} vertices needs {k - 1} dimensions; the embedding has {dim}")
    i = torch.arange(1, k, dtype=torch.float64)                       # basis rows 1..k-1
    j = torch.arange(k, dtype=torch.float64)                          # vertex index 0..k-1
    coord = torch.where(j[:, None] < i[None, :], 1.0, 0.0) - torch.where(j[:, None] == i[None, :], i[None, :], 0.0)
    coord = coord / torch.sqrt(i * (i + 1))[None, :]                  # (k, k-1): e_j in that basis
    coord = coord / coord.norm(dim=1, keepdim=True)
    out = torch.zeros(k, dim, dtype=torch.float64)
    out[:, :k - 1] = coord
    return out.float()


class SimplexClassifier(nn.Module):
    """Fixed classifier of stationary representations (Biondi et al., CVPR 2024): logits = emb @ P.T
    with P the ``prototypes`` unit vertices of a regular simplex (simplex_prototypes), a buffer that no
    optimiser sees. Every generation that uses the same number of prototypes trains against the same
    P, so class c has one direction for all of them. ``num_classes`` (<= prototypes) is the model's own
    classes; the logits cover every prototype, the not-yet-seen classes acting as negatives, as in the
    authors' code."""

    def __init__(self, emb_dim: int, num_classes: int, prototypes: int):
        super().__init__()
        if num_classes > prototypes:
            raise ValueError(f"a simplex classifier of {prototypes} prototypes cannot hold {num_classes} classes; "
                             f"set LOSS.SIMPLEX_CLASSES to the class count of the last generation")
        self.num_classes = num_classes
        self.register_buffer("weight", simplex_prototypes(prototypes, emb_dim))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor = None) -> torch.Tensor:
        return F.linear(emb, self.weight)


def build_classifier(loss_type: str, emb_dim: int, num_classes: int, scale: float, margin: float,
                     simplex_classes: int = 0) -> nn.Module:
    if loss_type == "softmax":
        return LinearClassifier(emb_dim, num_classes)
    if loss_type == "simplex":
        return SimplexClassifier(emb_dim, num_classes, simplex_classes or num_classes)
    return CosineClassifier(emb_dim, num_classes, loss_type, scale, margin)
