"""Backfill orders: which rows the new model re-embeds first (docs/deploying.md, "Orders").

- ``random``: ``np.random.default_rng(seed).permutation(N)``, the per-image order of the evaluation's
  partial backfill (bct.evaluation.report.partial_backfill_gallery with EVAL.BACKFILL_SEED): after
  round(F x N) rows an index holds exactly the gallery the evaluation scores at ratio F.
- ``distinct``: the rows whose current (old) embedding is least similar to the mean embedding of the
  gallery first, ties by row. Rows near the mean resemble many images; re-embedded early, their
  higher new-to-new similarities push them above the old rows that are relevant to many queries.
  Rows far from the mean are relevant to few queries and are re-embedded first. On the synthetic
  sets this order gives a larger area under the backfill curve than random
  (docs/benchmarks.md); it costs one pass over the vectors (O(N x D)).
- ``uncertainty``: FastFill's order (docs/method.md): the rows whose transformed embedding is least
  certain (largest predicted sigma^2 of bct.models.transformation) first, ties by row. It needs the
  uncertainties (``uncertainty=``), which the transformation gives with the transformed rows.
"""
import numpy as np

from bct.utils.errors import BadInputError

ORDERS = ("random", "distinct", "uncertainty")
_BLOCK = 1 << 16


def plan_order(name: str, vectors, seed: int = 0, uncertainty=None) -> np.ndarray:
    """A permutation (N,) int64 of the rows of `vectors` (N, D), in the order `name`; `uncertainty` (N,)
    is what the 'uncertainty' order reads."""
    n = vectors.shape[0]
    if name == "uncertainty":
        if uncertainty is None or len(uncertainty) != n:
            raise BadInputError(f"--order uncertainty needs one uncertainty per row ({n} rows); only a gallery "
                                "transformed by a FastFill transformation has them")
        return np.argsort(-np.asarray(uncertainty, dtype=np.float64), kind="stable").astype(np.int64)
    if name == "random":
        return np.random.default_rng(seed).permutation(n).astype(np.int64)
    if name == "distinct":
        mean = np.zeros(vectors.shape[1], dtype=np.float64)
        for s in range(0, n, _BLOCK):
            mean += np.asarray(vectors[s:s + _BLOCK], dtype=np.float64).sum(0)
        mean = (mean / max(n, 1)).astype(np.float32)
        sim = np.concatenate([np.asarray(vectors[s:s + _BLOCK]) @ mean for s in range(0, n, _BLOCK)]) \
            if n else np.zeros(0, np.float32)
        return np.argsort(sim, kind="stable").astype(np.int64)
    raise BadInputError(f"--order {name!r} is not a backfill order; choose one of {', '.join(ORDERS)}")
