"""Evaluate checkpoints on benchmark sets: the one place that loads a checkpoint for evaluation
(checked, digested for the feature cache) and hands it to the set's own protocol (bct.pipeline.catalog).
"""
import os

from bct.pipeline import catalog
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest

META_FIELDS = ("arch", "emb_dim", "num_classes")


def read_checkpoint(path: str, what: str) -> dict:
    """A checkpoint (bct or reference layout) whose meta block can rebuild its model; one line otherwise."""
    from bct.engine.checkpoint import load_checkpoint

    if not path:
        raise BadInputError(f"{what} is empty: give a checkpoint file")
    if os.path.isdir(path):
        raise BadInputError(f"{what} {path} is a folder, not a checkpoint file")
    ckpt = load_checkpoint(path, what)
    meta = ckpt.get("meta")
    missing = [f for f in META_FIELDS if not isinstance(meta, dict) or f not in meta]
    if missing:
        raise BadInputError(f"{what} {path}: its 'meta' block lacks {', '.join(missing)}, which rebuild the model; "
                            "it was not written by bct or the reference implementation (docs/models.md)")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str, device="cpu"):
    """The model of a checked checkpoint (read_checkpoint), in eval mode on ``device``."""
    from bct.engine.checkpoint import load_model_weights
    from bct.models.build import build_model_from_meta

    model = build_model_from_meta(ckpt["meta"], pretrained=False)
    load_model_weights(model, ckpt["model"], path)
    return model.to(device).eval()


def load_for_eval(cfg, role: str, path: str = "", device="cpu", check=("emb_dim",)):
    """(model in eval mode, its meta, the file's digest) of the ``role`` checkpoint at ``path``
    (default: <ROLE>_MODEL.MODEL_PATH), checked against the config on the meta fields in ``check``."""
    from bct.engine.checkpoint import check_meta
    from bct.models.build import ROLE_KEYS, model_meta

    key = ROLE_KEYS[role]
    path = path or cfg[key].MODEL_PATH
    ckpt = read_checkpoint(path, f"{key}.MODEL_PATH")
    expected = model_meta(cfg, role)
    check_meta(ckpt["meta"], {k: expected[k] for k in check}, path, key)
    return model_from_checkpoint(ckpt, path, device), ckpt["meta"], file_digest(path)


def evaluate(cfg, sets: list, new_path: str = "", old_path: str = "", device="cpu", *, with_old_self: bool = False,
             backfill: bool = False, check=("emb_dim",), on_result=None, rankings: bool = False) -> dict:
    """{set name: result} of the new checkpoint (and its cross-test against the old one, if given) on
    ``sets`` ([(name, root or None)]), with the models loaded once. Each result records the models'
    paths and digests; ``on_result(set, result)`` is called as each set finishes (the set reports it:
    ``set.report_lines(result)``). ``rankings``: each result keeps the top of every query's ranking
    (bct.pipeline.results.write_result writes it beside the result, for the report page)."""
    from bct.evaluation.sets import RANKINGS_TOP

    bsets = [catalog.build_set(name, root, cfg) for name, root in sets]
    new_path = new_path or cfg.NEW_MODEL.MODEL_PATH
    new_model, _, new_digest = load_for_eval(cfg, "new", new_path, device, check)
    old_model, digests = None, {"new": new_digest}
    models = {"new": {"path": new_path, "sha256": new_digest}}
    if old_path:
        old_model, _, digests["old"] = load_for_eval(cfg, "old", old_path, device, check)
        models["old"] = {"path": old_path, "sha256": digests["old"]}
    results = {}
    for bset in bsets:
        result = catalog.evaluate_set(cfg, bset, new_model, old_model, device, with_old_self=with_old_self,
                                      backfill=backfill, digests=digests, use_cache=cfg.EVAL.USE_CACHE,
                                      keep_rankings=RANKINGS_TOP if rankings else 0)
        result.update(new_model=new_path, old_model=old_path, models=models)
        results[bset.name] = result
        if on_result is not None:
            on_result(bset, result)
    return results

