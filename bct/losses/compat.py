"""The compatibility losses of docs/method.md: none, bct, lce, uni_bct, hot_refresh, bct_limit.

All share one call shape, ``forward(feat_new, feat_old, labels, new_classifier, progress=None) -> dict``
(progress: bct.losses.registry.Progress, read by terms with a schedule; none of these has one):
feat_new (B, D) un-normalised new embeddings (with grad), feat_old (B, D) un-normalised old
embeddings (no grad; may be None for a loss that does not set NEEDS_OLD_FEATURES, since the
frozen old model only runs when some term reads its output), labels (B,) int64 in the new label
space, where "old class" means label < C_old. The dict holds already weighted (COMP_LOSS.WEIGHT) 0-dim ``loss_*`` terms and
detached ``stat_*`` diagnostics. A batch without any usable sample gives a finite zero that
stays attached to the graph, so backward still runs.

Old-class statistics are non-persistent buffers: they follow ``.to(device)`` but never enter a
checkpoint. Every loss works in fp32 (acos, small temperatures) whatever autocast does upstream.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.losses.functional import (
    arcface_logits,
    boundary_hinge,
    elastic_radius,
    label_match_mask,
    masked_mean,
    safe_acos,
    topk_negatives,
)
from bct.losses.registry import register_comp_loss
from bct.losses.stats import OldClassStats
from bct.utils import comm
from bct.utils.errors import BadInputError

__all__ = ["NoCompLoss", "BCTLoss", "LCELoss", "UniBCTLoss", "HotRefreshLoss", "BoundaryLoss"]


class _CompLoss(nn.Module):
    NEEDS_OLD_FEATURES = False
    NEEDS_OLD_CLASSIFIER = False
    NEEDS_STATS = False
    NEEDS_ANGLES = False

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    @staticmethod
    def _old_labels(labels: torch.Tensor, num_old: int):
        """(is_old (B,) bool, labels clamped into 0..num_old-1 (B,)) for table look-ups."""
        return labels < num_old, labels.clamp(min=0, max=num_old - 1)


@register_comp_loss("none")
class NoCompLoss(_CompLoss):
    """No compatibility term (TRAIN.TYPE base, or COMP_LOSS.EXTRA_TERMS alone)."""

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        return cls()

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        return {}


@register_comp_loss("bct")
class BCTLoss(_CompLoss):
    """BCT influence loss: CE of the frozen old classifier on new embeddings of old-class samples.

    The classifier gets the labels too, so an old ArcFace / CosFace head applies its own margin,
    the loss the old model was trained with; a softmax head ignores them (the reference's case).
    """

    NEEDS_OLD_CLASSIFIER = True

    def __init__(self, old_classifier: nn.Module, weight: float = 1.0):
        super().__init__(weight)
        # Kept outside the module tree: the old model's weights must not enter new checkpoints
        # nor the optimiser.
        object.__setattr__(self, "old_classifier", old_classifier)
        self.num_old = old_classifier.weight.shape[0]

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        return cls(old_classifier, cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        is_old, target = self._old_labels(labels, self.num_old)
        logits = self.old_classifier(feat_new.float(), target)
        ce = F.cross_entropy(logits.float(), target, reduction="none")
        return {"loss_bct": self.weight * masked_mean(ce, is_old)}


@register_comp_loss("lce")
class LCELoss(_CompLoss):
    """LCE: angular boundary term plus alignment of new classifier rows with old class centres.

    Over old-class samples whose class has more than one inlier angle:
    boundary = mean max(acos(c_hat_y . f_hat) - theta_max_y, 0),
    alignment = mean 1 - cos(c_y, W_new[y]).
    """

    NEEDS_STATS = True
    NEEDS_ANGLES = True

    def __init__(self, centers: torch.Tensor, theta_max: torch.Tensor, theta_valid: torch.Tensor,
                 weight: float = 1.0):
        super().__init__(weight)
        self.register_buffer("center_dirs", F.normalize(centers.float(), dim=1), persistent=False)
        self.register_buffer("theta_max", theta_max.float(), persistent=False)
        self.register_buffer("theta_valid", theta_valid.bool(), persistent=False)

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats: OldClassStats = None):
        return cls(stats.centers, stats.theta_max, stats.theta_valid, cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        num_old = self.center_dirs.shape[0]
        if new_classifier.weight.shape[0] < num_old:
            raise ValueError(f"the new classifier has {new_classifier.weight.shape[0]} classes, fewer than the "
                             f"{num_old} old classes")
        is_old, y = self._old_labels(labels, num_old)
        keep = is_old & self.theta_valid[y]
        centres = self.center_dirs[y]
        angle = safe_acos((F.normalize(feat_new.float(), dim=1) * centres).sum(1))
        boundary = masked_mean(torch.relu(angle - self.theta_max[y]), keep)
        rows = F.normalize(new_classifier.weight[y].float(), dim=1)
        align = masked_mean(1.0 - (centres * rows).sum(1), keep)
        return {"loss_lce_boundary": self.weight * boundary, "loss_lce_align": self.weight * align}


@register_comp_loss("uni_bct")
class UniBCTLoss(_CompLoss):
    """Simplified UniBCT: ArcFace CE of normalised new features against fixed old class centres.

    Classes absent from radius.json have no centre: their logits are removed from every softmax
    (set to -inf) and their samples are skipped. A class with a single inlier keeps its centre,
    which is then that sample's own old feature, still a sound prototype.
    """

    NEEDS_STATS = True

    def __init__(self, centers: torch.Tensor, present: torch.Tensor, scale: float = 30.0, margin: float = 0.3,
                 weight: float = 1.0):
        super().__init__(weight)
        self.scale, self.margin = float(scale), float(margin)
        self.register_buffer("center_dirs", F.normalize(centers.float(), dim=1), persistent=False)
        self.register_buffer("present", present.bool(), persistent=False)

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats: OldClassStats = None):
        return cls(stats.centers, stats.present, cfg.COMP_LOSS.ARC_SCALE, cfg.COMP_LOSS.ARC_MARGIN,
                   cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        is_old, y = self._old_labels(labels, self.center_dirs.shape[0])
        keep = is_old & self.present[y]
        cos = F.normalize(feat_new.float(), dim=1) @ self.center_dirs.t()
        logits = arcface_logits(cos, torch.where(keep, y, -1), self.scale, self.margin)
        logits = logits.masked_fill(~self.present[None, :], float("-inf"))
        # Skipped rows are ignored by the CE itself, so no inf ever enters the sum.
        target = torch.where(keep, y, -100)
        ce_sum = F.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
        return {"loss_uni_bct": self.weight * ce_sum / keep.sum().clamp(min=1)}


@register_comp_loss("hot_refresh")
class HotRefreshLoss(_CompLoss):
    """RACT contrastive loss of Hot-Refresh, with negatives gathered over every rank.

    Anchor i: positive z_i . z_old_i; negatives z_i . z_old_j and z_i . z_j for gathered samples j
    of other classes (self excluded); the top-k of each set; logits / temperature; CE, target 0.
    Gathered copies carry no gradient, so one process on the concatenated batch gives the same
    per-anchor losses and anchor gradients as the ranks together.
    """
    NEEDS_OLD_FEATURES = True

    def __init__(self, temperature: float = 0.01, topk_neg: int = 10, weight: float = 1.0):
        super().__init__(weight)
        self.temperature, self.topk_neg = float(temperature), int(topk_neg)

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        return cls(cfg.COMP_LOSS.TEMPERATURE, cfg.COMP_LOSS.TOPK_NEG, cfg.COMP_LOSS.WEIGHT)

    def per_anchor(self, feat_new: torch.Tensor, feat_old: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Unweighted loss of every local anchor, (B,); 0 for an anchor without any negative."""
        z = F.normalize(feat_new.float(), dim=1)
        z_old = F.normalize(feat_old.float(), dim=1).detach()
        # One gather for both feature sets: each gather is a size exchange plus the data.
        z_all, z_old_all = comm.all_gather_nograd(torch.cat([z, z_old], dim=1)).split(z.shape[1], dim=1)
        labels_all = comm.all_gather_nograd(labels)
        # Every sample shares its own label, so this also drops the anchor's own gathered copy
        # (no global index needed).
        negatives = ~label_match_mask(labels, labels_all)
        pos = (z * z_old).sum(1, keepdim=True)
        n2o = topk_negatives(z @ z_old_all.t(), negatives, self.topk_neg)
        n2n = topk_negatives(z @ z_all.t(), negatives, self.topk_neg)
        logits = torch.cat([pos, n2o, n2n], dim=1) / self.temperature
        return torch.logsumexp(logits, dim=1) - logits[:, 0]

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        return {"loss_hot_refresh": self.weight * self.per_anchor(feat_new, feat_old, labels).mean()}


@register_comp_loss("bct_limit")
class BoundaryLoss(_CompLoss):
    """AdvBCT boundary loss: keep normalised new features inside each old class's ball.

    For old-class samples whose class has more than one inlier: d = ||f_hat_new - c_y||, with
    c_y the un-normalised centre. Radius: elastic r_max + (T - r_max) sigmoid(w_y) with a
    learnable w (C_old,) initialised U(-1, 1) (COMP_LOSS.ELASTIC_BOUNDARY), otherwise the fixed
    per-class COMP_LOSS.RADIUS ("min" = radius[0], the reference's choice; "median"; "max").
    Loss = mean over violators of d - r (0 without violators).
    """

    NEEDS_STATS = True
    RADIUS_CHOICES = ("min", "median", "max")

    def __init__(self, centers: torch.Tensor, radius: torch.Tensor, valid: torch.Tensor, elastic: bool = False,
                 threshold: float = 0.5, weight: float = 1.0):
        """radius (C_old,): r_max when elastic, else the fixed radius of each class."""
        super().__init__(weight)
        self.elastic, self.threshold = bool(elastic), float(threshold)
        self.register_buffer("centers", centers.float(), persistent=False)
        self.register_buffer("radius", radius.float(), persistent=False)
        self.register_buffer("valid", valid.bool(), persistent=False)
        if self.elastic:
            self.elastic_w = nn.Parameter(torch.empty(radius.shape[0], device=radius.device).uniform_(-1.0, 1.0))

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats: OldClassStats = None):
        elastic = cfg.COMP_LOSS.ELASTIC_BOUNDARY
        if elastic:
            radius = stats.r_max
        else:
            choice = cfg.COMP_LOSS.RADIUS
            if choice not in cls.RADIUS_CHOICES:
                raise BadInputError(f"COMP_LOSS.RADIUS '{choice}' is not one of {', '.join(cls.RADIUS_CHOICES)}")
            radius = {"min": stats.r_min, "median": stats.r_median, "max": stats.r_max}[choice]
        return cls(stats.centers, radius, stats.valid, elastic, cfg.COMP_LOSS.THRESHOLD, cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None) -> dict:
        is_old, y = self._old_labels(labels, self.centers.shape[0])
        keep = is_old & self.valid[y]
        dist = (F.normalize(feat_new.float(), dim=1) - self.centers[y]).norm(dim=1)
        if self.elastic:
            radius = elastic_radius(self.radius[y], self.elastic_w[y], self.threshold)
        else:
            radius = self.radius[y]
        loss, n_violators = boundary_hinge(dist, radius, keep)
        n_keep = keep.sum().clamp(min=1)
        return {
            "loss_boundary": self.weight * loss,
            "stat_violator_frac": (n_violators.float() / n_keep).detach(),
            "stat_mean_radius": masked_mean(radius.detach(), keep),
        }
