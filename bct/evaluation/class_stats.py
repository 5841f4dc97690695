"""Old-class statistics of docs/method.md: per-class centres and sorted inlier radii (and angles).

Pure numpy and vectorised over samples: features are L2-normalised, each class centre is the mean
of its normalised features (NOT re-normalised, so its norm is at most 1), distances to the centre
are sorted per class and, for classes with at least 4 samples, outliers outside
[q1 - 1.5 IQR, q3 + 1.5 IQR] with q1 = d[floor(n/4)], q3 = d[floor(3n/4)] are dropped (all are
kept if none survives). The angle variant uses acos(clamp(f . c/|c|)) instead of the distance.
"""
import numpy as np


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _iqr_inliers(values: np.ndarray, labels: np.ndarray, classes: np.ndarray, starts: np.ndarray,
                 counts: np.ndarray):
    """Sort `values` within each class; return (order, keep mask in that order)."""
    order = np.lexsort((values, labels))
    v = values[order]
    q1 = v[starts + counts // 4]
    q3 = v[starts + (3 * counts) // 4]
    iqr = q3 - q1
    cls_of = np.repeat(np.arange(len(classes)), counts)
    lo, hi = (q1 - 1.5 * iqr)[cls_of], (q3 + 1.5 * iqr)[cls_of]
    keep = (v >= lo) & (v <= hi)
    keep |= (counts < 4)[cls_of]
    # A class with no survivor keeps everything.
    survivors = np.bincount(cls_of, weights=keep, minlength=len(classes))
    keep |= (survivors == 0)[cls_of]
    return order, keep, cls_of


def class_statistics(feats: np.ndarray, labels: np.ndarray):
    """feats (N, D) embeddings (normalised here), labels (N,) int class ids.

    Returns (classes (K,), centers (K, D), radius lists, angle lists): for class k the sorted inlier
    distances and the sorted inlier angles (radians), as float64 numpy arrays.
    """
    feats = _l2n(np.asarray(feats, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(classes), feats.shape[1]))
    np.add.at(sums, inverse, feats)
    centers = sums / counts[:, None]
    dist = np.linalg.norm(feats - centers[inverse], axis=1)
    unit_c = _l2n(centers)
    cos = np.clip(np.einsum("nd,nd->n", feats, unit_c[inverse]), -1.0, 1.0)
    angle = np.arccos(cos)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for values in (dist, angle):
        order, keep, cls_of = _iqr_inliers(values, labels, classes, starts, counts)
        v = values[order]
        kept_cls = cls_of[keep]
        bounds = np.searchsorted(kept_cls, np.arange(len(classes) + 1))
        kept = v[keep]
        out.append([kept[bounds[k]:bounds[k + 1]] for k in range(len(classes))])
    return classes, centers, out[0], out[1]


def statistics_json(classes, centers, lists) -> dict:
    """The JSON of docs/method.md ("Old-class statistics"): {"<class id>": {"center": [D floats], "radius": [sorted inlier values]}}."""
    return {str(int(c)): {"center": centers[k].tolist(), "radius": lists[k].tolist()} for k, c in enumerate(classes)}
