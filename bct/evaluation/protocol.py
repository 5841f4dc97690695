"""Self-test, cross-test and partial backfill on a revisited set or GLDv2 (docs/evaluation.md).

One function per benchmark family, shared by the test tool and by validation during training.
Self-test: M(new, new). Cross-test: M(new, old), new-model queries against the old-model gallery
(the gallery is never re-embedded; with a model digest its features come from the on-disk cache).
Results are fractions; printing multiplies by 100.
"""
import os

import numpy as np

from bct.data.datasets import build_image_dataset, loader_workers
from bct.data.gldv2 import load_gldv2_retrieval
from bct.data.revisited import load_revisited
from bct.evaluation.extract import cache_key, cached_extract, extract_features
from bct.evaluation.metrics import compute_map_revisited, gldv2_map_at_k
from bct.evaluation.report import partial_backfill_gallery
from bct.evaluation.search import rank_matrix, search
from bct.utils.errors import BadInputError
from bct.utils.logger import get_logger

LEVELS = ("easy", "medium", "hard")


def _settings(cfg, role: str) -> dict:
    settings = {"size": cfg.EVAL.INPUT_SIZE, "resize": cfg.EVAL.RESIZE, "role": role,
                "crop": cfg.EVAL.QUERY_CROP if role == "query" else False}
    # Features of another decoding differ slightly: they get their own cache entries. The default
    # settings add nothing, so the keys of existing caches stay valid.
    if cfg.DATA.EVAL_FAST_DECODE or cfg.DATA.EVAL_DECODE_DEVICE != "cpu":
        settings["decode"] = [bool(cfg.DATA.EVAL_FAST_DECODE), cfg.DATA.EVAL_DECODE_DEVICE]
    return settings


def _embed(cfg, model, paths, role: str, device, digest: str = "", boxes=None, list_name=""):
    """Features (N, D) of absolute image paths; gallery features go through the cache when a digest is known."""
    dataset, decoder = build_image_dataset(cfg, "eval", "", paths, size=cfg.EVAL.INPUT_SIZE, resize=cfg.EVAL.RESIZE,
                                           boxes=boxes, skip_bad=cfg.EVAL.SKIP_BAD_IMAGES, list_name=list_name,
                                           device=device)
    # Aspect-preserving images differ in size: one per batch, so no padding enters the pooling.
    batch = 1 if cfg.EVAL.RESIZE == "aspect" else cfg.EVAL.BATCH_SIZE
    workers = loader_workers(cfg.EVAL.NUM_WORKERS, "EVAL.NUM_WORKERS")
    kwargs = dict(batch_size=batch, num_workers=workers, device=device,
                  amp=cfg.USE_AMP, desc=f"{role} features", batch_decoder=decoder)
    use_cache = bool(cfg.EVAL.USE_CACHE and digest and role == "gallery")
    key = cache_key(digest, zip(paths, boxes or [None] * len(paths)), _settings(cfg, role)) if use_cache else ""
    feats, ok = cached_extract(model, dataset, key, cfg.EVAL.CACHE_DIR, use_cache, **kwargs)
    bad = int((~ok).sum())
    if bad == len(paths):
        raise BadInputError(f"{list_name}: none of the {len(paths)} {role} images could be read "
                            f"(EVAL.SKIP_BAD_IMAGES): there is nothing to score; no result written")
    if bad:
        get_logger().warning(f"{list_name}: {bad} of {len(paths)} {role} images could not be read and were "
                             f"given a zero feature (EVAL.SKIP_BAD_IMAGES)")
    return np.ascontiguousarray(feats, dtype=np.float32), bad


def _revisited_scores(query, gallery, protocols, backend):
    return compute_map_revisited(rank_matrix(query, gallery, backend), protocols)


def evaluate_revisited_models(cfg, name: str, root: str, new_model, old_model=None, device="cpu",
                              with_old_self: bool = True, use_cache: bool = True, digests: dict = None,
                              backfill: bool = False) -> dict:
    """{'self': ..., 'cross': ..., 'old_self': ..., 'backfill': [...]} for revisited set `name` under `root`.

    `new_model` is the model under test; with `old_model` the cross-test (new queries, old gallery)
    and, if asked, the old self-test are added. `digests` maps "new"/"old" to checkpoint digests
    that key the gallery-feature cache.
    """
    data = load_revisited(name, root)
    digests = digests if use_cache else {}
    digests = digests or {}
    protocols = {level: data.protocol(level) for level in LEVELS}
    boxes = data.query_boxes if cfg.EVAL.QUERY_CROP else None
    backend = cfg.EVAL.SEARCH_BACKEND
    label = os.path.join(root, name)
    q_new, bad_q = _embed(cfg, new_model, data.query_paths, "query", device, boxes=boxes, list_name=f"{label} queries")
    db_new, bad_db = _embed(cfg, new_model, data.db_paths, "gallery", device, digests.get("new", ""),
                            list_name=f"{label} database")
    out = {"dataset": name, "n_query": len(data.query_paths), "n_db": len(data.db_paths),
           "protocol": "crop queries to bbx" if cfg.EVAL.QUERY_CROP else "paper (no query crop)",
           "resize": cfg.EVAL.RESIZE, "skipped_images": bad_q + bad_db,
           "self": _revisited_scores(q_new, db_new, protocols, backend)}
    if old_model is not None:
        db_old, _ = _embed(cfg, old_model, data.db_paths, "gallery", device, digests.get("old", ""),
                           list_name=f"{label} database")
        out["cross"] = _revisited_scores(q_new, db_old, protocols, backend)
        if with_old_self:
            q_old, _ = _embed(cfg, old_model, data.query_paths, "query", device, boxes=boxes,
                              list_name=f"{label} queries")
            out["old_self"] = _revisited_scores(q_old, db_old, protocols, backend)
        if backfill:
            out["backfill"] = []
            for ratio in cfg.EVAL.BACKFILL_RATIOS:
                mixed, _ = partial_backfill_gallery(db_old, db_new, float(ratio), cfg.EVAL.BACKFILL_SEED)
                res = _revisited_scores(q_new, mixed, protocols, backend)
                out["backfill"].append({"ratio": float(ratio), **{lv: res[lv]["map"] for lv in LEVELS}})
            out["backfill_seed"] = cfg.EVAL.BACKFILL_SEED
    return out


def _gldv2_scores(query, gallery, solution, k, backend) -> float:
    _, ids = search(query, gallery, k, backend)
    return gldv2_map_at_k({q: ids[q].tolist() for q in range(ids.shape[0])}, solution, k)


def evaluate_gldv2_models(cfg, root: str, new_model, old_model=None, device="cpu", with_old_self: bool = True,
                          use_cache: bool = True, digests: dict = None, backfill: bool = False) -> dict:
    """Public and private mAP@K (K = EVAL.TOPK) for self-test, cross-test and optionally old self-test."""
    digests = (digests if use_cache else {}) or {}
    splits = {u: load_gldv2_retrieval(root, u) for u in ("public", "private")}
    gallery_paths = splits["public"].gallery_paths
    k, backend = cfg.EVAL.TOPK, cfg.EVAL.SEARCH_BACKEND
    feats = {"new": _embed(cfg, new_model, gallery_paths, "gallery", device, digests.get("new", ""),
                           list_name=os.path.join(root, "gldv2_gallery_list.txt"))[0]}
    if old_model is not None:
        feats["old"] = _embed(cfg, old_model, gallery_paths, "gallery", device, digests.get("old", ""),
                              list_name=os.path.join(root, "gldv2_gallery_list.txt"))[0]
    out = {"dataset": "gldv2", "n_db": len(gallery_paths), "k": k}
    for usage, split in splits.items():
        qlist = os.path.join(root, f"gldv2_{usage}_query_list.txt")
        q_new = _embed(cfg, new_model, split.query_paths, "query", device, list_name=qlist)[0]
        out.setdefault("self", {})[usage] = _gldv2_scores(q_new, feats["new"], split.solution, k, backend)
        out.setdefault("n_query", {})[usage] = len(split.query_paths)
        if old_model is not None:
            out.setdefault("cross", {})[usage] = _gldv2_scores(q_new, feats["old"], split.solution, k, backend)
            if with_old_self:
                q_old = _embed(cfg, old_model, split.query_paths, "query", device, list_name=qlist)[0]
                out.setdefault("old_self", {})[usage] = _gldv2_scores(q_old, feats["old"], split.solution, k, backend)
            if backfill:
                curve = []
                for ratio in cfg.EVAL.BACKFILL_RATIOS:
                    mixed, _ = partial_backfill_gallery(feats["old"], feats["new"], float(ratio), cfg.EVAL.BACKFILL_SEED)
                    curve.append({"ratio": float(ratio), "map": _gldv2_scores(q_new, mixed, split.solution, k, backend)})
                out.setdefault("backfill", {})[usage] = curve
    return out


def compatibility_matrix(cfg, name: str, root: str, models: list, device="cpu", digests: list = None) -> dict:
    """Every (query model i, gallery model j <= i) pair on revisited set ``name`` or on "gldv2" at ``root``.

    ``models``: the models oldest first; ``digests``: their checkpoint digests (keys of the gallery
    feature cache; EVAL.USE_CACHE). Each model embeds the queries and the gallery once; every pair is
    then a search. Returns ``{'dataset', 'pairs': {(i, j): scores as in evaluate_*_models' 'self'},
    'matrix': (n, n) headline numbers x100, NaN above the diagonal}``.
    """
    digests = digests if cfg.EVAL.USE_CACHE and digests else [""] * len(models)
    backend = cfg.EVAL.SEARCH_BACKEND
    if name == "gldv2":
        splits = {u: load_gldv2_retrieval(root, u) for u in ("public", "private")}
        qlists = {u: os.path.join(root, f"gldv2_{u}_query_list.txt") for u in splits}
        gallery = [_embed(cfg, m, splits["public"].gallery_paths, "gallery", device, d,
                          list_name=os.path.join(root, "gldv2_gallery_list.txt"))[0] for m, d in zip(models, digests)]
        queries = [{u: _embed(cfg, m, s.query_paths, "query", device, list_name=qlists[u])[0] for u, s in splits.items()}
                   for m in models]

        def score(i, j):
            return {u: _gldv2_scores(queries[i][u], gallery[j], s.solution, cfg.EVAL.TOPK, backend)
                    for u, s in splits.items()}
    else:
        data = load_revisited(name, root)
        protocols = {level: data.protocol(level) for level in LEVELS}
        boxes = data.query_boxes if cfg.EVAL.QUERY_CROP else None
        label = os.path.join(root, name)
        gallery = [_embed(cfg, m, data.db_paths, "gallery", device, d, list_name=f"{label} database")[0]
                   for m, d in zip(models, digests)]
        queries = [_embed(cfg, m, data.query_paths, "query", device, boxes=boxes, list_name=f"{label} queries")[0]
                   for m in models]

        def score(i, j):
            return _revisited_scores(queries[i], gallery[j], protocols, backend)
    n = len(models)
    pairs = {(i, j): score(i, j) for i in range(n) for j in range(i + 1)}
    matrix = np.full((n, n), np.nan)
    for (i, j), part in pairs.items():
        matrix[i, j] = headline_value(name, part)
    return {"dataset": name, "pairs": pairs, "matrix": matrix}


def headline_value(dataset: str, part: dict) -> float:
    """The number the paper's table reports, x100, from one self/cross entry of `dataset`:
    Medium mAP (revisited) or private mAP@100 (GLDv2)."""
    if dataset == "gldv2":
        return 100.0 * part["private"]
    return 100.0 * part["medium"]["map"]


def headline(result: dict, which: str) -> float:
    """headline_value of result[which] ("self", "cross" or "old_self")."""
    return headline_value(result["dataset"], result[which])


__all__ = ["evaluate_revisited_models", "evaluate_gldv2_models", "compatibility_matrix", "headline",
           "headline_value", "extract_features"]
