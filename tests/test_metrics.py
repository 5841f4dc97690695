"""Retrieval metrics against hand-worked rankings; compatibility scores against the paper's table (README.md)."""
from fractions import Fraction as F

import numpy as np
import pytest

from bct.evaluation.metrics import (
    compatibility_scores,
    compute_ap,
    compute_map,
    compute_map_revisited,
    format_revisited,
    gldv2_map_at_k,
    update_gain,
)
from bct.data.revisited import protocol_sets


def _col(*rankings):
    """Ranking matrix (n_db, n_q) from per-query rankings."""
    return np.stack([np.asarray(r) for r in rankings], axis=1)


def _ap_loop(ranking, ok, junk):
    """Independent reference: walk the ranking, skipping junk, trapezoid per positive."""
    ap, found, pos = F(0), 0, 0
    for idx in ranking:
        if idx in junk and idx not in ok:
            continue
        if idx in ok:
            left = F(1) if pos == 0 else F(found, pos)
            ap += (left + F(found + 1, pos + 1)) / 2
            found += 1
        pos += 1
    return float(ap / len(ok))


def test_perfect_ranking_has_ap_one():
    ranks = _col([2, 0, 1, 3, 4])
    m, aps, mpr, prs = compute_map(ranks, [{"ok": np.array([0, 2]), "junk": np.array([])}])
    assert m == pytest.approx(1.0)
    assert compute_ap(np.arange(4), 4) == pytest.approx(1.0)
    # Two positives: kq = min(2, k): P@1 = 1, P@5 = 2/2, P@10 = 2/2.
    np.testing.assert_allclose(mpr, [1.0, 1.0, 1.0])


def test_worked_example_with_junk():
    # Ranking [3, 7, 1, 0, 5, 2, 4, 6], ok = {7, 5, 6}, junk = {1}.
    # Deleting junk gives [3, 7, 0, 5, 2, 4, 6]: positives at 0-based positions 1, 3, 6.
    #   j=0, r=1: (0/1 + 1/2) / 2 = 1/4
    #   j=1, r=3: (1/3 + 2/4) / 2 = 5/12
    #   j=2, r=6: (2/6 + 3/7) / 2 = 8/21
    #   AP = (1/4 + 5/12 + 8/21) / 3 = (22/21) / 3 = 22/63 = 0.349206...
    # mP@k with 1-based positions pos = [2, 4, 7]:
    #   k=1: kq=1, none <= 1 -> 0;  k=5: kq=5, two <= 5 -> 2/5;  k=10: kq=min(7,10)=7 -> 3/7.
    ranks = _col([3, 7, 1, 0, 5, 2, 4, 6])
    gnd = [{"ok": np.array([7, 5, 6]), "junk": np.array([1])}]
    m, aps, mpr, prs = compute_map(ranks, gnd)
    assert m == pytest.approx(22 / 63)
    np.testing.assert_allclose(prs[0], [0.0, 2 / 5, 3 / 7])
    # Without the junk deletion the positives would sit at 1, 4, 7 and the AP would be lower.
    assert compute_ap([1, 4, 7], 3) < m


def test_query_without_positives_is_excluded():
    ranks = _col([0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 2, 3])
    gnd = [
        {"ok": np.array([0]), "junk": np.array([], dtype=int)},   # first place: AP 1
        {"ok": np.array([], dtype=int), "junk": np.array([0])},   # no positive: excluded
        {"ok": np.array([2]), "junk": np.array([], dtype=int)},
    ]
    m, aps, mpr, prs = compute_map(ranks, gnd)
    # Third query: one positive at r=2 -> (0/2 + 1/3) / 2 = 1/6.
    assert aps[0] == pytest.approx(1.0)
    assert np.isnan(aps[1]) and np.isnan(prs[1]).all()
    assert aps[2] == pytest.approx(1 / 6)
    assert m == pytest.approx((1.0 + 1 / 6) / 2)
    # P@k third query: pos = [3], kq = min(3, k): P@1 = 0/1, P@5 = 1/3, P@10 = 1/3.
    np.testing.assert_allclose(mpr, [(1 + 0) / 2, (1 + 1 / 3) / 2, (1 + 1 / 3) / 2])


def test_no_query_with_positives_gives_nan():
    m, aps, mpr, _ = compute_map(_col([0, 1]), [{"ok": [], "junk": []}])
    assert np.isnan(m) and np.isnan(mpr).all() and np.isnan(aps).all()


def test_random_rankings_match_loop_reference():
    rng = np.random.default_rng(0)
    n_db, n_q = 40, 6
    ranks = np.stack([rng.permutation(n_db) for _ in range(n_q)], axis=1)
    gnd = []
    for _ in range(n_q):
        ids = rng.permutation(n_db)
        gnd.append({"ok": ids[:rng.integers(1, 8)], "junk": ids[10:10 + rng.integers(0, 6)]})
    _, aps, _, _ = compute_map(ranks, gnd)
    expected = [_ap_loop(ranks[:, i], set(g["ok"]), set(g["junk"])) for i, g in enumerate(gnd)]
    np.testing.assert_allclose(aps, expected)


def test_truncated_ranking_counts_missing_positives_as_zero():
    # Ranking holds only 3 of 10 db images; positives 0 and 9, only 0 is retrieved at r=0.
    m, _, mpr, _ = compute_map(_col([0, 1, 2]), [{"ok": [0, 9], "junk": []}])
    assert m == pytest.approx(0.5)
    m, _, mpr, _ = compute_map(_col([0, 1, 2]), [{"ok": [9], "junk": []}])
    assert m == 0.0 and (mpr == 0.0).all()


def test_revisited_protocols_and_levels():
    # db of 6 images; query 1: easy = {0}, hard = {1}, junk = {2}; query 2: easy = {3} only.
    gnd = [{"easy": [0], "hard": [1], "junk": [2]},
           {"easy": [3], "hard": [], "junk": []}]
    protocols = {level: protocol_sets(gnd, level) for level in ("easy", "medium", "hard")}
    assert sorted(protocols["easy"][0]["junk"]) == [1, 2]
    assert sorted(protocols["medium"][0]["ok"]) == [0, 1]
    assert sorted(protocols["hard"][0]["junk"]) == [0, 2]
    ranks = _col([2, 1, 5, 0, 4, 3], [3, 0, 1, 2, 4, 5])
    res = compute_map_revisited(ranks, protocols)
    # Query 1, easy: drop {2, 1} -> [5, 0, 4, 3], positive 0 at r=1: (0 + 1/2)/2 = 1/4.
    # Query 1, medium: drop {2} -> [1, 5, 0, ...], positives at 0, 2: (1+1)/2 + (1/2 + 2/3)/2
    #   = 1 + 7/12 -> / 2 = 19/24.
    # Query 1, hard: drop {2, 0} -> [1, ...], positive 1 at r=0: AP 1.
    # Query 2 is perfect on easy and medium and has no hard positive (excluded from hard).
    assert res["easy"]["map"] == pytest.approx((1 / 4 + 1) / 2)
    assert res["medium"]["map"] == pytest.approx((19 / 24 + 1) / 2)
    assert res["hard"]["map"] == pytest.approx(1.0)
    assert np.isnan(res["hard"]["aps"][1])
    assert res["kappas"] == [1, 5, 10] and set(res["easy"]["mp"]) == {1, 5, 10}
    # Easy P@1: query 1 has pos=[2] -> kq=1, 0 hits; query 2 -> 1.
    assert res["easy"]["mp"][1] == pytest.approx(0.5)
    line = format_revisited(res)
    assert line.startswith("E: 62.50 M: 89.58 H: 100.00 | mP@k[1, 5, 10] E: 50.00/")
    assert "\n" not in line
    # A protocol under which no query has a positive prints as n/a.
    res["hard"] = {"map": float("nan"), "mp": {k: float("nan") for k in (1, 5, 10)}, "aps": res["hard"]["aps"]}
    assert " H: n/a | " in format_revisited(res) and format_revisited(res).endswith("H: n/a/n/a/n/a")


def test_gldv2_map_at_k_rules():
    solution = {"a": ["x", "y"], "b": ["z"], "c": ["w"]}
    predictions = {
        # x at rank 1 (P=1), y at rank 3 (P=2/3): AP = (1 + 2/3) / 2 = 5/6.
        "a": ["x", "q", "y"],
        # z duplicated: only the first counts; AP = 1/2 (z at rank 2).
        "b": ["q", "z", "z"],
        # "c" has no prediction: counts 0.  "extra" is not in the solution: ignored.
        "extra": ["x"],
    }
    assert gldv2_map_at_k(predictions, solution) == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)


def test_gldv2_duplicates_keep_their_position():
    # The official scorer: the repeated "q" takes rank 2, so "x" is found at rank 3.
    assert gldv2_map_at_k({"a": ["q", "q", "x"]}, {"a": ["x"]}) == pytest.approx(1 / 3)


def test_gldv2_more_ground_truth_than_k():
    gt = [f"g{i}" for i in range(5)]
    # k=2, both predictions relevant: AP = (1 + 1) / min(5, 2) = 1.
    assert gldv2_map_at_k({"a": gt[:3]}, {"a": gt}, k=2) == pytest.approx(1.0)
    # Predictions past k are not read: relevant id at rank 3 with k=2 scores 0.
    assert gldv2_map_at_k({"a": ["n1", "n2", "g0"]}, {"a": gt}, k=2) == 0.0
    # Integer ids (gallery rows) work the same.
    assert gldv2_map_at_k({0: np.array([3, 1])}, {0: [1]}, k=100) == pytest.approx(0.5)


OLD = {"rparis": 74.29, "roxford": 54.34, "gldv2": 11.43}
ORACLE = {"rparis": 81.15, "roxford": 63.85, "gldv2": 16.48}
# the paper's table (README.md), extended-class, new R18: (self, cross) per dataset, then P_up, P_comp, P_1.
PAPER_ROWS = {
    "BCT": ((79.45, 76.13), (58.94, 53.43), (14.79, 12.26), (48.33, 52.79, 50.41)),
    "LCE": ((81.26, 76.78), (60.49, 54.29), (16.07, 12.04), (49.37, 53.95, 51.51)),
    "UniBCT": ((76.92, 74.55), (59.07, 57.82), (14.80, 12.31), (48.09, 54.78, 51.17)),
    "Hot-refresh": ((78.93, 75.33), (60.31, 51.68), (14.00, 10.41), (48.06, 47.26, 47.57)),
    "AdvBCT": ((82.05, 77.16), (64.51, 54.82), (16.44, 12.05), (50.16, 54.87, 52.35)),
}


@pytest.mark.parametrize("method", list(PAPER_ROWS))
def test_compatibility_scores_reproduce_paper_table(method):
    *cells, expected = PAPER_ROWS[method]
    names = list(OLD)
    new_self = {d: c[0] for d, c in zip(names, cells)}
    new_cross = {d: c[1] for d, c in zip(names, cells)}
    s = compatibility_scores(OLD, ORACLE, new_self, new_cross)
    # The paper rounds; within 0.01 of every printed value (largest gap 0.009, AdvBCT P_comp).
    assert s["P_up"] == pytest.approx(expected[0], abs=0.01)
    assert s["P_comp"] == pytest.approx(expected[1], abs=0.01)
    assert s["P_1"] == pytest.approx(expected[2], abs=0.01)
    assert s["datasets"] == names
    gains = [update_gain(OLD[d], ORACLE[d], new_cross[d]) for d in names]
    assert s["gain"] == pytest.approx(np.mean(gains))
    assert s["per_dataset"]["gldv2"]["gain"] == pytest.approx(gains[2])


def test_compatibility_scores_use_common_datasets_and_guard():
    s = compatibility_scores(OLD, ORACLE, {"rparis": 81.15}, {"rparis": 81.15, "gldv2": 1.0})
    # Oracle-level self and cross on the one common dataset: P_up = s(0) = 0.5, gain 1.
    assert s["datasets"] == ["rparis"]
    assert s["P_up"] == pytest.approx(50.0) and s["gain"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="oracle self-test equals old self-test"):
        compatibility_scores({"a": 50.0}, {"a": 50.0}, {"a": 60.0}, {"a": 55.0})
    with pytest.raises(ValueError, match="no dataset"):
        compatibility_scores({"a": 1.0}, {"b": 2.0}, {"a": 1.0}, {"a": 1.0})
