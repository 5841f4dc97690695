"""The per-family entry points of earlier versions, kept as thin wrappers over bct.evaluation.sets
until every caller uses it (docs/evaluation.md).

``evaluate_revisited_models`` / ``evaluate_gldv2_models`` return what they always returned: in
particular ``backfill`` is the family's full curve (what ``sets.evaluate_models`` calls
``backfill_detail``). New code calls ``sets.build_set`` and ``sets.evaluate_models``.
"""
from bct.evaluation import sets
from bct.evaluation.extract import extract_features
from bct.evaluation.sets import headline

LEVELS = sets.LEVELS


def _legacy(result: dict) -> dict:
    if "backfill_detail" in result:
        result["backfill"] = result.pop("backfill_detail")
    return result


def evaluate_revisited_models(cfg, name: str, root: str, new_model, old_model=None, device="cpu",
                              with_old_self: bool = True, use_cache: bool = True, digests: dict = None,
                              backfill: bool = False) -> dict:
    """sets.evaluate_models on the revisited-format set ``name`` under ``root``."""
    bset = sets.build_set(name, root, cfg, family="revisited")
    return _legacy(sets.evaluate_models(cfg, bset, new_model, old_model, device, with_old_self=with_old_self,
                                        backfill=backfill, digests=digests, use_cache=use_cache))


def evaluate_gldv2_models(cfg, root: str, new_model, old_model=None, device="cpu", with_old_self: bool = True,
                          use_cache: bool = True, digests: dict = None, backfill: bool = False) -> dict:
    """sets.evaluate_models on the GLDv2 lists in ``root``."""
    bset = sets.build_set("gldv2", root, cfg, family="gldv2")
    return _legacy(sets.evaluate_models(cfg, bset, new_model, old_model, device, with_old_self=with_old_self,
                                        backfill=backfill, digests=digests, use_cache=use_cache))


def compatibility_matrix(cfg, name: str, root: str, models: list, device="cpu", digests: list = None) -> dict:
    """sets.compatibility_matrix on set ``name`` at ``root`` (its family found by sets.build_set)."""
    return sets.compatibility_matrix(cfg, sets.build_set(name, root, cfg), models, device, digests)


def headline_value(dataset: str, part: dict) -> float:
    """The headline number x100 of one self/cross entry (``dataset`` is no longer needed)."""
    return sets.scores_headline(part)


__all__ = ["evaluate_revisited_models", "evaluate_gldv2_models", "compatibility_matrix", "headline",
           "headline_value", "extract_features"]
