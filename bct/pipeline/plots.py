"""The figures of a comparison and of compatibility matrices. Every axis says which number it shows
(and that it is x100), a mean over seeds carries its standard deviation as error bars, legends sit
outside the axes, and the heat-maps of one figure share one colour scale."""
import numpy as np

from bct.config.methods import method_title
from bct.evaluation.report import set_title
from bct.utils.fileio import atomic_path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")


def _legend_below(fig, axes, ncol: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))


def _label(labels: dict, ds: str, field: str) -> str:
    default = set_title(ds) if field == "title" else "headline mAP"
    return (labels or {}).get(ds, {}).get(field) or default


def backfill_plot(agg: dict, methods, datasets, path: str, seeds: int, labels: dict = None) -> None:
    """Partial-backfill curves: headline mAP of new queries against the share of the gallery re-embedded."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    axes = axes[0]
    for ax, ds in zip(axes, datasets):
        for m in methods:
            curve = agg["methods"][m]["curves"][ds]
            ax.errorbar([100 * c[0] for c in curve], [c[1] for c in curve],
                        yerr=[c[2] for c in curve] if seeds > 1 else None, marker="o", capsize=3,
                        label=method_title(m))
        ax.axhline(agg["old_self"][ds][0], color="grey", ls="--", lw=1, label="old self-test")
        ax.axhline(agg["oracle_self"][ds][0], color="black", ls=":", lw=1, label="oracle self-test")
        ax.set_title(_label(labels, ds, "title"))
        ax.set_xlabel("% of the gallery re-embedded")
        ax.set_ylabel(f"{_label(labels, ds, 'headline_name')} x100 (new queries)")
    fig.suptitle("Partial backfill" + (f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""))
    _legend_below(fig, axes, len(methods) + 2)
    _save(fig, path)
    plt.close(fig)


def self_cross_plot(agg: dict, methods, datasets, path: str, seeds: int, labels: dict = None) -> None:
    """Self-test and cross-test bars of every method beside the old model's and the oracle's self-tests."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    axes = axes[0]
    x = np.arange(len(methods))
    for ax, ds in zip(axes, datasets):
        for offset, part, label in ((-0.2, "self", "self-test M(new, new)"), (0.2, "cross", "cross-test M(new, old)")):
            means = [agg["methods"][m][part][ds][0] for m in methods]
            errs = [agg["methods"][m][part][ds][1] for m in methods] if seeds > 1 else None
            ax.bar(x + offset, means, 0.4, yerr=errs, capsize=3 if errs else 0, label=label)
        old = agg["old_self"][ds][0]
        ax.axhline(old, color="grey", ls="--", lw=1, label="old self-test M(old, old)")
        ax.axhline(agg["oracle_self"][ds][0], color="black", ls=":", lw=1, label="oracle self-test")
        # The criterion's margin: the cross-test over the old self-test (a method's own old model's,
        # marked *, when it trains one), written above each cross bar.
        for i, m in enumerate(methods):
            cross = agg["methods"][m]["cross"][ds]
            own = agg["methods"][m].get("own_old_self", {}).get(ds)
            ax.annotate(f"{cross[0] - (own[0] if own else old):+.1f}{'*' if own else ''}", (i + 0.2, cross[0] + (cross[1] if seeds > 1 else 0)),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [method_title(m) for m in methods], rotation=30, fontsize=8)
        ax.set_title(_label(labels, ds, "title"))
        ax.set_ylabel(f"{_label(labels, ds, 'headline_name')} x100")
    fig.suptitle("Self-test and cross-test; above the cross bars: cross-test minus old self-test "
                 "(* its own old model's)" +
                 (f" (mean ± std over {seeds} seeds)" if seeds > 1 else ""), fontsize=10)
    _legend_below(fig, axes, 4)
    _save(fig, path)
    plt.close(fig)


def matrix_heatmaps(panels, path: str) -> None:
    """A PNG grid of compatibility-matrix heat-maps: ``panels`` is a list of rows, each a list of
    ``{'title', 'names', 'matrix'}`` (matrix (n, n) x100, lower triangle read). Every panel uses the
    same colour scale (one colour bar); each cell shows its value; a red frame marks a pair that
    fails M[i][j] > M[j][j]."""
    plt = _pyplot()
    values = [v for row in panels for p in row for i, r in enumerate(np.asarray(p["matrix"], dtype=np.float64))
              for v in r[:i + 1] if np.isfinite(v)]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 100.0)
    if vmax <= vmin:
        vmax = vmin + 1.0
    n_rows, n_cols = len(panels), max(len(row) for row in panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols + 0.8, 3.3 * n_rows), squeeze=False)
    image = None
    for r, row in enumerate(panels):
        for c in range(n_cols):
            ax = axes[r][c]
            if c >= len(row):
                ax.axis("off")
                continue
            names, m = list(row[c]["names"]), np.asarray(row[c]["matrix"], dtype=np.float64)
            n = len(names)
            shown = np.where(np.tril(np.ones((n, n), dtype=bool)), m, np.nan)
            image = ax.imshow(np.ma.masked_invalid(shown), cmap="viridis", vmin=vmin, vmax=vmax)
            for i in range(n):
                for j in range(i + 1):
                    ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=8,
                            color="black" if image.norm(m[i, j]) > 0.5 else "white")
                    if j < i and not m[i, j] > m[j, j]:
                        ax.add_patch(plt.Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="red", lw=2))
            ax.set_xticks(range(n), names, fontsize=7, rotation=30)
            ax.set_yticks(range(n), names, fontsize=7)
            ax.set_xlabel("gallery model", fontsize=8)
            ax.set_ylabel("query model", fontsize=8)
            ax.set_title(row[c]["title"], fontsize=9)
    fig.suptitle("Compatibility matrices (headline mAP x100, one colour scale; red frame: fails M[i][j] > M[j][j])",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes((0.92, 0.15, 0.015, 0.7)))
        bar.set_label("mAP x100")
    _save(fig, path)
    plt.close(fig)
