"""Compatibility terms behind one registry, the catalogue of methods (docs/method.md,
docs/adding_a_method.md); pure maths in functional.py.

`build_terms(cfg, old_classifier, stats)` builds every term of a run (COMP_LOSS.TYPE, then
COMP_LOSS.EXTRA_TERMS such as 'adversarial'), `build_comp_loss` the COMP_LOSS.TYPE term alone, and
`load_old_stats` reads the old-class statistics written by bct.tools.extract_feat.
"""
from bct.losses.registry import (
    COMP_LOSS_REGISTRY,
    Progress,
    build_comp_loss,
    build_terms,
    comp_loss_class,
    comp_loss_names,
    import_modules,
    needs_angles,
    needs_stats,
    register_comp_loss,
    term_names,
)
from bct.losses.compat import BCTLoss, BoundaryLoss, HotRefreshLoss, LCELoss, NoCompLoss, UniBCTLoss
from bct.losses.adversarial import AdversarialLoss
from bct.losses.bt2 import BT2Loss
from bct.losses.stats import OldClassStats, load_old_stats

__all__ = [
    "COMP_LOSS_REGISTRY",
    "Progress",
    "build_comp_loss",
    "build_terms",
    "comp_loss_class",
    "comp_loss_names",
    "import_modules",
    "needs_angles",
    "needs_stats",
    "register_comp_loss",
    "term_names",
    "BCTLoss",
    "BoundaryLoss",
    "HotRefreshLoss",
    "LCELoss",
    "NoCompLoss",
    "UniBCTLoss",
    "AdversarialLoss",
    "BT2Loss",
    "OldClassStats",
    "load_old_stats",
]
