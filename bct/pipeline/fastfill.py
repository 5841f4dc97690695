"""FastFill (Jaeckle et al., ICLR 2023) in the comparison: train the transformation h(old embedding) ->
(new embedding, uncertainty) once the new model is trained, then measure the partial backfill of a
transformed gallery in three orders (random, distinct, uncertainty) by the area under its curve.

The transformation trains on the embeddings that both models give the new training list (TRAIN.LIST_FILE,
at the evaluation's preprocessing), with bct.losses.fastfill.fastfill_loss, Adam at FASTFILL.BASE_LR for
FASTFILL.EPOCHS passes of batches of 256. A trained one is kept as <folder>/transformation.pth with a
record keyed by the FASTFILL settings, the seed and the digests of both checkpoints and of the list,
and reused when that key matches.
"""
import json
import os

import numpy as np
import torch

from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest

BATCH = 256


def transformation_key(cfg, old_path: str, new_path: str) -> dict:
    """What a trained transformation is keyed by: the FASTFILL settings, the seed, the digests of both
    checkpoints and of the training list, and the evaluation input size."""
    return {"fastfill": {k: cfg.FASTFILL[k] for k in cfg.FASTFILL}, "seed": cfg.SEED,
            "old": file_digest(old_path), "new": file_digest(new_path), "list": file_digest(cfg.TRAIN.LIST_FILE),
            "eval_input_size": cfg.EVAL.INPUT_SIZE}


def _held_key(record: str):
    """The key a record file holds, or None when it is unreadable."""
    try:
        with open(record) as f:
            return json.load(f).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def train_transformation(cfg, old_path: str, new_path: str, folder: str, device="cpu", logger=None,
                         refuse_flag: str = ""):
    """The transformation of the (old, new) checkpoints, trained into ``folder`` or reused from it.
    ``folder`` holding the transformation of another key is trained over, or, with ``refuse_flag`` (the
    flag that named the folder), refused in one line."""
    from bct.data.lists import read_image_list
    from bct.evaluation.extract import embed_images
    from bct.losses.fastfill import fastfill_loss
    from bct.models.transformation import RECORD, WEIGHTS, FastFillTransform, load_transformation, save_transformation
    from bct.models.loading import model_from_checkpoint, read_model_checkpoint

    key = transformation_key(cfg, old_path, new_path)
    weights, record = os.path.join(folder, WEIGHTS), os.path.join(folder, RECORD)
    if os.path.isfile(record):
        held = _held_key(record)
        if held == key and os.path.isfile(weights):
            if logger is not None:
                logger.info(f"[fastfill] reusing the transformation in {folder} (same models, list and settings)")
            return load_transformation(weights, "kept transformation")[0]
        if held != key and refuse_flag:
            raise BadInputError(f"{refuse_flag} {folder} holds the transformation of other models, list or settings "
                                f"({record}); give another {refuse_flag}, or delete that folder")
    old_model = model_from_checkpoint(read_model_checkpoint(old_path, "old model"), old_path, device)
    new_model = model_from_checkpoint(read_model_checkpoint(new_path, "new model"), new_path, device)
    rel, labels = read_image_list(cfg.TRAIN.LIST_FILE, cfg.TRAIN.ROOT)
    paths = [os.path.join(cfg.TRAIN.ROOT, p) for p in rel]
    old = torch.from_numpy(np.ascontiguousarray(embed_images(cfg, old_model, paths, "gallery", device)[0]))
    new = torch.from_numpy(np.ascontiguousarray(embed_images(cfg, new_model, paths, "gallery", device)[0]))
    y = torch.as_tensor(labels, dtype=torch.int64)
    class_weight = new_model.classifier.weight.detach().float().cpu()
    gen = torch.Generator().manual_seed(int(cfg.SEED))
    torch.manual_seed(int(cfg.SEED))
    h = FastFillTransform(old.shape[1], new.shape[1], cfg.FASTFILL.HIDDEN)
    opt = torch.optim.Adam(h.parameters(), lr=cfg.FASTFILL.BASE_LR)
    n = old.shape[0]
    for epoch in range(cfg.FASTFILL.EPOCHS):
        h.train()
        perm = torch.randperm(n, generator=gen)
        totals = {}
        # Batches of at least 2 rows (BatchNorm): a last row alone joins the batch before it.
        starts = [s for s in range(0, n, BATCH) if n - s >= 2 or s == 0]
        for i, s in enumerate(starts):
            idx = perm[s:starts[i + 1] if i + 1 < len(starts) else n]
            est, log_var = h(old[idx])
            out = fastfill_loss(est, log_var, new[idx], y[idx], class_weight, cfg.FASTFILL.DISC_WEIGHT)
            opt.zero_grad()
            out["loss_fastfill"].backward()
            opt.step()
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / len(starts)
        if logger is not None and (epoch + 1) % 10 == 0:
            logger.info(f"[fastfill] epoch {epoch + 1}/{cfg.FASTFILL.EPOCHS}: " +
                        ", ".join(f"{k} {v:.4f}" for k, v in totals.items()))
    save_transformation(h, folder, key)
    return h.eval()


def area(curve) -> float:
    """Area under a backfill curve [(ratio, value), ...] over its ratios (trapezoids), divided by the ratio
    span: the mean value over the backfill, in the curve's units."""
    r = np.array([c[0] for c in curve], dtype=np.float64)
    v = np.array([c[1] for c in curve], dtype=np.float64)
    span = r[-1] - r[0]
    return float(((v[1:] + v[:-1]) / 2 * np.diff(r)).sum() / span) if span > 0 else float(v.mean())


def backfill_orders(cfg, bset, old_model, new_model, transform, device="cpu", orders=("random", "distinct", "uncertainty"),
                    digests: dict = None) -> dict:
    """FastFill's partial backfill on ``bset``: the old gallery transformed by ``transform``, then refreshed
    with the new model's rows in each order, at EVAL.BACKFILL_RATIOS. Returns {"curves": {order: [(ratio,
    headline x100)]}, "auc": {order: area}, "plain": the random curve without the transformation}."""
    from bct.evaluation.extract import embed_images
    from bct.index.orders import plan_order

    digests = digests or {}
    backend = cfg.EVAL.SEARCH_BACKEND
    key = {"old": digests.get("old", ""), "new": digests.get("new", "")} if cfg.EVAL.USE_CACHE else {}

    def gallery(model, which):
        return embed_images(cfg, model, bset.gallery.paths, "gallery", device, key.get(which, ""),
                            list_name=bset.gallery.list_name)[0]

    g_old, g_new = np.asarray(gallery(old_model, "old")), np.asarray(gallery(new_model, "new"))
    queries = {k: embed_images(cfg, new_model, g.paths, "query", device, boxes=g.boxes, list_name=g.list_name)[0]
               for k, g in bset.query_groups(cfg).items()}
    transformed, sigma2 = transform.transform(g_old)
    n = g_old.shape[0]
    ratios = [float(r) for r in cfg.EVAL.BACKFILL_RATIOS]

    def curve(start, perm):
        """[(ratio, headline)] of the gallery ``start`` with its first ratio x n rows of ``perm`` re-embedded."""
        out = []
        for ratio in ratios:
            mixed = start.copy()
            done = perm[:round(ratio * n)]
            mixed[done] = g_new[done]
            out.append((ratio, bset.headline_of(bset.score(queries, mixed, backend))))
        return out

    curves = {order: curve(transformed, plan_order(order, transformed, seed=cfg.EVAL.BACKFILL_SEED, uncertainty=sigma2))
              for order in orders}
    curves["random, no transformation"] = curve(g_old, plan_order("random", g_old, seed=cfg.EVAL.BACKFILL_SEED))
    return {"curves": curves, "auc": {o: area(c) for o, c in curves.items()}}
