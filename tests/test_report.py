"""The paper's table layout, backfill curves and the per-image partial-backfill gallery."""
import numpy as np
import pytest

from bct.evaluation.report import backfill_curve_table, markdown_table, partial_backfill_gallery

DATASETS = ["rparis6k", "roxford5k", "gldv2"]
OLD = {"rparis6k": 74.29, "roxford5k": 54.34, "gldv2": 11.43}
ORACLE = {"rparis6k": 81.15, "roxford5k": 63.85, "gldv2": 16.48}


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_markdown_table_layout_and_scores():
    rows = [
        {"method": "BCT",
         "self": {"rparis6k": 79.45, "roxford5k": 58.94, "gldv2": 14.79},
         "cross": {"rparis6k": 76.13, "roxford5k": 53.43, "gldv2": 12.26}},
        {"method": "partial", "self": {"rparis6k": 80.0}, "cross": {}},
    ]
    lines = markdown_table(rows, DATASETS, OLD, ORACLE).strip().split("\n")
    assert _cells(lines[0]) == ["Method", "RParis (self / cross)", "ROxford (self / cross)",
                                "GLDv2 (self / cross)", "P_up", "P_comp", "P_1", "Gain %"]
    assert set(_cells(lines[1])) == {"---"}
    assert _cells(lines[2])[:2] == ["Old", "74.29 / —"]
    assert _cells(lines[3])[:2] == ["Oracle", "81.15 / —"]
    bct = _cells(lines[4])
    assert bct[:4] == ["BCT", "79.45 / 76.13", "58.94 / 53.43", "14.79 / 12.26"]
    # the paper's table (README.md): P_up 48.33, P_comp 52.79, P_1 50.41.
    assert bct[4:7] == ["48.33", "52.79", "50.41"]
    # Mean gain: (76.13-74.29)/6.86, (53.43-54.34)/9.51, (12.26-11.43)/5.05 -> 11.30 %.
    gain = 100 * np.mean([1.84 / 6.86, -0.91 / 9.51, 0.83 / 5.05])
    assert float(bct[7]) == pytest.approx(gain, abs=0.01)
    # A row with no cross-test still shows its self-test; the scores are blank.
    assert _cells(lines[5]) == ["partial", "80.00 / —", "— / —", "— / —"] + ["—"] * 4
    assert len({len(_cells(line)) for line in lines}) == 1


def test_backfill_curve_table():
    table = backfill_curve_table({"AdvBCT": [(0.0, 50.0), (0.5, 55.5), (1.0, 60.0)],
                                  "BCT": [(0.0, 48.0), (0.25, 49.0)]})
    lines = table.strip().split("\n")
    assert _cells(lines[0]) == ["Method", "0%", "25%", "50%", "100%"]
    assert _cells(lines[2]) == ["AdvBCT", "50.00", "—", "55.50", "60.00"]
    assert _cells(lines[3]) == ["BCT", "48.00", "49.00", "—", "—"]


def test_partial_backfill_endpoints_nesting_and_seed():
    rng = np.random.default_rng(0)
    old, new = rng.standard_normal((41, 4)), rng.standard_normal((41, 4))
    mixed, mask = partial_backfill_gallery(old, new, 0.0, seed=3)
    assert not mask.any() and np.array_equal(mixed, old)
    mixed, mask = partial_backfill_gallery(old, new, 1.0, seed=3)
    assert mask.all() and np.array_equal(mixed, new)
    masks = [partial_backfill_gallery(old, new, r, seed=3)[1] for r in (0.25, 0.5, 0.75)]
    assert [m.sum() for m in masks] == [round(0.25 * 41), round(0.5 * 41), round(0.75 * 41)]
    assert (masks[0] <= masks[1]).all() and (masks[1] <= masks[2]).all()
    mixed, mask = partial_backfill_gallery(old, new, 0.5, seed=3)
    np.testing.assert_array_equal(mixed[mask], new[mask])
    np.testing.assert_array_equal(mixed[~mask], old[~mask])
    # Same seed, same images; another seed, another choice.
    assert np.array_equal(mask, masks[1])
    assert not np.array_equal(mask, partial_backfill_gallery(old, new, 0.5, seed=4)[1])


def test_partial_backfill_rejects_bad_input():
    with pytest.raises(ValueError, match="equal shape"):
        partial_backfill_gallery(np.zeros((3, 4)), np.zeros((3, 5)), 0.5, seed=0)
    with pytest.raises(ValueError, match="ratio"):
        partial_backfill_gallery(np.zeros((3, 4)), np.zeros((3, 4)), 1.5, seed=0)


def _write_results(folder, heads: dict, old_model="output/resnet18/old_30class/model_final.pth"):
    import json
    import os
    os.makedirs(folder, exist_ok=True)
    for ds, head in heads.items():
        with open(os.path.join(folder, f"{ds}.json"), "w") as f:
            json.dump({"dataset": ds, "headline": head, "old_model": old_model}, f)


def test_summarize_makes_the_papers_table_from_existing_test_results(tmp_path, capsys):
    """Test results of separately trained models (e.g. torchrun runs of scripts/test.sh, one
    EVAL.SAVE_DIR per model) give the paper's row: BCT's P_up 48.33, P_comp 52.79, P_1 50.41."""
    from bct.tools import summarize
    from bct.utils.errors import BadInputError

    oracle_cross = {"rparis6k": 5.0, "roxford5k": 4.0, "gldv2": 1.0}
    _write_results(tmp_path / "new_oracle", {d: {"self": ORACLE[d], "cross": oracle_cross[d], "old_self": OLD[d]}
                                             for d in DATASETS})
    bct = {"rparis6k": (79.45, 76.13), "roxford5k": (58.94, 53.43), "gldv2": (14.79, 12.26)}
    _write_results(tmp_path / "new_bct", {d: {"self": s, "cross": c, "old_self": OLD[d]} for d, (s, c) in bct.items()})
    text = summarize.main(["--oracle", str(tmp_path / "new_oracle"), f"BCT={tmp_path / 'new_bct'}",
                           "--out", str(tmp_path / "table.md")])
    lines = text.strip().split("\n")
    assert _cells(lines[2])[:2] == ["Old", "74.29 / —"] and _cells(lines[3])[:2] == ["Oracle", "81.15 / —"]
    assert _cells(lines[4])[:7] == ["BCT", "79.45 / 76.13", "58.94 / 53.43", "14.79 / 12.26", "48.33", "52.79", "50.41"]
    assert "- BCT: RParis yes, ROxford no, GLDv2 yes" in text
    assert (tmp_path / "table.md").read_text() == text and "P_up" in capsys.readouterr().out
    # A model tested against another old model cannot share the table.
    _write_results(tmp_path / "other", {"rparis6k": {"self": 70.0, "cross": 60.0, "old_self": 50.0}}, "other.pth")
    with pytest.raises(BadInputError, match="not tested against the oracle's old model"):
        summarize.main(["--oracle", str(tmp_path / "new_oracle"), str(tmp_path / "other")])
    with pytest.raises(BadInputError, match="name the oracle's folder with --oracle"):
        summarize.main([str(tmp_path / "new_bct"), str(tmp_path / "other")])
    # The one-model summary is unchanged.
    assert "| RParis | 74.29 | 79.45 | 76.13 | met |" in summarize.main([str(tmp_path / "new_bct")])
