"""The adversarial compatibility term of AdvBCT (docs/method.md, "Adversarial").

A discriminator learns to tell new embeddings (label 0) from old ones (label 1); the new
embeddings reach it through a gradient-reversal layer, so the same optimiser step trains the
discriminator to separate the domains and the new model to make them indistinguishable:
L_adv = CE(D(GRL(f_new, alpha)), 0) + CE(D(f_old), 1), on un-normalised embeddings. The trainer
supplies alpha = dann_alpha(progress) and weight = epoch_weight(epoch, epochs), both from
bct.losses.functional.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.losses.functional import grad_reverse
from bct.models.discriminator import Discriminator
from bct.utils.errors import BadInputError

__all__ = ["AdversarialLoss", "build_adversarial_loss"]


class AdversarialLoss(nn.Module):
    """Holds the discriminator and computes the weighted adversarial loss.

    mode "separate" calls the discriminator once per domain, so its BatchNorm normalises new and
    old embeddings with their own batch statistics (the reference's behaviour); "joint" makes one
    call on the concatenation, so both domains share one set of statistics.
    """

    MODES = ("separate", "joint")

    def __init__(self, emb_dim: int = 256, hidden: int = 100, mode: str = "separate"):
        super().__init__()
        if mode not in self.MODES:
            raise BadInputError(f"COMP_LOSS.DISC_MODE '{mode}' is not one of {', '.join(self.MODES)}")
        self.mode = mode
        self.discriminator = Discriminator(emb_dim, hidden)

    def forward(self, feat_new: torch.Tensor, feat_old: torch.Tensor, alpha: float, weight: float) -> dict:
        """feat_new (B, D) with grad, feat_old (B', D) without -> {"loss_adv", "stat_disc_acc"}."""
        reversed_new = grad_reverse(feat_new, alpha)
        feat_old = feat_old.detach()
        if self.mode == "separate":
            logits_new = self.discriminator(reversed_new)
            logits_old = self.discriminator(feat_old)
        else:
            logits = self.discriminator(torch.cat([reversed_new, feat_old.to(reversed_new.dtype)], dim=0))
            logits_new, logits_old = logits.split([feat_new.shape[0], feat_old.shape[0]])
        logits_new, logits_old = logits_new.float(), logits_old.float()
        target_new = torch.zeros(logits_new.shape[0], dtype=torch.long, device=logits_new.device)
        target_old = torch.ones(logits_old.shape[0], dtype=torch.long, device=logits_old.device)
        loss = F.cross_entropy(logits_new, target_new) + F.cross_entropy(logits_old, target_old)
        with torch.no_grad():
            correct = (logits_new.argmax(1) == 0).sum() + (logits_old.argmax(1) == 1).sum()
            acc = correct.float() / (logits_new.shape[0] + logits_old.shape[0])
        return {"loss_adv": weight * loss, "stat_disc_acc": acc}


def build_adversarial_loss(cfg) -> AdversarialLoss:
    """The adversarial term of TRAIN.TYPE adv_compatible (MODEL.EMB_DIM, COMP_LOSS.DISC_*)."""
    return AdversarialLoss(cfg.MODEL.EMB_DIM, cfg.COMP_LOSS.DISC_HIDDEN, cfg.COMP_LOSS.DISC_MODE)
