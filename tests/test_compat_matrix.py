"""The compatibility matrix (bct.tools.compat_matrix, bct.pipeline.matrix, bct.evaluation.metrics): the criterion, AC, AMA and
the P-scores of consecutive pairs against hand-computed values, the tool end to end on a hand-made
fixture whose every mAP is worked out below, and its entries against the self-/cross-test code path."""
import json
import math
import os
import pickle

import numpy as np
import pytest

from bct.data import revisited
from bct.evaluation import sets
from bct.evaluation.metrics import consecutive_scores, matrix_compatibility
from bct.pipeline import matrix
from bct.tools import compat_matrix
from bct.utils.errors import BadInputError


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_criterion_ac_and_ama_by_hand():
    nan = float("nan")
    m = [[40.0, nan, nan],
         [45.0, 50.0, nan],
         [39.0, 55.0, 60.0]]
    s = matrix_compatibility(m)
    # Pairs: (1,0) 45 > 40 yes; (2,0) 39 > 40 no; (2,1) 55 > 50 yes.
    assert [(c["query"], c["gallery"], c["met"]) for c in s["criterion"]] == [(1, 0, True), (2, 0, False), (2, 1, True)]
    assert s["criterion"][1]["value"] == 39.0 and s["criterion"][1]["reference"] == 40.0
    assert (s["n_met"], s["n_pairs"]) == (2, 3) and s["AC"] == pytest.approx(2 / 3)
    assert s["AMA"] == pytest.approx((40 + 45 + 50 + 39 + 55 + 60) / 6)
    # A tie fails the strict criterion.
    assert matrix_compatibility([[40.0, 0.0], [40.0, 70.0]])["AC"] == 0.0
    with pytest.raises(ValueError, match="no NaN"):
        matrix_compatibility([[40.0, nan], [nan, 50.0]])
    with pytest.raises(ValueError, match="n >= 2"):
        matrix_compatibility([[40.0]])


def test_consecutive_p_scores_by_hand():
    m = {"a": np.array([[40.0, 0, 0], [45.0, 50.0, 0], [39.0, 55.0, 60.0]]),
         "b": np.array([[20.0, 0, 0], [30.0, 35.0, 0], [10.0, 30.0, 45.0]])}
    oracle = {"a": [None, 52.0, 64.0], "b": [None, 40.0, None]}
    pairs = consecutive_scores(m, oracle)
    assert [(p["old"], p["new"], p["datasets"]) for p in pairs] == [(0, 1, ["a", "b"]), (1, 2, ["a"])]
    up_a, comp_a = _sigmoid((50 - 52) / 52), _sigmoid((45 - 40) / (52 - 40))
    up_b, comp_b = _sigmoid((35 - 40) / 40), _sigmoid((30 - 20) / (40 - 20))
    hm = lambda x, y: 2 * x * y / (x + y)  # noqa: E731
    assert pairs[0]["P_up"] == pytest.approx(100 * (up_a + up_b) / 2)
    assert pairs[0]["P_comp"] == pytest.approx(100 * (comp_a + comp_b) / 2)
    assert pairs[0]["P_1"] == pytest.approx(100 * (hm(up_a, comp_a) + hm(up_b, comp_b)) / 2)
    assert pairs[1]["gain"] == pytest.approx((55 - 50) / (64 - 50))
    assert consecutive_scores(m, {}) == []


# The hand-made fixture: one query, database d0..d3, d0 the positive, d1 junk (Medium protocol).
# Each model embeds the database as basis vectors (model "m3" swaps d0 and d3) and the query as
# a weighted sum, so every ranking, and with it every AP, is known:
#   q(m1) = e2 + .5 e0:            d2, d0, ...     -> d0 at junk-free position 1 -> AP (0 + 1/2) / 2 = 1/4
#   q(m2) = e0:                    d0 first                                      -> AP 1
#   q(m3) = e2 + .6 e3 + .3 e0:    vs I: d2, d3, d0, d1 -> position 2            -> AP (0 + 1/3) / 2 = 1/6
#                                  vs m3's database: d2, d0, d3, d1 -> position 1 -> AP 1/4
# M (x100) = [[25], [100, 100], [16.67, 16.67, 25]]: pair (m2, m1) meets the criterion, (m3, m1) and
# (m3, m2) fail it. Oracles: "o2" embeds like m2 (self 100), "o3" like m1 (self 25).
_E = np.eye(4, dtype=np.float32)
_SWAP = _E[[3, 1, 2, 0]]
FEATURES = {"m1": (_E[2] + .5 * _E[0], _E), "m2": (_E[0], _E), "m3": (_E[2] + .6 * _E[3] + .3 * _E[0], _SWAP),
            "o2": (_E[0], _E), "o3": (_E[2] + .5 * _E[0], _E)}
HAND = np.array([[25.0, np.nan, np.nan], [100.0, 100.0, np.nan], [100 / 6, 100 / 6, 25.0]])


@pytest.fixture
def toy(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    (folder / "jpg").mkdir(parents=True)  # never read: the features are fabricated
    gnd = {"imlist": ["d0", "d1", "d2", "d3"], "qimlist": ["q0"],
           "gnd": [{"bbx": [0, 0, 1, 1], "easy": [0], "hard": [], "junk": [1]}]}
    (folder / "gnd_toy.pkl").write_bytes(pickle.dumps(gnd))

    def fake_load(cfg, role, path="", device="cpu", check=()):
        return os.path.basename(path).split(".")[0], {"emb_dim": 4}, ""

    def fake_embed(cfg, model, paths, role, device, digest="", boxes=None, list_name=""):
        query, gallery = FEATURES[model]
        return (np.asarray(query)[None] if role == "query" else np.asarray(gallery)), 0

    # One query with an easy positive only: the Hard protocol has no positive, which the loader
    # refuses for a real set; the matrix here is read under the Medium protocol only.
    monkeypatch.setattr(revisited, "_check_positives", lambda gnd, source: None)
    monkeypatch.setattr(matrix, "load_for_eval", fake_load)
    monkeypatch.setattr(sets, "embed_images", fake_embed)
    return tmp_path


def test_tool_reproduces_the_hand_computed_matrix(toy, monkeypatch):
    monkeypatch.chdir(toy)
    for name in FEATURES:
        (toy / f"{name}.pth").write_bytes(b"")
    out = toy.with_name(toy.name + "_out")  # beside the set: an output never lies inside an input
    report = compat_matrix.main(["--models", "gen1=m1.pth,gen2=m2.pth,gen3=m3.pth", "--datasets", f"toy={toy}",
                                 "--oracles", "gen2=o2.pth,gen3=o3.pth", "--out", str(out), "DEVICE", "cpu"])
    saved = json.load(open(out / "compat_matrix.json"))
    e = saved["datasets"]["toy"]
    got = np.array([[np.nan if v is None else v for v in row] for row in e["matrix"]])
    np.testing.assert_allclose(got, HAND, equal_nan=True)
    assert [(c["query"], c["gallery"], c["met"]) for c in e["criterion"]] == \
        [("gen2", "gen1", True), ("gen3", "gen1", False), ("gen3", "gen2", False)]
    assert e["AC"] == pytest.approx(1 / 3) and e["AMA"] == pytest.approx((25 + 100 + 100 + 2 * 100 / 6 + 25) / 6)
    assert e["oracle_self"] == [None, pytest.approx(100.0), pytest.approx(25.0)]
    assert len(e["pairs"]) == 6 and e["pairs"][3]["scores"]["medium"]["map"] == pytest.approx(1 / 6)
    # Consecutive pairs against the oracles, worked out with the paper's formulas.
    p12, p23 = saved["consecutive"]
    assert (p12["old"], p12["new"], p23["old"], p23["new"]) == ("gen1", "gen2", "gen2", "gen3")
    comp12, comp23 = _sigmoid((100 - 25) / (100 - 25)), _sigmoid((100 / 6 - 100) / (25 - 100))
    assert p12["P_up"] == pytest.approx(50.0) and p12["P_comp"] == pytest.approx(100 * comp12)
    assert p23["P_1"] == pytest.approx(100 * 2 * 0.5 * comp23 / (0.5 + comp23))
    md = (out / "compat_matrix.md").read_text()
    assert "| gen2 | 100.00 ✓ | **100.00** |  |" in md and "| gen3 | 16.67 ✗ | 16.67 ✗ | **25.00** |" in md
    assert "| toy | 1 of 3 | 0.33 | 47.22 |" in md and "| gen2 → gen3 |" in md
    assert (out / "compat_matrix.png").stat().st_size > 0
    assert report["AC"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("argv, words", [
    (["--models", "gen1=m1.pth"], "at least two"),
    (["--models", "gen1=m1.pth,m9.pth"], "is not NAME=PATH"),
    (["--models", "a=m1.pth,a=m2.pth"], "given twice"),
    (["--models", "a=m1.pth,b=m2.pth", "--oracles", "c=o2.pth"], "not one of the --models names"),
    (["--models", "a=m1.pth,b=m2.pth", "--datasets", "ROXFORD"], "is not NAME or NAME=ROOT"),
    (["--models", "a=m1.pth,b=nowhere.pth"], "checkpoint nowhere.pth of 'b' does not exist"),
    (["--models", "a=m1.pth,b=sub"], "checkpoint sub of 'b' is a folder, not a file"),
    (["--models", "a=m1.pth,b=m2.pth", "--out", "m1.pth"], "m1.pth: is a file, not a folder"),
])
def test_bad_arguments_are_one_line(toy, argv, words, monkeypatch):
    monkeypatch.chdir(toy)
    for name in ("m1", "m2", "o2"):
        (toy / f"{name}.pth").write_bytes(b"")
    (toy / "sub").mkdir()
    with pytest.raises(BadInputError, match=words):
        compat_matrix.main(["--out", str(toy / "out")] + argv)


def test_a_model_path_with_an_equals_sign_is_a_path(toy, monkeypatch):
    monkeypatch.chdir(toy)
    for name in ("m1", "m2"):
        (toy / f"lr=0.1_{name}.pth").write_bytes(b"")
    (toy / "m1.pth").write_bytes(b"")
    (toy / "m2.pth").write_bytes(b"")
    from bct.tools.common import named_paths
    assert named_paths("lr=0.1_m1.pth,new=m2.pth", "--models") == [("lr=0.1_m1", "lr=0.1_m1.pth"), ("new", "m2.pth")]


def test_models_of_two_embedding_sizes_are_named_with_their_sizes(toy, monkeypatch):
    from bct.pipeline.evaluation import load_for_eval
    from bct.tools import init_model
    monkeypatch.setattr(matrix, "load_for_eval", load_for_eval)  # the real loader, on the toy set
    tmp_path, paths = toy, []
    for i, dim in enumerate((256, 128)):
        paths.append(str(tmp_path / f"m{i}.pth"))
        init_model.main(["--role", "new", "--out", paths[-1], "NEW_MODEL.PRETRAINED", "False",
                         "NEW_MODEL.NUM_CLASSES", "4", "MODEL.EMB_DIM", str(dim), "NEW_MODEL.ARCH", "resnet18"])
    with pytest.raises(BadInputError) as err:
        compat_matrix.main(["--models", f"a={paths[0]},b={paths[1]}", "--datasets", f"toy={toy}",
                            "--out", str(toy.with_name(toy.name + "_out")), "DEVICE", "cpu"])
    line = str(err.value)
    assert f"a ({paths[0]}) embeds in 256 dimensions but b ({paths[1]}) in 128" in line and "config" not in line


def test_matrix_entries_equal_self_and_cross_tests(tmp_path):
    """Two untrained models on the tiny synthetic sets: M[0][0] is the old self-test, M[1][1] the new
    self-test and M[1][0] the cross-test that the test tool's code path computes."""
    from bct.config import load_cfg
    from bct.models.loading import load_trained_model
    from bct.tools import init_model, make_synthetic

    data = tmp_path / "syn"
    make_synthetic.main(["--out", str(data), "--size", "tiny", "--workers", "1"])
    paths = []
    for seed in (1, 2):
        paths.append(str(tmp_path / f"m{seed}.pth"))
        init_model.main(["--role", "new", "--out", paths[-1], "--seed", str(seed),
                         "NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.NUM_CLASSES", "4"])
    opts = ["EVAL.ROOT", str(data / "ROxfordParis"), "EVAL.GLDV2_ROOT", str(data / "GLDv2"), "EVAL.INPUT_SIZE", "32",
            "EVAL.NUM_WORKERS", "0", "EVAL.CACHE_DIR", str(tmp_path / "cache"), "DEVICE", "cpu"]
    report = compat_matrix.main(["--models", f"old={paths[0]},new={paths[1]}", "--datasets", "roxford5k,gldv2",
                                 "--out", str(tmp_path / "out"), *opts])
    cfg = load_cfg("", opts)
    old, _ = load_trained_model(cfg, "old", path=paths[0], check=())
    new, _ = load_trained_model(cfg, "new", path=paths[1], check=())
    for ds in ("roxford5k", "gldv2"):
        r = sets.evaluate_models(cfg, sets.build_set(ds, None, cfg), new, old, use_cache=False)
        m = report["datasets"][ds]["matrix"]
        assert m[0][0] == pytest.approx(sets.headline(r, "old_self"))
        assert m[1][1] == pytest.approx(sets.headline(r, "self"))
        assert m[1][0] == pytest.approx(sets.headline(r, "cross"))
