"""Compatibility losses behind one registry (docs/method.md); pure maths in functional.py.

`build_comp_loss(cfg, old_classifier, stats)` returns the module named by COMP_LOSS.TYPE,
`build_adversarial_loss(cfg)` the discriminator term of TRAIN.TYPE adv_compatible, and
`load_old_stats` reads the old-class statistics written by bct.tools.extract_feat.
"""
from bct.losses.registry import COMP_LOSS_REGISTRY, build_comp_loss, register_comp_loss
from bct.losses.compat import BCTLoss, BoundaryLoss, HotRefreshLoss, LCELoss, NoCompLoss, UniBCTLoss
from bct.losses.adversarial import AdversarialLoss, build_adversarial_loss
from bct.losses.stats import OldClassStats, load_old_stats

__all__ = [
    "COMP_LOSS_REGISTRY",
    "build_comp_loss",
    "register_comp_loss",
    "BCTLoss",
    "BoundaryLoss",
    "HotRefreshLoss",
    "LCELoss",
    "NoCompLoss",
    "UniBCTLoss",
    "AdversarialLoss",
    "build_adversarial_loss",
    "OldClassStats",
    "load_old_stats",
]
