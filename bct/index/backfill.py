"""Backfill, rollback and prune: changing which model serves the rows of an index, step by step,
resumable after a kill at any moment (docs/deploying.md, "Backfill").

A backfill re-embeds rows with a new model in an order (bct.index.orders), a number or fraction of
rows at a time or until done, committing every `step_rows` rows through the journal
(bct.index.journal). The order is saved in plans/ when the backfill of a model first starts, so a
rerun continues it; `fraction=F` means "until round(F x N) rows are the new model's", which is how
the evaluation's partial-backfill curve counts. Rows whose new vectors are still stored (a backfill
rolled back) are restored without embedding them again. With no order given, a model whose space a
FastFill transformation filled (bct.index.transform) goes in the `uncertainty` order, any other in
`random`.

A BT2 model (meta "compatible_dims") backfills an index of its compatible size with the compatible
part of its embeddings (first compatible_dims columns, L2-normalised again), as the evaluation's
partial backfill keeps the old row size; its full embedding needs an index built with it.
"""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bct.index.build import finite_rows
from bct.index.models import check_compatible, describe
from bct.index.orders import ORDERS, plan_order
from bct.utils.errors import BadInputError

MAX_CODE = np.iinfo(np.int16).max


def _bar(total: int, desc: str, progress):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="row", leave=False, dynamic_ncols=True,
                disable=None if progress is None else not progress)


def _register(index, info, force: bool, action: str = "backfill") -> int:
    """The code of model `info` in the index's models table, adding it (with its lineage) if new;
    refuses a model that may not serve beside the rows' current models."""
    table = index.models()
    counts = index.store.counts()
    serving = [m for m in table if m.code in counts and m.digest != info.digest]
    check_compatible(info, serving, force, action=action)
    for m in table:
        if m.digest == info.digest:
            return m.code
    info.code = max(m.code for m in table) + 1
    if info.code > MAX_CODE:
        raise BadInputError(f"index {index.path} already records {len(table)} models; build a new index")
    from bct.utils.flock import now
    index.store.add_model(dict(info.entry(), added=now()))
    return info.code


def uncertainty_key(code: int) -> str:
    """Where a transformation's entry `code` keeps its rows' uncertainties (Backend.save_values)."""
    return f"uncertainty-{code}"


def _transformed_into(index, info) -> list:
    """Transformation entries whose rows are estimates of model `info`'s embeddings."""
    return [m for m in index.models() if m.space and m.space == info.home]


def _uncertainty(index, info):
    """(N,) float64: the uncertainty each row's transformation gave it, +inf for rows that no
    transformation into `info`'s space serves (an older model's rows: least certain of all), or None
    when there is no such transformation."""
    entries = _transformed_into(index, info)
    if not entries:
        return None
    tags = np.asarray(index.store.tags())
    out = np.full(index.n, np.inf)
    for m in entries:
        values = index.store.load_values(uncertainty_key(m.code), index.n)
        if values is not None:
            mine = (tags == m.code) & np.isfinite(values)
            out[mine] = values[mine]
    return out


def _resolve_order(index, info, order: str) -> str:
    """The order asked for, or with none: uncertainty while rows transformed into this model's space
    are served, else random."""
    if order == "uncertainty" and not _transformed_into(index, info):
        raise BadInputError(f"backfill: --order uncertainty reads the uncertainties of rows transformed into the space "
                            f"of {info.tag}; the index {index.path} has none (run `python -m bct.tools.index "
                            f"transform` with a FastFill transformation to this model first)")
    if order:
        return order
    transformed = _transformed_into(index, info)
    if not transformed:  # no count needed (a count is a scan on some backends)
        return "random"
    counts = index.store.counts()
    return "uncertainty" if any(counts.get(m.code) for m in transformed) else "random"


def _plan(index, info, code: int, order: str, seed: int) -> np.ndarray:
    uncertainty = _uncertainty(index, info) if order == "uncertainty" else None
    key = f"{code}-{order}-" + ("t" + ".".join(str(m.code) for m in _transformed_into(index, info))
                                if order == "uncertainty" else str(seed))
    plan = index.store.load_plan(key, index.n)
    if plan is None:
        # Only the distinct order reads the vectors; the others need the row count alone.
        vectors = index.store.vectors() if order == "distinct" else np.empty((index.n, 0), np.float32)
        plan = plan_order(order, vectors, seed, uncertainty=uncertainty)
        index.store.save_plan(key, plan)
    return plan


def commit_steps(store, rows, code: int, step: int, bar, vectors_of) -> None:
    """Commit `rows` to model `code` `step` rows at a time, each step's vectors from vectors_of(part)."""
    for s in range(0, len(rows), max(1, step)):
        part = rows[s:s + step]
        store.commit(part, code, vectors_of(part))
        bar.update(len(part))


def fit_rows(vectors, dim: int):
    """Vectors at the index's row size `dim`: a BT2 model's compatible part (the first `dim` columns,
    L2-normalised again) when its embedding is wider (_check_size allowed it), unchanged otherwise."""
    if vectors.shape[1] == dim:
        return vectors
    from bct.models.build import compatible_part
    return compatible_part(vectors, {"emb_dim": vectors.shape[1], "compatible_dims": dim})


def _check_size(index, info, action: str) -> None:
    if index.dim not in info.sizes():
        raise BadInputError(f"{action}: model {info.tag} embeds in {info.emb_dim} dimensions"
                            + (f" (compatible part {info.compatible_dims})" if info.compatible_dims else "")
                            + f" but the index {index.path} holds {index.dim}-dimensional rows")


def _image_root(index, root: str, list_path: str) -> str:
    """The folder the index ids are relative to; a given list must hold exactly the index's ids."""
    gallery = index.manifest.get("gallery", {})
    root = root or gallery.get("root", "")
    if list_path:
        from bct.data.lists import read_image_list
        ids, _ = read_image_list(list_path, root)
        if len(ids) != index.n:
            raise BadInputError(f"{list_path} has {len(ids)} images but the index {index.path} has {index.n} rows; "
                                f"give the list the index was built from")
        ours = index.ids(range(index.n))
        for i, (a, b) in enumerate(zip(ids, ours)):
            if a != b:
                raise BadInputError(f"{list_path}:{i + 1}: {a} but row {i} of the index is {b}; give the list the "
                                    f"index was built from")
    if not root or not os.path.isdir(root):
        raise BadInputError(f"image folder {root or '(none recorded)'} of the index {index.path} does not exist; "
                            f"give the folder its ids are relative to (--root)")
    return root


def backfill(index, model, *, order: str = "", seed: int = 0, rows: int = None, fraction: float = None,
             batch_size: int = 64, workers: int = 2, device="cpu", root: str = "", list_path: str = "",
             step_rows: int = 0, force: bool = False, name: str = "", input_size: int = 0, resize: str = "",
             amp: bool = True, progress=None) -> dict:
    """Re-embed rows of `index` with `model` (checkpoint path or bct.load_model model), in `order`
    (default: uncertainty after `index transform` into this model's space, else random).

    rows=N re-embeds at most N more rows; fraction=F continues until round(F x N) rows are the new
    model's; neither: every row. Returns {"model", "order", "done", "reused", "rows_of_model",
    "fraction", "seconds", "rows_per_s"}.
    """
    if rows is not None and fraction is not None:
        raise BadInputError("backfill: give --rows or --fraction, not both")
    if rows is not None and (isinstance(rows, bool) or int(rows) != rows or rows < 0):
        raise BadInputError(f"backfill: --rows must be a whole number >= 0, got {rows!r}")
    if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
        raise BadInputError(f"backfill: --fraction must be in [0, 1], got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInputError(f"backfill: --seed must be a whole number >= 0, got {seed!r}")
    if order and order not in ORDERS:
        raise BadInputError(f"backfill: --order {order!r} is not a backfill order; choose one of {', '.join(ORDERS)}")
    if batch_size <= 0:
        raise BadInputError(f"backfill: --batch-size must be positive, got {batch_size}")
    from bct.utils.comm import get_world_size
    if get_world_size() > 1:
        raise BadInputError("backfill runs as one process (its commits are serial); start it without torchrun")
    with index.store.writer("backfill") as store:
        info, ckpt = model_info(index, model, name)
        info.input_size, info.resize = int(input_size or info.input_size), resize or info.resize
        _check_size(index, info, "backfill")
        order = _resolve_order(index, info, order)
        known = [m for m in index.models() if m.digest == info.digest]
        if known and (known[0].input_size, known[0].resize) != (info.input_size, info.resize):
            raise BadInputError(f"backfill: {known[0].tag} embedded rows of this index at input size "
                                f"{known[0].input_size} ({known[0].resize}), not {info.input_size} ({info.resize}); "
                                f"all its rows must be embedded the same way")
        code = _register(index, info, force)
        tag = index.model(code).tag
        plan = _plan(index, info, code, order, seed)
        is_new = np.asarray(store.tags()) == code
        todo = plan[~is_new[plan]]
        quota = len(todo) if rows is None and fraction is None else \
            int(rows) if rows is not None else max(0, round(float(fraction) * index.n) - int(is_new.sum()))
        todo = todo[:quota]
        start = time.time()
        have, _ = store.stored(code, todo, with_vectors=False)
        reuse, embed = todo[have], todo[~have]
        step = max(1, step_rows or max(1024, batch_size))
        bar = _bar(len(todo), f"backfill {tag}", progress)
        try:
            commit_steps(store, reuse, code, step, bar, lambda part: store.stored(code, part)[1])
            if len(embed):
                net = _network(model, ckpt, info, device)
                _embed_rows(index, store, net, code, embed, _image_root(index, root, list_path), batch_size,
                            step, workers, device, amp, bar)
        finally:
            bar.close()
        seconds = time.time() - start
        now_rows = int(store.counts().get(code, 0))
    return {"model": tag, "order": order, "seed": seed, "done": int(len(todo)), "reused": int(len(reuse)),
            "rows_of_model": now_rows, "fraction": now_rows / index.n, "seconds": seconds,
            "rows_per_s": len(embed) / seconds if seconds > 0 and len(embed) else 0.0}


def model_info(index, model, name: str = "", action: str = "backfill"):
    """(ModelInfo, checkpoint dict or None) of a backfill's or transform's model; a checkpoint the index
    already knows (same digest) is not read again."""
    if not isinstance(model, (str, os.PathLike)):
        return describe(model, name, table=index.models()), None
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise BadInputError(f"{action}: model checkpoint {path} does not exist")
    from bct.utils.fileio import file_digest
    digest = file_digest(path)
    for m in index.models():
        if m.digest == digest:
            return m, None
    from bct.models.loading import load_checkpoint
    ckpt = load_checkpoint(path, "--model")
    return describe(path, name, table=index.models(), checkpoint=ckpt), ckpt


def _network(model, ckpt, info, device):
    """The model to embed with, fed as `info` says (input size, resize mode)."""
    from bct.models.loading import load_model

    if isinstance(model, (str, os.PathLike)):
        return load_model(os.fspath(model), device, info.input_size, info.resize, checkpoint=ckpt)
    if (model.input_size, model.resize) != (info.input_size, info.resize):
        from bct.data.transforms import build_transform
        model.input_size, model.resize = info.input_size, info.resize
        model.transform = build_transform(model.input_size, model.resize)
    return model


def _embed_rows(index, store, net, code, rows, root, batch_size, step, workers, device, amp, bar) -> None:
    from bct.index.embed import embed_batches, image_dataset

    skip_bad = bool(index.manifest.get("build", {}).get("settings", {}).get("skip_bad", False))
    dataset = image_dataset(root, index.ids(range(index.n)), net, skip_bad=skip_bad, list_name="the index ids")
    batch = 1 if net.resize == "aspect" else batch_size
    batches = [rows[s:s + batch] for s in range(0, len(rows), batch)]
    got_rows, got_vecs, pending = [], [], 0
    # Each step is committed in one background thread while the next step's images are embedded: the
    # commits stay one at a time and in order (a step is handed over only once the one before it is
    # committed), so a kill leaves exactly what the serial loop would; an error waits for the commit
    # in flight before the writer lets go.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bct-commit") as pool:
        flight = None

        def hand_over(part_rows, part_vecs):
            nonlocal flight
            if flight is not None:
                flight.result()
            flight = pool.submit(store.commit, part_rows, code, part_vecs)
            flight.add_done_callback(lambda f, n=len(part_rows): bar.update(n) if f.exception() is None else None)

        try:
            for index_rows, feats, _ in embed_batches(net, dataset, batches, device, workers, amp):
                finite_rows(feats, f"backfill: model {net.source_path if hasattr(net, 'source_path') else ''} gave",
                            lambda index_rows=index_rows: index.ids(index_rows))
                got_rows.append(index_rows)
                got_vecs.append(fit_rows(feats, index.dim))
                pending += len(index_rows)
                if pending >= step:
                    hand_over(np.concatenate(got_rows), np.concatenate(got_vecs))
                    got_rows, got_vecs, pending = [], [], 0
            if pending:
                hand_over(np.concatenate(got_rows), np.concatenate(got_vecs))
        finally:
            if flight is not None:
                flight.result()


def _default_rollback_target(index, counts: dict) -> int:
    serving = [c for c, n in counts.items() if n]
    newest = max(serving)
    candidates = [m.code for m in index.models() if m.code < newest and
                  (counts.get(m.code) or index.store.stored_rows(m.code))]
    if not candidates:
        raise BadInputError(f"rollback: every row of {index.path} is served by its first model or by no older model "
                            f"with stored rows; nothing to roll back")
    return max(candidates)


def rollback(index, to=None, step_rows: int = 4096, progress=None) -> dict:
    """Serve again model `to`'s stored vectors (default: the model before the newest serving one)
    on every row it embedded before. Returns {"model", "restored", "not_restorable", "seconds"}."""
    start = time.time()
    with index.store.writer("rollback") as store:
        counts = store.counts()
        target = index.model(to) if to is not None else index.model(_default_rollback_target(index, counts))
        other = np.flatnonzero(np.asarray(store.tags()) != target.code).astype(np.int64)
        have, _ = store.stored(target.code, other, with_vectors=False)
        if other.size and not have.any():
            raise BadInputError(f"rollback: the index holds no stored rows of {target.tag} (never replaced, or "
                                f"deleted by `index prune`); backfill with its checkpoint instead")
        rows, lost = other[have], int((~have).sum())
        bar = _bar(len(rows), f"rollback to {target.tag}", progress)
        try:
            commit_steps(store, rows, target.code, step_rows, bar, lambda part: store.stored(target.code, part)[1])
        finally:
            bar.close()
    return {"model": target.tag, "restored": int(len(rows)), "not_restorable": lost, "seconds": time.time() - start}


def prune(index, model=None) -> dict:
    """Delete stored vectors: of `model`, or (default) of every model that serves no row and every
    store that only repeats rows its model serves now. Rolling back to a pruned model is then
    impossible (a backfill with its checkpoint re-embeds)."""
    with index.store.writer("prune") as store:  # finishes an interrupted step first
        counts = store.counts()
        if model is not None:
            targets = [index.model(model)]
        else:
            targets = [m for m in index.models() if m.code not in counts or not store.stored_rows(m.code)]
        pruned, freed = [], 0
        for m in targets:
            got = store.prune(m.code)
            if got is not None:
                pruned.append(m.tag)
                freed += got
    return {"pruned": pruned, "freed_bytes": freed}
