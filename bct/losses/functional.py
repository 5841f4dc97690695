"""Pure tensor maths of the compatibility losses (docs/method.md), testable without any module.

Gradient reversal and the DANN / epoch schedules of the adversarial term, the AdvBCT elastic
radius and its violators-only hinge, a clamped acos, ArcFace logits (defined with the ArcFace
classifier in bct/models/heads.py), a pairwise label mask and
masked top-k negatives. Everything is vectorised over the batch; nothing here synchronises
with the device (counts come back as tensors).
"""
import math

import torch

# One ArcFace implementation for the classifier and the UniBCT term (models never import losses).
from bct.models.heads import arcface_logits

__all__ = [
    "grad_reverse",
    "dann_alpha",
    "epoch_weight",
    "elastic_radius",
    "boundary_hinge",
    "safe_acos",
    "arcface_logits",
    "label_match_mask",
    "topk_negatives",
    "masked_mean",
]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        # A view, not x itself: autograd needs a new tensor to attach this node to.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


def grad_reverse(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Gradient-reversal layer: identity forward; backward multiplies the gradient by -alpha.

    x: any shape. alpha: a Python float (the DANN coefficient of the current iteration).
    """
    return _GradReverse.apply(x, float(alpha))


def dann_alpha(progress: float) -> float:
    """DANN schedule 2 / (1 + exp(-10 p)) - 1: 0 at p = 0, about 1 at p = 1.

    progress: fraction of all training iterations done, in [0, 1].
    """
    return 2.0 / (1.0 + math.exp(-10.0 * float(progress))) - 1.0


def epoch_weight(epoch: int, epochs: int) -> float:
    """Weight (E - e + 1) / E of the adversarial term, e the 0-based epoch (reference behaviour).

    It starts slightly above 1 ((E + 1) / E at e = 0) and ends at 2 / E.
    """
    return (epochs - epoch + 1) / epochs


def elastic_radius(r_max: torch.Tensor, w: torch.Tensor, threshold: float) -> torch.Tensor:
    """AdvBCT learnable radius r = r_max + (T - r_max) * sigmoid(w).

    r_max, w: same shape (per sample or per class). The radius moves from r_max toward T
    (towards larger radii when r_max < T): this follows the reference code, not the figure
    caption of the paper, which speaks of shrinking from r_max.
    """
    return r_max + (threshold - r_max) * torch.sigmoid(w)


def boundary_hinge(dist: torch.Tensor, radius: torch.Tensor, mask: torch.Tensor = None):
    """Mean of (dist - radius) over violators only (dist > radius); 0 when there is none.

    dist, radius: (N,). mask: optional (N,) bool, False entries never count. Returns
    (loss 0-dim, n_violators 0-dim long tensor). The zero of a batch without violators stays
    attached to the graph of dist and radius, so backward runs and gives zero gradients.
    """
    excess = torch.relu(dist - radius)
    if mask is not None:
        excess = torch.where(mask, excess, torch.zeros_like(excess))
    violators = excess > 0
    n_violators = violators.sum()
    return excess.sum() / n_violators.clamp(min=1), n_violators


def safe_acos(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """acos of x clamped to [-1 + eps, 1 - eps]: finite values and gradients (use fp32 input)."""
    return torch.acos(x.clamp(-1.0 + eps, 1.0 - eps))


def label_match_mask(labels: torch.Tensor, ref_labels: torch.Tensor) -> torch.Tensor:
    """(B,) and (N,) labels -> (B, N) bool, True where the labels are equal."""
    return labels[:, None] == ref_labels[None, :]


def topk_negatives(sim: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest valid similarities of each row, invalid ones replaced by -inf.

    sim: (B, N). mask: (B, N) bool, True for a valid negative. Returns (B, k) sorted descending;
    k <= 0 or k >= N returns all N masked columns unsorted (order is irrelevant to a softmax).
    A row with fewer than k valid negatives holds -inf entries, which add nothing to a softmax
    and receive no gradient.
    """
    masked = sim.masked_fill(~mask, float("-inf"))
    if k <= 0 or k >= masked.shape[1]:
        return masked
    return masked.topk(k, dim=1).values


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values (N,) over mask (N,) bool; a graph-connected 0 when the mask is empty."""
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp(min=1)
