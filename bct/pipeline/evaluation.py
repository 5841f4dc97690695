"""Evaluate checkpoints on benchmark sets: each model is loaded once (bct.models.loading, checked
against the config, digested for the feature cache) and handed to the set's own protocol
(bct.evaluation.sets).
"""
from bct.utils.fileio import file_digest


def load_for_eval(cfg, role: str, path: str = "", device="cpu", check=("emb_dim",)):
    """(model in eval mode, its meta, the file's digest) of the ``role`` checkpoint at ``path``
    (default: <ROLE>_MODEL.MODEL_PATH), checked against the config on the meta fields in ``check``."""
    from bct.models.build import ROLE_KEYS
    from bct.models.loading import load_trained_model

    model, meta = load_trained_model(cfg, role, path, device, check)
    return model, meta, file_digest(path or cfg[ROLE_KEYS[role]].MODEL_PATH)


def evaluate(cfg, sets: list, new_path: str = "", old_path: str = "", device="cpu", *, with_old_self: bool = False,
             backfill: bool = False, check=("emb_dim",), on_result=None, rankings: bool = False) -> dict:
    """{set name: result} of the new checkpoint (and its cross-test against the old one, if given) on
    ``sets`` ([(name, root or None)]), with the models loaded once. Each result records the models'
    paths and digests; ``on_result(set, result)`` is called as each set finishes (the set reports it:
    ``set.report_lines(result)``). ``rankings``: each result keeps the top of every query's ranking
    (bct.pipeline.results.write_result writes it beside the result, for the report page)."""
    from bct.evaluation.sets import RANKINGS_TOP, build_set, evaluate_models

    bsets = [build_set(name, root, cfg) for name, root in sets]
    new_path = new_path or cfg.NEW_MODEL.MODEL_PATH
    new_model, _, new_digest = load_for_eval(cfg, "new", new_path, device, check)
    old_model, digests = None, {"new": new_digest}
    models = {"new": {"path": new_path, "sha256": new_digest}}
    if old_path:
        old_model, _, digests["old"] = load_for_eval(cfg, "old", old_path, device, check)
        models["old"] = {"path": old_path, "sha256": digests["old"]}
    results = {}
    for bset in bsets:
        result = evaluate_models(cfg, bset, new_model, old_model, device, with_old_self=with_old_self,
                                 backfill=backfill, digests=digests, use_cache=cfg.EVAL.USE_CACHE,
                                 keep_rankings=RANKINGS_TOP if rankings else 0)
        result.update(new_model=new_path, old_model=old_path, models=models)
        results[bset.name] = result
        if on_result is not None:
            on_result(bset, result)
    return results

