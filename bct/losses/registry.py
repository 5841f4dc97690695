"""The registry of compatibility losses (name -> class) selected by COMP_LOSS.TYPE (docs/method.md).

Each registered class has a ``from_config(cfg, old_classifier, stats)`` constructor and the class
attributes NEEDS_OLD_CLASSIFIER, NEEDS_STATS and NEEDS_ANGLES, so a caller can tell what a loss
needs before building it. Call shape of every loss:
``forward(feat_new (B, D), feat_old (B, D), labels (B,), new_classifier) -> {"loss_*": 0-dim, ...}``.
"""
import difflib

import torch.nn as nn

from bct.losses.stats import OldClassStats, load_old_stats
from bct.utils.errors import BadInputError

__all__ = ["COMP_LOSS_REGISTRY", "register_comp_loss", "build_comp_loss"]

COMP_LOSS_REGISTRY: dict = {}


def register_comp_loss(name: str):
    """Class decorator adding a loss to COMP_LOSS_REGISTRY under `name` (names are unique)."""

    def add(cls):
        if name in COMP_LOSS_REGISTRY:
            raise ValueError(f"compatibility loss '{name}' is registered twice")
        COMP_LOSS_REGISTRY[name] = cls
        return cls

    return add


def build_comp_loss(cfg, old_classifier: nn.Module = None, stats: OldClassStats = None) -> nn.Module:
    """The loss module named by cfg.COMP_LOSS.TYPE.

    old_classifier: the frozen old classifier (needed by "bct"). stats: old-class statistics; when
    None and the loss needs them, they are read from EVAL.OLD_SAVE_FILE (and EVAL.OLD_ANGLE_FILE for
    "lce") onto the CPU: move the module with .to(device) (its statistics are non-persistent
    buffers: they follow the module but stay out of its state_dict). Create the optimiser after
    that move, over the module's parameters too ("bct_limit" with the elastic boundary has some).
    """
    name = cfg.COMP_LOSS.TYPE
    if name not in COMP_LOSS_REGISTRY:
        valid = sorted(COMP_LOSS_REGISTRY)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise BadInputError(f"COMP_LOSS.TYPE '{name}' is not a compatibility loss{hint}; valid names: "
                            f"{', '.join(valid)}")
    cls = COMP_LOSS_REGISTRY[name]
    if cls.NEEDS_OLD_CLASSIFIER and old_classifier is None:
        raise ValueError(f"COMP_LOSS.TYPE {name} needs the old model's classifier: pass old_classifier")
    if cls.NEEDS_STATS and stats is None:
        stats = load_old_stats(cfg.EVAL.OLD_SAVE_FILE, cfg.EVAL.OLD_ANGLE_FILE if cls.NEEDS_ANGLES else None,
                               num_classes=cfg.OLD_MODEL.NUM_CLASSES, emb_dim=cfg.MODEL.EMB_DIM)
    if cls.NEEDS_ANGLES and stats.theta_max is None:
        raise ValueError(f"COMP_LOSS.TYPE {name} needs the angle statistics: load them with "
                         f"load_old_stats(..., angle_json=cfg.EVAL.OLD_ANGLE_FILE)")
    return cls.from_config(cfg, old_classifier=old_classifier, stats=stats)
