"""The paper's presentation of results (docs/evaluation.md).

The compatibility table (self / cross per dataset, P_up, P_comp, P_1, gain), the
partial-backfill curves and the per-image partially backfilled gallery they are measured on.

All mAP values here are x100, as in the paper's table.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from bct.evaluation.metrics import compatibility_scores

# The paper's titles of the built-in sets; tools read a set's title from its BenchmarkSet
# (bct.evaluation.sets), which takes it from here (any other set is titled by its name).
DATASET_TITLES = {"rparis6k": "RParis", "roxford5k": "ROxford", "gldv2": "GLDv2"}


def set_title(name: str) -> str:
    """The title of a set in tables when no built set is at hand (the built set's ``title`` otherwise)."""
    return DATASET_TITLES.get(name, name)
_MISSING = "—"


def _fmt(value) -> str:
    return _MISSING if value is None else f"{value:.2f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(
    rows: Sequence[Mapping],
    datasets: Sequence[str],
    old_self: Mapping[str, float],
    oracle_self: Mapping[str, float],
    titles: Mapping[str, str] | None = None,
) -> str:
    """Markdown table laid out like the paper's table (README.md).

    ``rows``: one dict per new model, ``{'method': str, 'self': {ds: mAP}, 'cross': {ds: mAP}}``
    (self = M(new, new), cross = M(new, old), x100). ``datasets``: column order (names such as
    ``rparis6k``, ``roxford5k``, ``gldv2`` get the paper's titles). Each dataset cell reads
    ``self / cross``; then P_up, P_comp, P_1 and the mean update gain (in percent) computed by
    :func:`compatibility_scores` over the listed datasets the row has. The first two rows are the
    old model and the oracle (self-test only). A missing value prints as "—". ``titles``: column
    titles by dataset name (e.g. ``{name: bset.title}``), else the paper's titles or the name.
    """
    titles = {**DATASET_TITLES, **(titles or {})}
    header = ["Method"] + [f"{titles.get(d, d)} (self / cross)" for d in datasets]
    header += ["P_up", "P_comp", "P_1", "Gain %"]
    lines = [_row(header), _row(["---"] * len(header))]
    blank_scores = [_MISSING] * 4
    for name, values in (("Old", old_self), ("Oracle", oracle_self)):
        cells = [f"{_fmt(values.get(d))} / {_MISSING}" for d in datasets]
        lines.append(_row([name] + cells + blank_scores))
    old = {d: old_self[d] for d in datasets if d in old_self}
    for r in rows:
        self_, cross = r.get("self", {}), r.get("cross", {})
        cells = [f"{_fmt(self_.get(d))} / {_fmt(cross.get(d))}" for d in datasets]
        scores = blank_scores
        if any(d in oracle_self and d in self_ and d in cross for d in old):
            s = compatibility_scores(old, oracle_self, self_, cross)
            scores = [_fmt(s["P_up"]), _fmt(s["P_comp"]), _fmt(s["P_1"]), _fmt(100.0 * s["gain"])]
        lines.append(_row([str(r["method"])] + cells + scores))
    return "\n".join(lines) + "\n"


def backfill_curve_table(curves: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """Markdown table of partial-backfill curves: method -> [(ratio, mAP x100), ...].

    One column per ratio seen in any curve (as a percentage of the gallery re-embedded), one
    row per method; a ratio a method lacks prints as "—".
    """
    ratios = sorted({float(ratio) for curve in curves.values() for ratio, _ in curve})
    header = ["Method"] + [f"{100.0 * ratio:g}%" for ratio in ratios]
    lines = [_row(header), _row(["---"] * len(header))]
    for method, curve in curves.items():
        by_ratio = {float(ratio): value for ratio, value in curve}
        lines.append(_row([str(method)] + [_fmt(by_ratio.get(ratio)) for ratio in ratios]))
    return "\n".join(lines) + "\n"


def partial_backfill_gallery(
    old_gallery: np.ndarray,
    new_gallery: np.ndarray,
    ratio: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery with a fraction of its images re-embedded by the new model (hot refresh).

    ``old_gallery`` and ``new_gallery`` (n_db, d) hold the same images in the same order. The
    images are visited in the order of ``np.random.default_rng(seed).permutation(n_db)``; the
    first ``round(ratio * n_db)`` (Python rounding, half to even) take their new feature. For a
    fixed seed the refreshed sets are nested in ``ratio``; ratio 0 gives the old gallery, 1 the
    new one. Returns ``mixed`` (n_db, d) and ``refreshed_mask`` (n_db,) bool.
    """
    old_gallery = np.asarray(old_gallery)
    new_gallery = np.asarray(new_gallery)
    if old_gallery.shape != new_gallery.shape or old_gallery.ndim != 2:
        raise ValueError(f"partial_backfill_gallery: old gallery {old_gallery.shape} and new "
                         f"gallery {new_gallery.shape} must be (n_db, d) arrays of equal shape")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"partial_backfill_gallery: ratio must be in [0, 1], got {ratio}")
    n_db = old_gallery.shape[0]
    order = np.random.default_rng(seed).permutation(n_db)
    refreshed = np.zeros(n_db, dtype=bool)
    refreshed[order[:round(ratio * n_db)]] = True
    mixed = np.where(refreshed[:, None], new_gallery, old_gallery)
    return mixed, refreshed


def matrix_table(names: Sequence[str], matrix) -> str:
    """Markdown table of a compatibility matrix (n, n) x100: one row per query model, one column per
    gallery model (both oldest first), the lower triangle filled. An off-diagonal cell that fails the
    criterion M[i][j] > M[j][j] is marked ✗, one that meets it ✓."""
    m = np.asarray(matrix, dtype=np.float64)
    lines = [_row(["query \\ gallery"] + list(names)), _row(["---"] * (len(names) + 1))]
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            if j > i:
                cells.append("")
            elif j == i:
                cells.append(f"**{_fmt(m[i, j])}**")
            else:
                cells.append(f"{_fmt(m[i, j])} {'✓' if m[i, j] > m[j, j] else '✗'}")
        lines.append(_row([name] + cells))
    return "\n".join(lines) + "\n"
