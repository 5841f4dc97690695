"""Old-class statistics (docs/method.md) against an independent per-class loop."""
import math

import numpy as np

from bct.evaluation.class_stats import class_statistics, statistics_json


def _reference(feats, labels):
    """Straightforward per-class computation, written from docs/method.md."""
    out = {}
    for c in sorted(set(labels.tolist())):
        f = feats[labels == c]
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        center = f.mean(0)
        res = []
        for values in ([np.linalg.norm(x - center) for x in f],
                       [math.acos(max(-1.0, min(1.0, float(x @ (center / np.linalg.norm(center)))))) for x in f]):
            d = sorted(values)
            n = len(d)
            if n >= 4:
                q1, q3 = d[n // 4], d[(3 * n) // 4]
                iqr = q3 - q1
                kept = [v for v in d if q1 - 1.5 * iqr <= v <= q3 + 1.5 * iqr]
                d = kept or d
            res.append(d)
        out[c] = (center, res[0], res[1])
    return out


def test_statistics_match_reference_loop():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 9 + [3] * 1 + [5] * 3 + [7] * 4 + [2] * 12)
    feats = rng.normal(size=(len(labels), 6)) + labels[:, None] * 0.3
    direction = rng.normal(size=6)
    feats[:9] = direction + rng.normal(0, 0.05, size=(9, 6))  # a tight class 0 ...
    feats[8] = -direction  # ... with one outlier pointing the other way
    rng.shuffle(order := np.arange(len(labels)))
    classes, centers, radii, angles = class_statistics(feats[order], labels[order])
    ref = _reference(feats, labels)
    assert classes.tolist() == [0, 2, 3, 5, 7]
    for k, c in enumerate(classes):
        center, r, a = ref[int(c)]
        assert np.allclose(centers[k], center)
        assert np.linalg.norm(centers[k]) <= 1.0 + 1e-9  # mean of unit vectors, not re-normalised
        assert np.allclose(radii[k], r) and np.allclose(angles[k], a)
    assert len(radii[0]) == 8  # the outlier is dropped by the 1.5 IQR rule
    assert len(radii[2]) == 1 and radii[2][0] == 0.0  # single-image class: degenerate
    js = statistics_json(classes, centers, radii)
    assert set(js) == {"0", "2", "3", "5", "7"} and len(js["0"]["center"]) == 6
    assert js["0"]["radius"] == sorted(js["0"]["radius"])


def test_iqr_edge_keeps_everything_when_no_survivor():
    # Three identical tiny distances and one large: IQR computed at floor(n/4), floor(3n/4).
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.zeros(4, dtype=int)
    _, _, radii, _ = class_statistics(feats, labels)
    ref = _reference(feats, labels)[0][1]
    assert np.allclose(radii[0], ref)
