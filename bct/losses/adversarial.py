"""The adversarial compatibility term of AdvBCT (docs/method.md, "Adversarial").

A discriminator learns to tell new embeddings (label 0) from old ones (label 1); the new
embeddings reach it through a gradient-reversal layer, so the same optimiser step trains the
discriminator to separate the domains and the new model to make them indistinguishable:
L_adv = CE(D(GRL(f_new, alpha)), 0) + CE(D(f_old), 1), on un-normalised embeddings, weighted by
w_e. It is the registered term 'adversarial' (COMP_LOSS.EXTRA_TERMS; TRAIN.TYPE adv_compatible adds
it): from the trainer's Progress it takes alpha = dann_alpha(fraction of training done) and
w_e = epoch_weight(epoch, epochs), both from bct.losses.functional.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.losses.functional import dann_alpha, epoch_weight, grad_reverse
from bct.losses.registry import Progress, register_comp_loss
from bct.models.discriminator import Discriminator
from bct.utils.errors import BadInputError

__all__ = ["AdversarialLoss"]


@register_comp_loss("adversarial")
class AdversarialLoss(nn.Module):
    """Holds the discriminator and computes the weighted adversarial loss.

    mode "separate" calls the discriminator once per domain, so its BatchNorm normalises new and
    old embeddings with their own batch statistics (the reference's behaviour); "joint" makes one
    call on the concatenation, so both domains share one set of statistics.
    """

    MODES = ("separate", "joint")
    NEEDS_OLD_FEATURES = True
    # Where checkpoints keep the discriminator (the reference's files map to it too).
    STATE_NAME = "adv_loss"

    def __init__(self, emb_dim: int = 256, hidden: int = 100, mode: str = "separate"):
        super().__init__()
        if mode not in self.MODES:
            raise BadInputError(f"COMP_LOSS.DISC_MODE '{mode}' is not one of {', '.join(self.MODES)}")
        self.mode = mode
        self.discriminator = Discriminator(emb_dim, hidden)

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        """MODEL.EMB_DIM, COMP_LOSS.DISC_HIDDEN and COMP_LOSS.DISC_MODE."""
        return cls(cfg.MODEL.EMB_DIM, cfg.COMP_LOSS.DISC_HIDDEN, cfg.COMP_LOSS.DISC_MODE)

    def forward(self, feat_new: torch.Tensor, feat_old: torch.Tensor, labels=None, new_classifier=None,
                progress: Progress = None) -> dict:
        """feat_new (B, D) with grad, feat_old (B', D) without -> {"loss_adv", "stat_disc_acc", "alpha",
        "epoch_weight"} (the last two: the schedule values of this step, logged)."""
        progress = progress or Progress()
        alpha, weight = dann_alpha(progress.fraction), epoch_weight(progress.epoch, progress.epochs)
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
        return {"loss_adv": weight * loss, "stat_disc_acc": acc, "alpha": alpha, "epoch_weight": weight}
