"""FastFill's training loss (Jaeckle et al., ICLR 2023) for the transformation h of
bct.models.transformation, written from the paper's equations (its public code, apple/ml-fct, holds the
FCT transformation without the uncertainty):

    l_i = || h(o_i) - n_i ||^2  +  lambda * CE(s * cos(h(o_i), W_new), y_i)
    L   = mean_i [ exp(-s_i) * l_i + s_i ]            s_i = log sigma_i^2, predicted by h

o_i and n_i are the L2-normalised old and new embeddings of image i, W_new the frozen new classifier
(its rows as class directions, a cosine softmax at scale s = 30, as bct compares embeddings by cosine)
and lambda = FASTFILL.DISC_WEIGHT. The exp(-s) / +s pair is the heteroscedastic (Gaussian negative
log-likelihood) weighting: images whose new embedding h cannot predict get a large sigma^2, which is
then the order of the backfill (bct.index.orders, 'uncertainty').
"""
import torch
import torch.nn.functional as F

__all__ = ["fastfill_loss"]

COSINE_SCALE = 30.0


def fastfill_loss(estimate: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, labels: torch.Tensor = None,
                  class_weight: torch.Tensor = None, disc_weight: float = 1.0) -> dict:
    """estimate (B, D) h's output, log_var (B,), target (B, D) normalised new embeddings; labels (B,) and
    class_weight (C, D) for the discriminative term (skipped when either is None or disc_weight is 0).
    Returns {"loss_fastfill": 0-dim, "stat_l2": mean squared error, "stat_sigma2": mean sigma^2}."""
    per = (estimate - target).pow(2).sum(1)
    l2 = per.detach().mean()
    if disc_weight and labels is not None and class_weight is not None:
        logits = COSINE_SCALE * F.linear(F.normalize(estimate, dim=1), F.normalize(class_weight, dim=1))
        per = per + disc_weight * F.cross_entropy(logits, labels, reduction="none")
    loss = (torch.exp(-log_var) * per + log_var).mean()
    return {"loss_fastfill": loss, "stat_l2": l2, "stat_sigma2": log_var.detach().exp().mean()}
