"""The one place the pipeline asks which methods exist, what they are called and need, which config
keys name a run's inputs, and how a benchmark set is parsed, built and scored.

Everything else in bct.pipeline goes through these functions, so the method catalogue
(bct.config.methods) and the benchmark-set interface (bct.evaluation.sets) are each read in one place.
"""
import os

from bct.config import get_cfg_defaults
from bct.utils.errors import BadInputError

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
    """[(name, root or None)] from the one comma-separated --datasets value (NAME or NAME=ROOT)."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, _, root = item.partition("=")
        if not name or "." in name or name.isupper() or "/" in name:
            raise BadInputError(f"--datasets: {item!r} is not NAME or NAME=ROOT (e.g. rparis6k,roxford5k,gldv2)")
        out.append((name, root or None))
    if not out:
        raise BadInputError("--datasets is empty; give e.g. rparis6k,roxford5k,gldv2")
    return out


def set_title(name: str) -> str:
    """The title of a set in tables and plots."""
    from bct.evaluation.report import DATASET_TITLES
    return DATASET_TITLES.get(name, name)


def headline_name(name: str) -> str:
    """Which number a set's headline is (e.g. "Medium mAP")."""
    return "private mAP@100" if name == "gldv2" else "Medium mAP"


class _Set:
    def __init__(self, name: str, root: str):
        self.name, self.root = name, root
        self.title, self.headline_name = set_title(name), headline_name(name)
        self.family = "gldv2" if name == "gldv2" else "revisited"


def build_set(name: str, root, cfg):
    if root is None:
        root = cfg.EVAL.GLDV2_ROOT if name == "gldv2" else cfg.EVAL.ROOT
    return _Set(name, root)


def evaluate_set(cfg, bset, new_model, old_model, device, *, with_old_self: bool, backfill: bool, digests: dict,
                 use_cache: bool) -> dict:
    """The result of one set: the family's scores plus "headline" (x100) and "curve" ([(ratio, x100)])."""
    from bct.evaluation.protocol import evaluate_gldv2_models, evaluate_revisited_models, headline
    kw = dict(device=device, with_old_self=with_old_self, use_cache=use_cache, digests=digests, backfill=backfill)
    if bset.family == "gldv2":
        result = evaluate_gldv2_models(cfg, bset.root, new_model, old_model, **kw)
        curve = [(p["ratio"], 100.0 * p["map"]) for p in result.get("backfill", {}).get("private", [])]
    else:
        result = evaluate_revisited_models(cfg, bset.name, bset.root, new_model, old_model, **kw)
        curve = [(p["ratio"], 100.0 * p["medium"]) for p in result.get("backfill", [])]
    result["headline"] = {k: headline(result, k) for k in ("self", "cross", "old_self") if k in result}
    if backfill and old_model is not None:
        result["curve"] = curve
    return result


def matrix_on_set(cfg, bset, models: list, device, digests: list) -> dict:
    from bct.evaluation.protocol import compatibility_matrix
    return compatibility_matrix(cfg, bset.name, bset.root, models, device, digests)
