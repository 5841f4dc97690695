"""Retrieval metrics and compatibility scores, pure numpy (docs/evaluation.md).

Conventions used throughout this module:

- A *ranking* is an int array of database indices (0-based), best match first. A ranking
  matrix ``ranks`` has shape (n_db, n_q): one column per query (revisitop's layout).
- *Positions* are 0-based unless a name or docstring says 1-based (mP@k works on 1-based ones).
- Junk images are deleted from a ranking before scoring, so every positive after a junk image
  moves up by one position. An index listed both as positive and as junk counts as positive.
- mAP and mP@k are returned as fractions in [0, 1]; the compatibility scores take and return
  values x100, like the paper's table.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_LEVEL_LETTER = {"easy": "E", "medium": "M", "hard": "H"}


def compute_ap(ranks_of_positives: np.ndarray, n_pos: int) -> float:
    """Trapezoidal average precision of one query (revisitop's definition).

    ``ranks_of_positives`` (m,) holds the 0-based junk-free positions of the retrieved positives
    (sorted here). ``n_pos`` is the number of positives of the query; positives that never
    appear in the ranking (m < n_pos) add nothing. The j-th positive (0-based) at position r adds
    ((j / r if r > 0 else 1) + (j + 1) / (r + 1)) / 2, and the sum is divided by ``n_pos``.
    """
    if n_pos <= 0:
        raise ValueError(f"compute_ap needs at least one positive, got n_pos={n_pos}")
    r = np.sort(np.asarray(ranks_of_positives, dtype=np.float64).ravel())
    if r.size > n_pos:
        raise ValueError(f"compute_ap got {r.size} positive positions but n_pos={n_pos}")
    j = np.arange(r.size, dtype=np.float64)
    # At r == 0 the left precision is defined as 1 (nothing precedes the first hit).
    left = np.divide(j, r, out=np.ones_like(r), where=r > 0)
    right = (j + 1.0) / (r + 1.0)
    return float(np.sum(left + right) / (2.0 * n_pos))


def _positive_positions(ranking: np.ndarray, ok: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based positions of the positives in ``ranking`` (n,) once junk entries are deleted."""
    is_pos = np.isin(ranking, ok)
    keep = ~(np.isin(ranking, junk) & ~is_pos)
    return np.flatnonzero(is_pos[keep])


def compute_map(
    ranks: np.ndarray,
    gnd: Sequence[Mapping[str, np.ndarray]],
    kappas: Sequence[int] = (1, 5, 10),
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """mAP and mean precision at k over queries, with revisitop's conventions.

    ``ranks`` (n_rank, n_q): column i ranks the database for query i (usually a full ranking,
    n_rank = n_db; a truncated one simply never retrieves the missing positives).
    ``gnd``: n_q dicts with ``'ok'`` (positive db indices) and optionally ``'junk'`` (db indices
    ignored), each possibly empty. Junk is removed from the ranking before scoring.

    P@k of a query: pos = 1-based junk-free positions of its positives, kq = min(max(pos), k),
    P@k = |{pos <= kq}| / kq. A query whose positives are all missing from a truncated ranking has
    AP 0 and P@k 0.

    Returns ``(map, aps, mpr, prs)``: ``aps`` (n_q,) per-query AP, ``prs`` (n_q, len(kappas))
    per-query P@k, ``map`` and ``mpr`` (len(kappas),) their means over the queries that have at
    least one positive. Queries with no positive are excluded: their ``aps`` entry and ``prs``
    row are NaN (and ``map``/``mpr`` are NaN if no query has a positive).
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be 2-D (n_db, n_q), got shape {ranks.shape}")
    n_q = ranks.shape[1]
    if len(gnd) != n_q:
        raise ValueError(f"ranks has {n_q} query columns but gnd has {len(gnd)} entries")
    kappas = np.asarray(kappas, dtype=np.int64)
    aps = np.full(n_q, np.nan)
    prs = np.full((n_q, kappas.size), np.nan)
    for i, g in enumerate(gnd):
        ok = np.unique(np.asarray(g["ok"], dtype=np.int64))
        if ok.size == 0:
            continue
        junk = np.asarray(g.get("junk", ()), dtype=np.int64)
        pos = _positive_positions(ranks[:, i], ok, junk)
        aps[i] = compute_ap(pos, ok.size)
        if pos.size == 0:
            prs[i] = 0.0
            continue
        pos1 = pos + 1
        kq = np.minimum(pos1[-1], kappas)
        prs[i] = (pos1[None, :] <= kq[:, None]).sum(axis=1) / kq
    valid = ~np.isnan(aps)
    if not valid.any():
        return float("nan"), aps, np.full(kappas.size, np.nan), prs
    return float(aps[valid].mean()), aps, prs[valid].mean(axis=0), prs


def compute_map_revisited(
    ranks: np.ndarray,
    protocols: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
    kappas: Sequence[int] = (1, 5, 10),
) -> dict:
    """Scores of one ranking under each protocol (``bct.data.revisited.protocol_sets``).

    ``ranks`` (n_db, n_q) as in :func:`compute_map`. Returns
    ``{'kappas': [k...], level: {'map': float, 'mp': {k: float}, 'aps': (n_q,) array}}`` for
    every level of ``protocols`` (fractions; NaN AP marks a query with no positive).
    """
    result: dict = {"kappas": [int(k) for k in kappas]}
    for level, gnd in protocols.items():
        m, aps, mpr, _ = compute_map(ranks, gnd, kappas)
        result[level] = {
            "map": m,
            "mp": {int(k): float(v) for k, v in zip(kappas, mpr)},
            "aps": aps,
        }
    return result


def percent(value) -> str:
    """A fraction as percent with 2 decimals; "n/a" for None or NaN (a score with no query to average)."""
    if value is None or np.isnan(value):
        return "n/a"
    return f"{100.0 * value:.2f}"


def format_revisited(result: Mapping) -> str:
    """One line, in percent with 2 decimals: ``E: x M: y H: z | mP@k[1, 5, 10] E: a/b/c ...``.
    A protocol under which no query has a positive prints as ``n/a``."""
    levels = [name for name in result if name != "kappas"]
    tag = {name: _LEVEL_LETTER.get(name, name) for name in levels}
    maps = " ".join(f"{tag[n]}: {percent(result[n]['map'])}" for n in levels)
    mps = " ".join(
        f"{tag[n]}: " + "/".join(percent(result[n]["mp"][k]) for k in result["kappas"])
        for n in levels
    )
    return f"{maps} | mP@k{list(result['kappas'])} {mps}"


def gldv2_ap_at_k(
    predictions: Mapping[object, Sequence],
    solution: Mapping[object, Sequence],
    k: int = 100,
) -> np.ndarray:
    """Per-query GLDv2 AP@k (fractions), one per query of ``solution`` in its order; see
    :func:`gldv2_map_at_k`, which is their mean."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if len(solution) == 0:
        raise ValueError("gldv2_map_at_k: the solution holds no query")
    aps = np.zeros(len(solution))
    for i, (qid, gt) in enumerate(solution.items()):
        gt = np.asarray(gt).ravel()
        if gt.size == 0:
            raise ValueError(f"gldv2_map_at_k: query {qid!r} has no ground-truth image")
        pred = np.asarray(predictions.get(qid, ())).ravel()[:k]
        if pred.size == 0:
            continue
        first = np.zeros(pred.size, dtype=bool)
        first[np.unique(pred, return_index=True)[1]] = True
        hit = np.isin(pred, gt) & first
        precision = np.cumsum(hit) / np.arange(1, pred.size + 1)
        aps[i] = float(precision[hit].sum()) / min(np.unique(gt).size, k)
    return aps


def gldv2_map_at_k(
    predictions: Mapping[object, Sequence],
    solution: Mapping[object, Sequence],
    k: int = 100,
) -> float:
    """GLDv2 retrieval mAP@k (the Kaggle / DELF metric), as a fraction.

    ``predictions``: query id -> ranked index ids; ``solution``: query id -> relevant index ids.
    For each query of ``solution``: AP = (1 / min(|gt|, k)) * sum of precision@i over the
    positions i <= k whose prediction is relevant. Only the first ``k`` predictions are read.
    A repeated id is counted relevant at its first occurrence only, but still occupies its
    position (this is what the official scorer does; a search never returns duplicates, so it
    only matters for hand-made submissions). The mean runs over every query of ``solution``; a
    query missing from ``predictions`` scores 0. Predictions for queries outside ``solution``
    are ignored, so one prediction dict can be scored against the public and private splits.
    """
    return sum(gldv2_ap_at_k(predictions, solution, k).tolist()) / len(solution)


def retrieval_scores(
    ids: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    self_index: np.ndarray | None = None,
    k: int = 100,
    recall_ks: Sequence[int] = (1, 5, 10),
) -> dict:
    """Per-query scores of a labelled query / gallery set (a user's own set, docs/evaluation.md).

    Unlike the revisitop functions above, ``ids`` has one ROW per query: (n_q, n_rank) gallery
    indices, best first, as :func:`bct.evaluation.search.search` returns them (a full ranking for
    mAP; a shorter one counts the positives it misses as never retrieved). ``query_labels`` (n_q,),
    ``gallery_labels`` (n_db,): the positives of query i are the gallery images with label
    ``query_labels[i]``. ``self_index`` (n_q,): the gallery index of query i's own image, or -1;
    that entry is deleted from the ranking (junk), so it is never a positive and the images after
    it move up by one position.

    With p_1 < p_2 < ... the 1-based junk-free positions of the n_pos positives of a query:

    - AP = (1 / n_pos) * sum_j j / p_j (non-interpolated; a positive that is never retrieved adds 0);
    - AP@k = (1 / min(n_pos, k)) * sum_{p_j <= k} j / p_j (the GLDv2 mAP@k of one query);
    - R@r = 1 if a positive is at a position <= r, else 0.

    Returns ``{'ap': (n_q,), 'ap_at_k': (n_q,), 'recall': (n_q, len(recall_ks)), 'n_pos': (n_q,)}``,
    the scores as fractions; a query with no positive (n_pos 0) has NaN scores.
    """
    from bct.data.retrieval_set import count_positives

    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"ids must be 2-D (n_q, n_rank), got shape {ids.shape}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    n_q = ids.shape[0]
    query_labels = np.asarray(query_labels, dtype=np.int64)
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    if query_labels.shape != (n_q,):
        raise ValueError(f"query_labels has shape {query_labels.shape}, expected ({n_q},)")
    self_index = np.full(n_q, -1, np.int64) if self_index is None else np.asarray(self_index, dtype=np.int64)
    n_pos = count_positives(query_labels, gallery_labels, self_index)
    junk = ids == self_index[:, None]
    relevant = (gallery_labels[ids] == query_labels[:, None]) & ~junk
    position = np.cumsum(~junk, axis=1)  # 1-based junk-free position of every kept entry
    hits = np.cumsum(relevant, axis=1)
    precision = np.where(relevant, hits / np.maximum(position, 1), 0.0)
    scored = n_pos > 0
    denom = np.maximum(n_pos, 1)
    ap = precision.sum(axis=1) / denom
    ap_at_k = np.where(position <= k, precision, 0.0).sum(axis=1) / np.minimum(denom, k)
    ks = np.asarray(recall_ks, dtype=np.int64)
    first = np.where(relevant.any(axis=1), np.argmax(relevant, axis=1), 0)
    first_pos = np.where(relevant.any(axis=1), position[np.arange(n_q), first], np.iinfo(np.int64).max)
    recall = (first_pos[:, None] <= ks[None, :]).astype(np.float64)
    nan = np.where(scored, 1.0, np.nan)
    return {"ap": ap * nan, "ap_at_k": ap_at_k * nan, "recall": recall * nan[:, None], "n_pos": n_pos}


def mean_retrieval_scores(per_query: Mapping, recall_ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Means of :func:`retrieval_scores` over the queries that have a positive:
    ``{'map', 'map_at_k', 'recall': {r: R@r}, 'n_scored'}`` (fractions; NaN if no query has one)."""
    scored = np.asarray(per_query["n_pos"]) > 0
    n = int(scored.sum())

    def mean(x):
        return float(np.mean(x[scored], axis=0)) if n else float("nan")

    recall = np.asarray(per_query["recall"])
    return {"map": mean(np.asarray(per_query["ap"])), "map_at_k": mean(np.asarray(per_query["ap_at_k"])),
            "recall": {int(r): (float(recall[scored, i].mean()) if n else float("nan"))
                       for i, r in enumerate(recall_ks)},
            "n_scored": n}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def meets_bct_criterion(old_self: float, new_self: float, new_cross: float) -> bool:
    """The BCT criterion on one dataset: the new model's queries search the old gallery better than
    the old model does, M(new, old) > M(old, old), and its self-test is better too, M(new, new) >
    M(old, old)."""
    return bool(new_cross > old_self and new_self > old_self)


def update_gain(old_self: float, oracle_self: float, new_cross: float) -> float:
    """BCT update gain G = (M(new, old) - M(old, old)) / (M(oracle, oracle) - M(old, old)).

    Any consistent unit (fraction or x100). 0 means no better than the old model, 1 means the
    cross-test reaches the oracle's self-test.
    """
    if oracle_self == old_self:
        raise ValueError(
            f"update gain undefined: oracle self-test equals old self-test ({oracle_self}); "
            "the oracle must differ from the old model"
        )
    return (new_cross - old_self) / (oracle_self - old_self)


def compatibility_scores(
    old_self: Mapping[str, float],
    oracle_self: Mapping[str, float],
    new_self: Mapping[str, float],
    new_cross: Mapping[str, float],
) -> dict:
    """P_up, P_comp, P_1 and the update gain of a new model (docs/evaluation.md, paper's table).

    Each argument maps dataset name -> mAP x100: the old model's self-test M(old, old), the
    oracle's self-test M(oracle, oracle), the new model's self-test M(new, new) and its
    cross-test M(new, old). Only datasets present in all four are used, in ``old_self``'s order.
    Per dataset d, with s the logistic function:
    P_up = s((new_self - oracle_self) / oracle_self),
    P_comp = s((new_cross - old_self) / (oracle_self - old_self)) = s(gain),
    P_1 = harmonic mean of P_up and P_comp.
    Returns ``{'P_up', 'P_comp', 'P_1'}`` as 100 x the mean over datasets (P_1 averages the
    per-dataset harmonic means), ``'gain'`` the mean gain (a ratio), ``'datasets'`` the names
    used and ``'per_dataset'``: name -> the same four values for that dataset.
    """
    names = [d for d in old_self if d in oracle_self and d in new_self and d in new_cross]
    if not names:
        raise ValueError(
            "compatibility_scores: no dataset is present in old_self, oracle_self, new_self "
            f"and new_cross (got {list(old_self)}, {list(oracle_self)}, {list(new_self)}, "
            f"{list(new_cross)})"
        )
    per_dataset = {}
    for d in names:
        if oracle_self[d] <= 0:
            raise ValueError(f"compatibility_scores: oracle self-test on {d} must be > 0")
        gain = update_gain(old_self[d], oracle_self[d], new_cross[d])
        p_up = float(_sigmoid((new_self[d] - oracle_self[d]) / oracle_self[d]))
        p_comp = float(_sigmoid(gain))
        p_1 = 2.0 * p_up * p_comp / (p_up + p_comp)
        per_dataset[d] = {"P_up": 100.0 * p_up, "P_comp": 100.0 * p_comp,
                          "P_1": 100.0 * p_1, "gain": gain}
    summary = {
        key: float(np.mean([per_dataset[d][key] for d in names]))
        for key in ("P_up", "P_comp", "P_1", "gain")
    }
    summary["datasets"] = names
    summary["per_dataset"] = per_dataset
    return summary


def matrix_compatibility(matrix) -> dict:
    """Multi-model compatibility of a compatibility matrix (CoReS, Biondi et al., TPAMI 2023).

    ``matrix`` (n, n), x100: M[i][j] is the retrieval mAP with the queries embedded by model i and
    the gallery by model j, models in training order (oldest first); only the lower triangle
    j <= i is read (entries above the diagonal may be NaN). With n >= 2:

    - criterion of pair (i, j), j < i: M[i][j] > M[j][j] (model i searches model j's gallery
      better than model j itself);
    - AC (Average Compatibility) = the fraction of the n(n-1)/2 pairs j < i that meet it;
    - AMA (Average Multi-model Accuracy) = the mean of the n(n+1)/2 entries j <= i.

    Returns ``{'criterion': [{'query': i, 'gallery': j, 'value': M[i][j], 'reference': M[j][j],
    'met': bool}, ...] (row by row), 'n_met', 'n_pairs', 'AC', 'AMA'}``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"matrix_compatibility needs an (n, n) matrix with n >= 2, got shape {m.shape}")
    n = m.shape[0]
    lower = m[np.tril_indices(n)]
    if np.isnan(lower).any():
        raise ValueError("matrix_compatibility: the lower triangle (j <= i) must hold no NaN")
    criterion = [{"query": i, "gallery": j, "value": float(m[i, j]), "reference": float(m[j, j]),
                  "met": bool(m[i, j] > m[j, j])} for i in range(n) for j in range(i)]
    met = sum(c["met"] for c in criterion)
    return {"criterion": criterion, "n_met": met, "n_pairs": len(criterion), "AC": met / len(criterion),
            "AMA": float(lower.mean())}


def consecutive_scores(matrices: Mapping[str, np.ndarray], oracle_self: Mapping[str, Sequence]) -> list:
    """P_up, P_comp, P_1 and gain of every consecutive pair (t - 1 -> t) of a model chain.

    ``matrices``: dataset -> (n, n) compatibility matrix x100 (see :func:`matrix_compatibility`);
    ``oracle_self``: dataset -> n values, the self-test x100 of the oracle of each generation
    (None where there is none; index 0 is never read). Pair (t - 1, t) is scored by
    :func:`compatibility_scores` with old self M[t-1][t-1], new self M[t][t], cross M[t][t-1] and the
    oracle of generation t, over the datasets that have that oracle; a pair no dataset can score is
    left out. Returns ``[{'old': t - 1, 'new': t, **compatibility_scores(...)}, ...]``.
    """
    out = []
    n = min(np.asarray(m).shape[0] for m in matrices.values())
    for t in range(1, n):
        have = [d for d in matrices if d in oracle_self and oracle_self[d][t] is not None]
        if not have:
            continue
        m = {d: np.asarray(matrices[d], dtype=np.float64) for d in have}
        scores = compatibility_scores({d: float(m[d][t - 1, t - 1]) for d in have},
                                      {d: float(oracle_self[d][t]) for d in have},
                                      {d: float(m[d][t, t]) for d in have}, {d: float(m[d][t, t - 1]) for d in have})
        out.append({"old": t - 1, "new": t, **scores})
    return out
