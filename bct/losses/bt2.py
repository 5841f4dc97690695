"""BT2 (Zhou et al., ICCV 2023, "BT^2: Backward-compatible Training with Basis Transformation"): the
term of the new model whose embedding is wider than the old one (NEW_MODEL.EXTRA_DIMS; the orthonormal
basis transformation lives in the model's head, bct.models.heads.EmbeddingHead, because retrieval
needs it too).

With c = the first D = MODEL.EMB_DIM dimensions of the new embedding (the old-compatible part) and
f_old the old embedding of the same image:

    L_bt2 = w * [ CE(W_old c, y) over old-class samples  +  mean(1 - cos(c, f_old)) ]

The cross-entropy term is BCT's influence loss on the compatible part; the cosine term pulls it onto
the old embedding, as the authors' code does (with weight 10 on each there). The classifier
cross-entropy of the new model sees the full D + EXTRA_DIMS embedding. docs/method.md says what the
authors' two-stage training does differently.
"""
import torch.nn.functional as F

from bct.losses.compat import BCTLoss
from bct.losses.functional import masked_mean
from bct.losses.registry import register_comp_loss

__all__ = ["BT2Loss"]


@register_comp_loss("bt2")
class BT2Loss(BCTLoss):
    NEEDS_OLD_FEATURES = True
    NEEDS_OLD_CLASSIFIER = True

    def __init__(self, old_classifier, compatible_dims: int, weight: float = 1.0):
        super().__init__(old_classifier, weight)
        self.compatible_dims = int(compatible_dims)

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        return cls(old_classifier, cfg.MODEL.EMB_DIM, cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        compat = feat_new[:, :self.compatible_dims].float()
        is_old, target = self._old_labels(labels, self.num_old)
        ce = F.cross_entropy(self.old_classifier(compat, target).float(), target, reduction="none")
        align = 1.0 - F.cosine_similarity(compat, feat_old.float(), dim=1)
        return {"loss_bt2_influence": self.weight * masked_mean(ce, is_old),
                "loss_bt2_align": self.weight * align.mean(),
                "stat_bt2_cos": align.detach().mean().neg().add(1.0)}
