"""The one place the pipeline asks which methods exist, what they are called and need, which config
keys name a run's inputs, and how a benchmark set is parsed, built and scored.

Everything else in bct.pipeline goes through these functions, so the method catalogue
(bct.config.methods) and the benchmark-set interface (bct.evaluation.sets) are each read in one place.
"""
from bct.config import get_cfg_defaults

# Config keys that name a training run's input files (its list, the old model, the statistics).
LIST_KEY = "TRAIN.LIST_FILE"
RADIUS_KEY = "COMP_LOSS.RADIUS_FILE"
ANGLE_KEY = "COMP_LOSS.ANGLE_FILE"


def method_names(include_oracle: bool = True) -> list:
    """Every method of the catalogue (configs/methods), oracle first, then the paper's order."""
    from bct.config.methods import method_names as names
    return names(include_oracle)


def method_title(name: str) -> str:
    """A method's display title (METHOD.TITLE of its yml); names outside the catalogue (e.g. "old") as they are."""
    from bct.config.methods import method_title as title
    return title(name) if name in method_names() else name


def method_cfg(setting_dir: str, method: str, opts=()):
    """The frozen config of the new model of ``method`` in a setting folder (e.g. configs/synthetic)."""
    from bct.config.methods import load_method_cfg
    return load_method_cfg(setting_dir, method, list(opts))


def statistics_read(cfg) -> tuple:
    """The config keys of the old-class statistics files that the terms of ``cfg`` read."""
    from bct.losses.registry import needs_angles, needs_stats
    if cfg.TRAIN.TYPE == "base" or not needs_stats(cfg):
        return ()
    return (RADIUS_KEY, ANGLE_KEY) if needs_angles(cfg) else (RADIUS_KEY,)


def get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def has_key(key: str) -> bool:
    try:
        get(get_cfg_defaults(), key)
    except KeyError:
        return False
    return True


# -- benchmark sets ------------------------------------------------------------------------------

def parse_sets(text: str) -> list:
    """[(name, root or None)] from the one comma-separated --datasets value (NAME or NAME=PATH)."""
    from bct.evaluation.sets import parse_set_specs
    return parse_set_specs(text)


def build_set(name: str, root, cfg):
    """The benchmark set ``name`` at ``root`` (None: the config's root), its data read and checked now."""
    from bct.evaluation.sets import build_set as build
    return build(name, root, cfg)


def set_title(name: str) -> str:
    """The title of a set in tables when no built set is at hand (the built set's ``title`` otherwise)."""
    from bct.evaluation.report import DATASET_TITLES
    return DATASET_TITLES.get(name, name)


def evaluate_set(cfg, bset, new_model, old_model, device, *, with_old_self: bool, backfill: bool, digests: dict,
                 use_cache: bool, keep_rankings: int = 0) -> dict:
    """One set's result: its scores, "headline" (x100) and "backfill" ([(ratio, headline x100)])."""
    from bct.evaluation.sets import evaluate_models
    return evaluate_models(cfg, bset, new_model, old_model, device, with_old_self=with_old_self, backfill=backfill,
                           digests=digests, use_cache=use_cache, keep_rankings=keep_rankings)


def matrix_on_set(cfg, bset, models: list, device, digests: list) -> dict:
    from bct.evaluation.sets import compatibility_matrix
    return compatibility_matrix(cfg, bset, models, device, digests)
