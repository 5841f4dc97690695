"""How a batch becomes a dict of named losses: the only part that differs between trainers.

BaseTask: cross-entropy of the trained model (old model, or the oracle). CompatTask: cross-entropy
of the new model plus every registered term of the run (bct.losses.registry: COMP_LOSS.TYPE, then
COMP_LOSS.EXTRA_TERMS such as AdvBCT's discriminator). Each task is one nn.Module so that DDP wraps
everything that has trainable parameters (network, elastic boundary weights, discriminator) in one
forward; the frozen old model is a dependency held outside the module tree, so it is never trained,
wrapped or saved.

``forward(images, labels, feat_old=None, progress=None) -> (losses, feat_old)``: the dict of
``loss_*`` terms and logged values, and the batch's old embeddings (None when no term reads them),
which the trainer keeps (bct.engine.old_cache).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BaseTask(nn.Module):
    # Whether forward runs the frozen old model (never for cross-entropy alone).
    needs_old_features = False

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor, labels: torch.Tensor, feat_old: torch.Tensor = None, progress=None):
        _, logits = self.model(images, labels, with_logits=True)
        return {"loss_ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}, None

    def extra_state(self) -> dict:
        """Trainable state beside the network (boundary weights, discriminator) for checkpoints."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("model.")}


class CompatTask(BaseTask):
    def __init__(self, model: nn.Module, old_model: nn.Module, terms: dict, label_smoothing: float = 0.0):
        """terms: {submodule name: registered term} (bct.losses.build_terms), called in this order."""
        super().__init__(model, label_smoothing)
        for name, term in terms.items():
            self.add_module(name, term)
        self.term_slots = list(terms)
        # Stored outside _modules: not a parameter owner, not in state_dict, not seen by DDP.
        object.__setattr__(self, "old_model", old_model)
        # BCT, LCE, UniBCT and the boundary read only the old classifier or old-class statistics:
        # the old forward pass (about a fifth of a resnet18 step on CPU) runs only when a term needs it.
        self.needs_old_features = any(t.NEEDS_OLD_FEATURES for t in terms.values())

    def forward(self, images: torch.Tensor, labels: torch.Tensor, feat_old: torch.Tensor = None, progress=None):
        """``feat_old``: the batch's old embeddings when the trainer kept them; otherwise the old
        model computes them when a term needs them. Returns (losses, feat_old)."""
        if not self.needs_old_features:
            feat_old = None
        elif feat_old is None:
            with torch.no_grad():
                feat_old = self.old_model(images).float()
        feat_new, logits = self.model(images, labels, with_logits=True)
        out = {"loss_ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}
        feat_new = feat_new.float()
        for slot in self.term_slots:
            out.update(getattr(self, slot)(feat_new, feat_old, labels, self.model.classifier, progress))
        return out, feat_old
