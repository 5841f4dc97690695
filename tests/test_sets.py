"""The benchmark-set interface (bct.evaluation.sets): the command-line form, one set per family built
from tiny files, a user's own retrieval set (format, metrics against a hand-worked ranking, bad
input), and evaluate_models on every family, equal to the per-family computation it replaced."""
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bct.config import load_cfg
from bct.data.retrieval_set import load_retrieval_set, write_retrieval_set
from bct.evaluation import sets
from bct.evaluation.extract import embed_images
from bct.evaluation.metrics import (compute_map_revisited, gldv2_map_at_k, mean_retrieval_scores,
                                    retrieval_scores)
from bct.evaluation.search import rank_matrix, search
from bct.models.build import build_model
from bct.utils.errors import BadInputError
from bct.utils.fileio import jsonable
from bct.utils.logger import get_logger


def _cfg(tmp_path, **extra):
    opts = {"EVAL.INPUT_SIZE": 32, "EVAL.NUM_WORKERS": 0, "EVAL.BATCH_SIZE": 16, "DEVICE": "cpu",
            "EVAL.CACHE_DIR": tmp_path / "cache", "NEW_MODEL.PRETRAINED": False, "OLD_MODEL.PRETRAINED": False,
            **extra}
    return load_cfg("", [str(x) for kv in opts.items() for x in kv])


def _models(cfg):
    torch.manual_seed(1)
    old = build_model(cfg, "old")
    torch.manual_seed(2)
    return build_model(cfg, "new"), old


def _images(folder, names_labels, size=32, seed=0):
    """Patterned JPEGs (one pattern per label) at folder/<name>; returns the names."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for name, label in names_labels:
        base = (np.sin(xx * (1 + label) / 4.0) * np.cos(yy * (label % 3 + 1) / 5.0) + 1) * 120
        img = np.clip(np.stack([base, base.T, base[::-1]], -1) + rng.normal(0, 12, (size, size, 3)), 0, 255)
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(folder, name), quality=92)
    return [n for n, _ in names_labels]


# --------------------------------------------------------------------------------------------
# Own-set metrics against a hand-worked ranking
# --------------------------------------------------------------------------------------------

# Gallery g0..g5 with labels 0, 1, 0, 2, 0, 1. Queries:
#   A label 0, its own image is g2: ranking [g2, g3, g0, g1, g4, g5] -> g2 removed -> [g3, g0, g1, g4, g5]:
#     positives g0 at 2, g4 at 4: AP = (1/2)(1/2 + 2/4) = 1/2; AP@3 = (1/min(2, 3))(1/2) = 1/4;
#     R@1 0 (its own image at rank 1 does not count), R@5 1.
#   B label 1, not in the gallery: [g1, g0, g5, ...]: positives at 1 and 3: AP = (1/2)(1 + 2/3) = 5/6 = AP@3; R@1 1.
#   C label 7: no positive, left out.  D label 2 is g3 itself, its only image: no positive, left out.
GALLERY_LABELS = np.array([0, 1, 0, 2, 0, 1])
QUERY_LABELS = np.array([0, 1, 7, 2])
SELF = np.array([2, -1, -1, 3])
RANKS = np.array([[2, 3, 0, 1, 4, 5], [1, 0, 5, 2, 3, 4], [0, 1, 2, 3, 4, 5], [3, 2, 1, 0, 4, 5]])


def test_own_set_metrics_match_the_hand_worked_ranking():
    per_query = retrieval_scores(RANKS, QUERY_LABELS, GALLERY_LABELS, SELF, k=3)
    assert per_query["n_pos"].tolist() == [2, 2, 0, 0]
    np.testing.assert_allclose(per_query["ap"][:2], [1 / 2, 5 / 6])
    np.testing.assert_allclose(per_query["ap_at_k"][:2], [1 / 4, 5 / 6])
    np.testing.assert_array_equal(per_query["recall"][:2], [[0, 1, 1], [1, 1, 1]])
    assert np.isnan(per_query["ap"][2:]).all() and np.isnan(per_query["recall"][2:]).all()
    mean = mean_retrieval_scores(per_query)
    assert mean["map"] == pytest.approx((1 / 2 + 5 / 6) / 2)
    assert mean["map_at_k"] == pytest.approx((1 / 4 + 5 / 6) / 2)
    assert mean["recall"] == {1: 0.5, 5: 1.0, 10: 1.0} and mean["n_scored"] == 2


def test_own_set_metric_edge_cases():
    # Without the self-match rule, A's own image would be a positive at rank 1.
    with_self = retrieval_scores(RANKS[:1], QUERY_LABELS[:1], GALLERY_LABELS, None, k=3)
    assert with_self["n_pos"][0] == 3 and with_self["recall"][0, 0] == 1
    # A truncated ranking counts the positives it misses as never retrieved: g0 only, at position 2.
    short = retrieval_scores(RANKS[:1, :3], QUERY_LABELS[:1], GALLERY_LABELS, SELF[:1], k=3)
    assert short["ap"][0] == pytest.approx(1 / 4)
    # mAP@k with k = n_db is the mAP over all positives.
    full = retrieval_scores(RANKS, QUERY_LABELS, GALLERY_LABELS, SELF, k=6)
    np.testing.assert_allclose(full["ap_at_k"][:2], full["ap"][:2])
    assert np.isnan(mean_retrieval_scores({k: v[2:] for k, v in full.items()})["map"])


# --------------------------------------------------------------------------------------------
# The command-line form
# --------------------------------------------------------------------------------------------

def test_parse_set_specs_names_and_paths(tmp_path, monkeypatch):
    assert sets.parse_set_specs("roxford5k,rparis6k,gldv2") == [("roxford5k", None), ("rparis6k", None),
                                                                 ("gldv2", None)]
    assert sets.parse_set_specs(" synval , shoes=data/shoes/eval,") == [("synval", None),
                                                                        ("shoes", "data/shoes/eval")]
    # A path with '=' after the name is split at the first '='.
    assert sets.parse_set_specs("shoes=data/a=b/eval") == [("shoes", "data/a=b/eval")]
    # An existing path as a whole is a path, named after its folder, even with '=' in it.
    folder = tmp_path / "x=y" / "shoes"
    folder.mkdir(parents=True)
    assert sets.parse_set_specs(str(folder)) == [("shoes", str(folder))]
    monkeypatch.chdir(tmp_path)
    assert sets.parse_set_specs("x=y/shoes") == [("shoes", "x=y/shoes")]


@pytest.mark.parametrize("text, words", [
    ("", "--datasets is empty"),
    (" , ", "--datasets is empty"),
    ("shoes=", "'shoes=' has no path after '='"),
    ("=data/shoes", "has no name before '='"),
    ("ROXFORD", "'ROXFORD' is not NAME or NAME=ROOT .* looks like a config key"),
    ("EVAL.ROOT", "looks like a config key"),
    ("sh oes=data", "a name is letters, digits"),
    ("data/not/there", "'data/not/there' is not NAME or NAME=ROOT"),
    ("roxford5k,gldv2,roxford5k", "the set name 'roxford5k' is given twice"),
])
def test_parse_set_specs_refuses_bad_forms_in_one_line(text, words):
    with pytest.raises(BadInputError, match=words) as e:
        sets.parse_set_specs(text)
    assert "\n" not in str(e.value) and str(e.value).startswith("--datasets")


def test_an_existing_path_whose_folder_name_is_no_set_name_asks_for_one(tmp_path):
    (tmp_path / "a=b").mkdir()
    with pytest.raises(BadInputError, match=r"folder name 'a=b' is no set name; give one as NAME="):
        sets.parse_set_specs(str(tmp_path / "a=b"))


# --------------------------------------------------------------------------------------------
# One set per family from tiny files
# --------------------------------------------------------------------------------------------

def _own_set(tmp_path, name="shoes"):
    """Own set: 3 labels x 3 images; one query per label (also in the gallery) and a query of label 9
    with no image of its label in the gallery."""
    folder = tmp_path / name
    items = [(f"c{c}/{j}.jpg", c) for c in range(3) for j in range(3)]
    _images(str(folder / "images"), items + [("odd/q.jpg", 9)])
    queries = [items[0], items[4], items[8], ("odd/q.jpg", 9)]
    write_retrieval_set(str(folder), "images", queries, items)
    return folder


def _revisited_set(tmp_path, name="toy", hard=True, box=(0, 0, 20, 20)):
    """Revisited-format set: 2 queries, 6 database images; query 0 easy {0, 2}, query 1 easy {3}
    (and hard positives unless hard=False)."""
    folder = tmp_path / "rev" / name
    labels = {"q0": 0, "q1": 1, "d0": 0, "d1": 1, "d2": 0, "d3": 1, "d4": 2, "d5": 0}
    _images(str(folder / "jpg"), [(f"{n}.jpg", c) for n, c in labels.items()])
    gnd = {"imlist": [f"d{i}" for i in range(6)], "qimlist": ["q0", "q1"],
           "gnd": [{"bbx": list(box), "easy": [0, 2], "hard": [5] if hard else [], "junk": [4]},
                   {"bbx": [0, 0, 32, 32], "easy": [3], "hard": [1] if hard else [], "junk": []}]}
    (folder / f"gnd_{name}.pkl").write_bytes(pickle.dumps(gnd))
    return tmp_path / "rev"


def _gldv2_set(root):
    root.mkdir(parents=True, exist_ok=True)
    gallery = [f"index/g{i}.jpg" for i in range(5)]
    _images(str(root), [(p, i % 2) for i, p in enumerate(gallery)] + [("test/q0.jpg", 0), ("test/q1.jpg", 1)])
    (root / "gldv2_gallery_list.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(gallery)))
    for usage, q in (("public", "q0"), ("private", "q1")):
        (root / f"gldv2_{usage}_query_list.txt").write_text(f"test/{q}.jpg 0\n")
        (root / f"gldv2_{usage}_query_gt.txt").write_text(f"test/{q}.jpg 0 {'0,2,4' if q == 'q0' else '1,3'}\n")
    return root


def test_build_set_for_each_family(tmp_path):
    cfg = _cfg(tmp_path, **{"EVAL.ROOT": _revisited_set(tmp_path), "EVAL.GLDV2_ROOT": _gldv2_set(tmp_path / "gld")})
    own = sets.build_set("shoes", str(_own_set(tmp_path)), cfg)
    assert (own.family, own.title, own.headline_name) == ("own", "shoes", "mAP")
    assert sets.build_set("shoes", str(tmp_path / "shoes" / "set.json"), cfg).family == "own"
    rev = sets.build_set("toy", None, cfg)
    assert (rev.family, rev.title, rev.headline_name, rev.root) == ("revisited", "toy", "Medium mAP", cfg.EVAL.ROOT)
    assert sets.build_set("toy", cfg.EVAL.ROOT, cfg).family == "revisited"
    gld = sets.build_set("gldv2", None, cfg)
    assert (gld.family, gld.title, gld.headline_name) == ("gldv2", "GLDv2", "private mAP@100")
    # A GLDv2-format set under another name, with another k.
    other = sets.build_set("landmarks", str(tmp_path / "gld"), _cfg(tmp_path, **{"EVAL.TOPK": 10}))
    assert (other.family, other.title, other.headline_name) == ("gldv2", "landmarks", "private mAP@10")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match=r"set shoes: no benchmark set in .*empty: expected .*set.json"):
        sets.build_set("shoes", str(tmp_path / "empty"), cfg)
    with pytest.raises(BadInputError, match=r"set shoes: .*nowhere does not exist"):
        sets.build_set("shoes", str(tmp_path / "nowhere"), cfg)


def test_built_in_names_keep_the_papers_titles(tmp_path):
    root = tmp_path / "rev"
    for name in ("roxford5k", "rparis6k"):
        _revisited_set(tmp_path, name)
    cfg = _cfg(tmp_path, **{"EVAL.ROOT": root})
    assert [sets.build_set(n, None, cfg).title for n in ("roxford5k", "rparis6k")] == ["ROxford", "RParis"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="download gnd_roxford5k.pkl from revisitop"):
        sets.build_set("roxford5k", str(tmp_path / "empty"), cfg)


# --------------------------------------------------------------------------------------------
# The own-set format: bad input is one line naming the file (and line)
# --------------------------------------------------------------------------------------------

def _rewrite(folder, name, text):
    (folder / name).write_text(text)


@pytest.mark.parametrize("damage, words", [
    (lambda f: os.remove(f / "set.json"), r"set.json does not exist"),
    (lambda f: _rewrite(f, "set.json", "{not json"), r"set.json: not valid JSON"),
    (lambda f: _rewrite(f, "set.json", json.dumps({"format": "bct-retrieval-set", "version": 2, "image_root": "images",
                                                   "num_queries": 4, "num_gallery": 9})),
     r"set.json: version 2 of the bct-retrieval-set format is not supported; this bct reads version 1"),
    (lambda f: _rewrite(f, "set.json", json.dumps({"format": "csv", "version": 1})), r'"format" is "csv"'),
    (lambda f: _rewrite(f, "set.json", json.dumps({"format": "bct-retrieval-set", "version": 1, "image_root": "pics",
                                                   "num_queries": 4, "num_gallery": 9})),
     r"image_root 'pics' .* is not a folder"),
    (lambda f: _rewrite(f, "query.txt", "c0/0.jpg 0\nc1/1.jpg\nc2/2.jpg 2\nodd/q.jpg 9\n"),
     r"query.txt:2: expected 2 fields .* got 1: 'c1/1.jpg'"),
    (lambda f: _rewrite(f, "query.txt", "c0/0.jpg 0\nc1/1.jpg shoe\nc2/2.jpg 2\nodd/q.jpg 9\n"),
     r"query.txt:2: label 'shoe' is not an integer"),
    (lambda f: _rewrite(f, "query.txt", "c0/0.jpg 0\nc1/1.jpg 1\n"), r'"num_queries" is 4 but .*query.txt has 2 lines'),
    (lambda f: os.remove(f / "gallery.txt"), r"gallery.txt does not exist"),
    (lambda f: _rewrite(f, "query.txt", "c0/0.jpg 1\nc1/1.jpg 1\nc2/2.jpg 2\nodd/q.jpg 9\n"),
     r"query.txt:1: c0/0.jpg has label 1 but .*gallery.txt:1 gives it label 0"),
    (lambda f: _rewrite(f, "query.txt", "c0/0.jpg 0\nc0/0.jpg 0\nc2/2.jpg 2\nodd/q.jpg 9\n"),
     r"query.txt:2: path c0/0.jpg already listed at line 1"),
])
def test_own_set_bad_input_is_one_line(tmp_path, damage, words):
    folder = _own_set(tmp_path)
    damage(folder)
    with pytest.raises(BadInputError, match=words) as e:
        load_retrieval_set(str(folder))
    assert "\n" not in str(e.value)


def test_own_set_where_no_query_has_a_positive_is_refused(tmp_path):
    folder = tmp_path / "s"
    _images(str(folder / "images"), [("a.jpg", 0), ("b.jpg", 1)])
    write_retrieval_set(str(folder), "images", [("a.jpg", 0)], [("a.jpg", 0), ("b.jpg", 1)])
    with pytest.raises(BadInputError, match="no query has a positive in the gallery"):
        load_retrieval_set(str(folder))


def test_own_set_round_trip(tmp_path):
    folder = _own_set(tmp_path)
    manifest = json.loads((folder / "set.json").read_text())
    assert manifest == {"format": "bct-retrieval-set", "version": 1, "image_root": "images",
                        "num_queries": 4, "num_gallery": 9}
    data = load_retrieval_set(str(folder))
    assert data.self_index.tolist() == [0, 4, 8, -1] and data.n_pos.tolist() == [2, 2, 2, 0]
    assert data.query_paths[3] == os.path.join(str(folder), "images", "odd", "q.jpg")
    with pytest.raises(BadInputError, match="label -1 is not a whole number"):
        write_retrieval_set(str(tmp_path / "w"), "images", [("a.jpg", -1)], [("a.jpg", 0)])


# --------------------------------------------------------------------------------------------
# evaluate_models
# --------------------------------------------------------------------------------------------

def _brute_force_map(query, gallery, q_labels, g_labels, self_index):
    """mAP over all positives by a plain loop over sorted similarities (the textbook definition)."""
    aps = []
    for i in range(len(query)):
        order = [j for j in np.argsort(-(gallery @ query[i]), kind="stable") if j != self_index[i]]
        rel = [g_labels[j] == q_labels[i] for j in order]
        if not any(rel):
            continue
        hits, total = 0, 0.0
        for rank, r in enumerate(rel, 1):
            if r:
                hits += 1
                total += hits / rank
        aps.append(total / sum(rel))
    return float(np.mean(aps))


def test_evaluate_models_on_an_own_set(tmp_path):
    cfg = _cfg(tmp_path, **{"EVAL.BACKFILL_RATIOS": "[0.0, 0.5, 1.0]"})
    new, old = _models(cfg)
    bset = sets.build_set("shoes", str(_own_set(tmp_path)), cfg)
    result = sets.evaluate_models(cfg, bset, new, old, "cpu", backfill=True, digests={"new": "n", "old": "o"})
    assert result["dataset"] == "shoes" and result["family"] == "own" and result["n_query"] == 4
    assert result["no_positive_queries"] == 1 and result["self"]["n_scored"] == 3
    for part in ("self", "cross", "old_self"):
        assert set(result[part]) == {"map", "map_at_k", "recall", "n_scored"}
        assert result["headline"][part] == pytest.approx(100 * result[part]["map"])
        assert sets.headline(result, part) == result["headline"][part]
    data = bset.data
    q_new = embed_images(cfg, new, data.query_paths, "query", "cpu")[0]
    g_old = embed_images(cfg, old, data.gallery_paths, "gallery", "cpu")[0]
    expected = _brute_force_map(q_new, g_old, data.query_labels, data.gallery_labels, data.self_index)
    assert result["cross"]["map"] == pytest.approx(expected)
    # Backfill: ratio 0 is the cross-test, ratio 1 the self-test.
    assert [r for r, _ in result["backfill"]] == [0.0, 0.5, 1.0]
    assert result["backfill"][0][1] == pytest.approx(result["headline"]["cross"])
    assert result["backfill"][-1][1] == pytest.approx(result["headline"]["self"])
    assert result["backfill_detail"][0]["map"] == pytest.approx(result["cross"]["map"])
    lines = bset.report_lines(result)
    assert lines[0].startswith("self-test  M(new, new): mAP ") and " mAP@100 " in lines[0] and " R@10 " in lines[0]
    assert lines[3].startswith("partial backfill (ratio:mAP, seed 0): 0.00:")
    assert lines[-1].startswith("1 of 4 queries have no positive in the gallery")
    rows = bset.metric_rows(result)
    assert [r["test"] for r in rows] == ["self", "cross", "old_self"]
    assert list(rows[0]["metrics"]) == ["mAP", "mAP@100", "R@1", "R@5", "R@10"]
    json.dumps(jsonable(result))
    # The matrix of (old, new) holds the same numbers.
    matrix = sets.compatibility_matrix(cfg, bset, [old, new], "cpu")["matrix"]
    assert matrix[1, 0] == pytest.approx(result["headline"]["cross"])
    assert matrix[0, 0] == pytest.approx(result["headline"]["old_self"])
    # Self-test only.
    alone = sets.evaluate_models(cfg, bset, new, None, "cpu", backfill=True)
    assert "cross" not in alone and "backfill" not in alone and alone["self"] == result["self"]


def test_evaluate_models_equals_the_per_family_computation(tmp_path):
    """Revisited and GLDv2: the scores of evaluate_models are those of the code it replaced (rank,
    then compute_map_revisited or gldv2_map_at_k), the full backfill curve in backfill_detail."""
    cfg = _cfg(tmp_path, **{"EVAL.ROOT": _revisited_set(tmp_path), "EVAL.GLDV2_ROOT": _gldv2_set(tmp_path / "gld"),
                            "EVAL.BACKFILL_RATIOS": "[0.0, 1.0]", "EVAL.TOPK": 3})
    new, old = _models(cfg)
    common = dict(with_old_self=True, backfill=True, digests={"new": "n", "old": "o"})

    rev = sets.build_set("toy", None, cfg)
    result = sets.evaluate_models(cfg, rev, new, old, "cpu", **common)
    q = embed_images(cfg, new, rev.data.query_paths, "query", "cpu")[0]
    g = {role: embed_images(cfg, model, rev.data.db_paths, "gallery", "cpu")[0]
         for role, model in (("new", new), ("old", old))}
    protocols = {level: rev.data.protocol(level) for level in sets.LEVELS}
    for part, gallery in (("self", g["new"]), ("cross", g["old"])):
        want = compute_map_revisited(rank_matrix(q, gallery), protocols)
        for level in sets.LEVELS:
            assert result[part][level]["map"] == want[level]["map"]
            assert result[part][level]["mp"] == want[level]["mp"]
    assert result["headline"]["cross"] == 100 * result["cross"]["medium"]["map"]
    assert result["backfill"] == [(0.0, result["headline"]["cross"]), (1.0, result["headline"]["self"])]
    assert result["backfill_detail"][0]["medium"] == result["cross"]["medium"]["map"]

    gld = sets.build_set("gldv2", None, cfg)
    result = sets.evaluate_models(cfg, gld, new, old, "cpu", **common)
    gallery = embed_images(cfg, old, gld.gallery.paths, "gallery", "cpu")[0]
    for usage, split in gld.splits.items():
        _, ids = search(embed_images(cfg, new, split.query_paths, "query", "cpu")[0], gallery, 3)
        assert result["cross"][usage] == gldv2_map_at_k({i: ids[i].tolist() for i in range(len(ids))},
                                                        split.solution, 3)
    assert result["headline"]["cross"] == 100 * result["cross"]["private"]
    assert result["n_query"] == {"public": 1, "private": 1} and result["k"] == 3
    assert set(result["backfill_detail"]) == {"public", "private"}
    cross = result["cross"]
    assert gld.report_lines(result)[1] == (f"cross-test M(new, old): mAP@3 public {100 * cross['public']:.2f} "
                                           f"private {100 * cross['private']:.2f}")


def test_a_ground_truth_with_only_easy_positives_is_scored_with_hard_not_available(tmp_path):
    cfg = _cfg(tmp_path, **{"EVAL.ROOT": _revisited_set(tmp_path, hard=False)})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    get_logger().addHandler(handler)
    try:
        bset = sets.build_set("toy", None, cfg)
    finally:
        get_logger().removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and "gnd_toy.pkl: no query has a positive image under the Hard protocol" in lines[0]
    new, _ = _models(cfg)
    result = sets.evaluate_models(cfg, bset, new, None, "cpu")
    assert result["not_available"] == ["hard"] and np.isnan(result["self"]["hard"]["map"])
    assert not np.isnan(result["self"]["medium"]["map"]) and not np.isnan(result["headline"]["self"])
    report = bset.report_lines(result)
    assert " H: n/a | " in report[0] and report[-1].startswith("n/a: no query has a positive image under the Hard")
    assert bset.metric_rows(result)[0]["metrics"]["Hard mAP"] is None
    assert jsonable(result)["self"]["hard"]["map"] is None


@pytest.mark.parametrize("box, words", [
    ((float("nan"), 0, 20, 20), r"\[nan, 0, 20, 20\], which is not four finite numbers"),
    ((20, 0, 10, 20), r"\[20, 0, 10, 20\], which is empty or inverted \(expected x1 < x2 and y1 < y2\)"),
    ((40, 40, 60, 60), r"\[40, 40, 60, 60\], which lies outside the 32 x 32 image"),
])
def test_a_bad_query_box_with_query_crop_is_one_line(tmp_path, box, words):
    cfg = _cfg(tmp_path, **{"EVAL.ROOT": _revisited_set(tmp_path, box=box), "EVAL.QUERY_CROP": True})
    bset = sets.build_set("toy", None, cfg)
    with pytest.raises(BadInputError, match=r"gnd_toy.pkl: query 0 \(q0\) has the bounding box " + words +
                       r"; fix gnd\[0\]\['bbx'\] or set EVAL.QUERY_CROP False"):
        bset.query_groups(cfg)
    # Without the crop the box is never used, so the set is scored.
    assert sets.build_set("toy", None, _cfg(tmp_path, **{"EVAL.ROOT": cfg.EVAL.ROOT})).query_groups(
        _cfg(tmp_path))[""].boxes is None
