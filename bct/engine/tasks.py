"""How a batch becomes a dict of named losses: the only part that differs between trainers.

BaseTask: cross-entropy of the trained model (old model, or the oracle). CompatTask: cross-entropy
of the new model plus the compatibility term(s) of docs/method.md and, for adv_compatible, the
gradient-reversal discriminator. Each task is one nn.Module so that DDP wraps everything that has
trainable parameters (network, elastic boundary weights, discriminator) in one forward; the frozen
old model is a dependency held outside the module tree, so it is never trained, wrapped or saved.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BaseTask(nn.Module):
    def __init__(self, model: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor, labels: torch.Tensor, alpha: float = 0.0, epoch_weight: float = 1.0,
                feat_old: torch.Tensor = None):
        _, logits = self.model(images, labels, with_logits=True)
        return {"loss_ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}


class CompatTask(BaseTask):
    def __init__(self, model: nn.Module, old_model: nn.Module, comp_loss: nn.Module, adv_loss: nn.Module = None,
                 label_smoothing: float = 0.0):
        super().__init__(model, label_smoothing)
        self.comp_loss = comp_loss
        self.adv_loss = adv_loss
        # Stored outside _modules: not a parameter owner, not in state_dict, not seen by DDP.
        object.__setattr__(self, "old_model", old_model)
        # BCT, LCE, UniBCT and the boundary read only the old classifier or old-class statistics:
        # the old forward pass (about a fifth of a resnet18 step on CPU) runs only when needed.
        self.needs_old_features = bool(getattr(comp_loss, "NEEDS_OLD_FEATURES", True)) or adv_loss is not None

    def forward(self, images: torch.Tensor, labels: torch.Tensor, alpha: float = 0.0, epoch_weight: float = 1.0,
                feat_old: torch.Tensor = None):
        """``feat_old``: the batch's old embeddings when the trainer kept them (bct.engine.old_cache);
        otherwise the old model computes them, and they stay in ``last_feat_old`` for the trainer."""
        if not self.needs_old_features:
            feat_old = None
        elif feat_old is None:
            with torch.no_grad():
                feat_old = self.old_model(images).float()
        self.last_feat_old = feat_old
        feat_new, logits = self.model(images, labels, with_logits=True)
        out = {"loss_ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}
        feat_new = feat_new.float()
        out.update(self.comp_loss(feat_new, feat_old, labels, self.model.classifier))
        if self.adv_loss is not None:
            out.update(self.adv_loss(feat_new, feat_old, alpha, epoch_weight))
        return out

    def extra_state(self) -> dict:
        """Trainable state beside the network (boundary weights, discriminator) for checkpoints."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("model.")}
