"""The registry of compatibility terms (name -> class): the catalogue of methods (docs/adding_a_method.md).

COMP_LOSS.TYPE names the method's term; COMP_LOSS.EXTRA_TERMS adds further ones (AdvBCT's
'adversarial' discriminator). Each registered class has a ``from_config(cfg, old_classifier, stats)``
constructor and four flags that say what it needs before it is built:

- NEEDS_OLD_FEATURES: the frozen old model's embeddings of the batch (the old forward pass runs);
- NEEDS_OLD_CLASSIFIER: the old model's classifier (passed to from_config);
- NEEDS_STATS: the old-class statistics of COMP_LOSS.RADIUS_FILE;
- NEEDS_ANGLES: the angle statistics of COMP_LOSS.ANGLE_FILE too.

Call shape of every term:
``forward(feat_new (B, D), feat_old (B, D) or None, labels (B,), new_classifier, progress) ->
{"loss_*": 0-dim, "stat_*": ..., ...}``, where ``progress`` is a :class:`Progress` (where training
stands: what schedules such as AdvBCT's read). A term's trainable state lives in its submodule
``STATE_NAME`` of the training task (default ``<name>_loss``; the COMP_LOSS.TYPE term is always
``comp_loss``), which is where checkpoints keep it.

Terms defined outside bct register with ``@register_comp_loss("name")`` in a module that the config
key MODULES names; ``import_modules`` imports them before any name is looked up.
"""
import difflib
import importlib
import sys
from dataclasses import dataclass

import torch.nn as nn

from bct.losses.stats import OldClassStats, load_old_stats
from bct.utils.errors import BadInputError

__all__ = ["COMP_LOSS_REGISTRY", "Progress", "register_comp_loss", "import_modules", "comp_loss_class",
           "comp_loss_names", "check_terms", "term_names", "needs_stats", "needs_angles", "build_comp_loss", "build_terms"]

COMP_LOSS_REGISTRY: dict = {}
_FLAGS = ("NEEDS_OLD_FEATURES", "NEEDS_OLD_CLASSIFIER", "NEEDS_STATS", "NEEDS_ANGLES")


@dataclass(frozen=True)
class Progress:
    """Where training stands when a term is called: 0-based epoch of `epochs`, 0-based iteration of
    `iters_per_epoch`. ``fraction`` is the share of all iterations done, in [0, 1)."""

    epoch: int = 0
    epochs: int = 1
    iteration: int = 0
    iters_per_epoch: int = 1

    @property
    def fraction(self) -> float:
        return (self.epoch * self.iters_per_epoch + self.iteration) / max(1, self.epochs * self.iters_per_epoch)


def register_comp_loss(name: str):
    """Class decorator adding a term to COMP_LOSS_REGISTRY under `name` (names are unique). Flags the
    class does not set are False."""

    def add(cls):
        if name in COMP_LOSS_REGISTRY and COMP_LOSS_REGISTRY[name] is not cls:
            raise ValueError(f"compatibility loss '{name}' is registered twice")
        for flag in _FLAGS:
            setattr(cls, flag, bool(getattr(cls, flag, False)))
        if not hasattr(cls, "from_config"):
            raise TypeError(f"compatibility loss '{name}' ({cls.__name__}) has no from_config(cfg, old_classifier, stats)")
        COMP_LOSS_REGISTRY[name] = cls
        return cls

    return add


def import_modules(names) -> None:
    """Import the modules of the config key MODULES (each registers its terms); the current folder is
    searched too, as for ``python -m``. A module that cannot be imported is one line naming it."""
    if names and "" not in sys.path and "." not in sys.path:
        sys.path.append("")
    for name in names or ():
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise BadInputError(f"MODULES: cannot import {name} ({e}); give a module name importable from the "
                                f"current folder or PYTHONPATH, e.g. my_losses for ./my_losses.py") from None


def comp_loss_names() -> list:
    """Every registered term name, sorted."""
    return sorted(COMP_LOSS_REGISTRY)


def comp_loss_class(name: str, key: str = "COMP_LOSS.TYPE"):
    """The registered class of `name`; an unknown name is one line with the closest name and the list."""
    if name not in COMP_LOSS_REGISTRY:
        valid = comp_loss_names()
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise BadInputError(f"{key} '{name}' is not a registered compatibility loss{hint}; valid names: "
                            f"{', '.join(valid)} (a loss of your own: docs/adding_a_method.md)")
    return COMP_LOSS_REGISTRY[name]


def check_terms(cfg) -> None:
    """The term names of a config against the registry, after importing MODULES (so a term registered
    in user code counts): an unknown name is one line with the closest name and the valid ones, and a
    compatible run names at least one term."""
    import_modules(cfg.MODULES)
    for key, names in (("COMP_LOSS.TYPE", [cfg.COMP_LOSS.TYPE]), ("COMP_LOSS.EXTRA_TERMS", cfg.COMP_LOSS.EXTRA_TERMS)):
        for name in names:
            try:
                comp_loss_class(name, key)
            except BadInputError as e:
                raise BadInputError(f"config: {e}") from None
    if cfg.TRAIN.TYPE == "compatible" and cfg.COMP_LOSS.TYPE == "none" and not cfg.COMP_LOSS.EXTRA_TERMS:
        valid = ", ".join(n for n in comp_loss_names() if n != "none")
        raise BadInputError(f"config: TRAIN.TYPE compatible needs COMP_LOSS.TYPE or COMP_LOSS.EXTRA_TERMS ({valid})")


def term_names(cfg) -> list:
    """The terms a compatible run trains with: COMP_LOSS.TYPE, then COMP_LOSS.EXTRA_TERMS, then
    'adversarial' for TRAIN.TYPE adv_compatible (once), each checked (check_terms). Empty for
    TRAIN.TYPE base."""
    if cfg.TRAIN.TYPE == "base":
        return []
    check_terms(cfg)
    names = [cfg.COMP_LOSS.TYPE] + [n for n in cfg.COMP_LOSS.EXTRA_TERMS if n != cfg.COMP_LOSS.TYPE]
    if cfg.TRAIN.TYPE == "adv_compatible" and "adversarial" not in names:
        names.append("adversarial")
    return names


def needs_stats(cfg) -> bool:
    """Whether some term of the run reads the old-class statistics (COMP_LOSS.RADIUS_FILE)."""
    return any(comp_loss_class(n).NEEDS_STATS for n in term_names(cfg))


def needs_angles(cfg) -> bool:
    """Whether some term of the run reads the angle statistics (COMP_LOSS.ANGLE_FILE)."""
    return any(comp_loss_class(n).NEEDS_ANGLES for n in term_names(cfg))


def _stats_for(cfg, cls, stats: OldClassStats, device="cpu"):
    if cls.NEEDS_STATS and stats is None:
        stats = load_old_stats(cfg.COMP_LOSS.RADIUS_FILE, cfg.COMP_LOSS.ANGLE_FILE if cls.NEEDS_ANGLES else None,
                               num_classes=cfg.OLD_MODEL.NUM_CLASSES, emb_dim=cfg.MODEL.EMB_DIM, device=device)
    if cls.NEEDS_ANGLES and (stats is None or stats.theta_max is None):
        raise ValueError(f"{cls.__name__} needs the angle statistics: load them with "
                         f"load_old_stats(..., angle_json=cfg.COMP_LOSS.ANGLE_FILE)")
    return stats


def _build(cfg, name: str, key: str, old_classifier, stats):
    cls = comp_loss_class(name, key)
    if cls.NEEDS_OLD_CLASSIFIER and old_classifier is None:
        raise ValueError(f"{key} {name} needs the old model's classifier: pass old_classifier")
    return cls.from_config(cfg, old_classifier=old_classifier, stats=_stats_for(cfg, cls, stats))


def build_comp_loss(cfg, old_classifier: nn.Module = None, stats: OldClassStats = None) -> nn.Module:
    """The term named by cfg.COMP_LOSS.TYPE.

    old_classifier: the frozen old classifier (needed by "bct"). stats: old-class statistics; when
    None and the term needs them, they are read from COMP_LOSS.RADIUS_FILE (and COMP_LOSS.ANGLE_FILE
    for a term with NEEDS_ANGLES) onto the CPU: move the module with .to(device) (its statistics are
    non-persistent buffers: they follow the module but stay out of its state_dict). Create the
    optimiser after that move, over the module's parameters too ("bct_limit" with the elastic
    boundary has some).
    """
    return _build(cfg, cfg.COMP_LOSS.TYPE, "COMP_LOSS.TYPE", old_classifier, stats)


def build_terms(cfg, old_classifier: nn.Module = None, stats: OldClassStats = None) -> dict:
    """{submodule name: term} of every term of the run (term_names), in order: the COMP_LOSS.TYPE term
    as "comp_loss", each further term under its class's STATE_NAME (default "<name>_loss")."""
    names = term_names(cfg)
    terms = {}
    for i, name in enumerate(names):
        key = "COMP_LOSS.TYPE" if i == 0 else "COMP_LOSS.EXTRA_TERMS"
        term = _build(cfg, name, key, old_classifier, stats)
        slot = "comp_loss" if i == 0 else (getattr(type(term), "STATE_NAME", None) or f"{name}_loss")
        terms[slot] = term
    return terms
