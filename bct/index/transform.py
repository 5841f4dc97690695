"""FastFill's first step on an index: serve h(old vector) on every row of the old model, without
reading an image (docs/deploying.md, "A FastFill cut-over").

h is a trained FastFillTransform (bct.models.transformation; bct.pipeline.fastfill trains it into
transformation.pth with its record transformation.json). Its record names the old and the new
checkpoints by digest: the old one must be a model of the index whose rows it reads, the new one the
--model given, and its input size the index's row size.

The transformed rows get their own entry in the models table: named OLD-to-NEW, known by the
transformation file's digest, with the old model's lineage and `space` = the new model's digest, so
a query of the new model (or of a later model trained against it) may search them and the old
model may not. Each row's predicted uncertainty sigma^2 is kept through the backend
(Backend.save_values, key bct.index.backfill.uncertainty_key) before any row changes; a backfill
with the new model then re-embeds the least certain rows first (its default order after a
transform).

The rows change through the backfill's commit path (Backend.commit, step_rows at a time), so a
transform killed at any moment and rerun leaves every row exactly once, and `rollback` brings the
old vectors back bit for bit.
"""
import os
import time

import numpy as np

from bct.index.backfill import _bar, _check_size, _register, commit_steps, fit_rows, model_info, uncertainty_key
from bct.index.build import finite_rows
from bct.index.models import ModelInfo
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest


def _old_model(index, record: dict, path: str) -> ModelInfo:
    """The index's model whose vectors the transformation reads (its record's old digest)."""
    digest = str(record["key"]["old"])
    found = [m for m in index.models() if m.digest == digest]
    if not found:
        raise BadInputError(f"transform: --transformation {path} maps the old model {digest[:12]}, which is not a model "
                            f"of the index {index.path} ({', '.join(m.tag for m in index.models())}); use the "
                            f"transformation trained from this index's old model")
    return found[0]


def _check(index, h, record: dict, new: ModelInfo, path: str) -> ModelInfo:
    """One line unless the transformation maps this index's old model into `new`'s space at the
    index's row size; returns the old model's entry."""
    want = str(record["key"]["new"])
    if want != new.digest:
        raise BadInputError(f"transform: --transformation {path} was trained for the new model {want[:12]} but --model "
                            f"{new.tag} is another checkpoint; give the pair it was trained on")
    old = _old_model(index, record, path)
    dims = h.dims
    if dims["old_dim"] != index.dim:
        raise BadInputError(f"transform: --transformation {path} reads {dims['old_dim']}-dimensional vectors but the "
                            f"index {index.path} holds {index.dim}-dimensional rows")
    if dims["new_dim"] != new.emb_dim:
        raise BadInputError(f"transform: --transformation {path} gives {dims['new_dim']}-dimensional estimates but "
                            f"model {new.tag} embeds in {new.emb_dim}")
    _check_size(index, new, "transform")
    return old


def transformation_info(path: str, old: ModelInfo, new: ModelInfo) -> ModelInfo:
    """The models-table entry of rows transformed by the file `path` from `old` into `new`'s space."""
    return ModelInfo(name=f"{old.name}-to-{new.name}", digest=file_digest(path), arch="fastfill-transformation",
                     emb_dim=new.emb_dim, compatible_dims=new.compatible_dims, input_size=old.input_size,
                     resize=old.resize, path=os.path.abspath(path), old_digest=old.digest,
                     lineage=[old.digest] + [d for d in old.lineage if d != old.digest],
                     lineage_complete=old.lineage_complete, lineage_note=old.lineage_note, space=new.home)


def transform(index, transformation, model, *, step_rows: int = 4096, progress=None) -> dict:
    """Serve h(old vector) on every row that the transformation's old model serves in `index`, and
    keep each row's uncertainty. `transformation`: the transformation.pth file; `model`: the new
    checkpoint (path or bct.load_model model) it was trained for. Returns {"model" (the transformed
    rows' tag), "old", "new", "done", "rows_of_model", "fraction", "seconds", "rows_per_s"}."""
    from bct.models.transformation import load_transformation

    path = os.fspath(transformation)
    if not os.path.isfile(path):
        raise BadInputError(f"transform: --transformation {path} does not exist")
    if isinstance(step_rows, bool) or int(step_rows) != step_rows or step_rows <= 0:
        raise BadInputError(f"transform: --step-rows must be a whole number > 0, got {step_rows!r}")
    from bct.utils.comm import get_world_size
    if get_world_size() > 1:
        raise BadInputError("transform runs as one process (its commits are serial); start it without torchrun")
    h, record = load_transformation(path)
    start = time.time()
    with index.store.writer("transform") as store:
        new = model_info(index, model, action="transform")[0]
        old = _check(index, h, record, new, path)
        todo = np.flatnonzero(np.asarray(store.tags()) == old.code).astype(np.int64)

        def estimate(part):
            est, sigma2 = h.transform(store.vectors(part))
            finite_rows(np.concatenate([est, sigma2[:, None]], 1), f"transform: {path} gave", lambda: index.ids(part))
            return fit_rows(est, index.dim), sigma2

        sigma2 = np.zeros(len(todo), np.float32)
        for s in range(0, len(todo), step_rows):  # first every estimate is checked, nothing written yet
            sigma2[s:s + step_rows] = estimate(todo[s:s + step_rows])[1]
        code = _register(index, transformation_info(path, old, new), force=False, action="transform")
        # The uncertainties are kept before any row changes: rows that a killed run transformed keep theirs.
        key = uncertainty_key(code)
        kept = store.load_values(key, index.n)
        values = np.full(index.n, np.nan, np.float32) if kept is None else np.array(kept, dtype=np.float32)
        values[todo] = sigma2
        if len(todo) or kept is None:
            store.save_values(key, values)
        bar = _bar(len(todo), f"transform {old.tag} -> {new.tag}", progress)
        try:
            commit_steps(store, todo, code, step_rows, bar, lambda part: estimate(part)[0])
        finally:
            bar.close()
        now_rows = int(store.counts().get(code, 0))
    seconds = time.time() - start
    return {"model": index.model(code).tag, "old": old.tag, "new": new.tag, "done": int(len(todo)),
            "rows_of_model": now_rows, "fraction": now_rows / index.n, "seconds": seconds,
            "rows_per_s": len(todo) / seconds if seconds > 0 and len(todo) else 0.0}
