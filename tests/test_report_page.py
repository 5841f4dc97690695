"""The report page (python -m bct.tools.report, bct.pipeline.report_page): the rankings kept beside a
result are the ones the evaluation scored, the page shows exactly those ids and APs, the queries are
chosen reproducibly, thumbnails are small and reused, bad input is one line, a comparison gets one
row group per method and an index search its own page; and the page opened in headless Chromium
loads every image without a console error (a screenshot is kept)."""
import html.parser
import json
import os
import pickle
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from bct.config import load_cfg
from bct.data.retrieval_set import write_retrieval_set
from bct.evaluation import sets
from bct.evaluation.extract import embed_images
from bct.evaluation.search import rank_matrix, search
from bct.models.build import build_model
from bct.config.methods import method_names
from bct.pipeline.report_page import THUMB_PX, choose_queries, make_thumbnails
from bct.pipeline.results import load_rankings, write_result
from bct.tools import report
from bct.tools.common import run

TOP = 4


def _images(folder, names_labels, size=40, seed=0):
    """Patterned JPEGs, one pattern per label (some wider than tall), at folder/<name>."""
    rng = np.random.default_rng(seed)
    for i, (name, label) in enumerate(names_labels):
        w = size + 16 * (i % 2)
        yy, xx = np.mgrid[0:size, 0:w]
        base = (np.sin(xx * (1 + label) / 4.0) * np.cos(yy * (label % 3 + 1) / 5.0) + 1) * 120
        img = np.clip(np.stack([base, np.roll(base, 3 * label, 0), base[::-1]], -1) + rng.normal(0, 20, base.shape + (3,)),
                      0, 255)
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(folder, name), quality=90)


def _revisited(root, name="toy"):
    """8 queries over 24 database images of 4 landmarks: easy = same landmark, every third of them
    hard, one junk image per query."""
    folder = root / name
    db = [(f"d{i}.jpg", i % 4) for i in range(24)]
    queries = [(f"q{i}.jpg", i % 4) for i in range(8)]
    _images(str(folder / "jpg"), db + queries)
    gnd = []
    for _, label in queries:
        same = [i for i, (_, c) in enumerate(db) if c == label]
        gnd.append({"bbx": [0, 0, 30, 30], "easy": [i for i in same if i % 3], "hard": [i for i in same if not i % 3],
                    "junk": [(same[0] + 1) % 24]})
    (folder / f"gnd_{name}.pkl").write_bytes(pickle.dumps(
        {"imlist": [n[:-4] for n, _ in db], "qimlist": [n[:-4] for n, _ in queries], "gnd": gnd}))
    return root


def _own(folder):
    items = [(f"c{c}/{j}.jpg", c) for c in range(4) for j in range(4)]
    _images(str(folder / "images"), items, seed=1)
    write_retrieval_set(str(folder), "images", items[::3], items)
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder as the test tool writes it (a revisited set and an own set), with the
    features each test was scored on."""
    tmp = tmp_path_factory.mktemp("report")
    opts = {"EVAL.INPUT_SIZE": 32, "EVAL.NUM_WORKERS": 0, "EVAL.BATCH_SIZE": 32, "DEVICE": "cpu",
            "EVAL.CACHE_DIR": tmp / "cache", "NEW_MODEL.PRETRAINED": False, "OLD_MODEL.PRETRAINED": False,
            "EVAL.ROOT": _revisited(tmp / "rev")}
    cfg = load_cfg("", [str(x) for kv in opts.items() for x in kv])
    torch.manual_seed(1)
    old = build_model(cfg, "old").eval()
    torch.manual_seed(2)
    new = build_model(cfg, "new").eval()
    folder = tmp / "eval"
    feats = {}
    for name, root in (("toy", None), ("shoes", str(_own(tmp / "shoes")))):
        bset = sets.build_set(name, root, cfg)
        result = sets.evaluate_models(cfg, bset, new, old, "cpu", keep_rankings=sets.RANKINGS_TOP)
        result["models"] = {"new": {"path": "new.pth", "sha256": "n" * 64}, "old": {"path": "old.pth", "sha256": "o" * 64}}
        write_result(str(folder), result)
        q = {role: embed_images(cfg, m, bset.query_groups(cfg)[""].paths, "query", "cpu")[0]
             for role, m in (("new", new), ("old", old))}
        g = {role: embed_images(cfg, m, bset.gallery.paths, "gallery", "cpu")[0] for role, m in (("new", new), ("old", old))}
        feats[name] = {"self": (q["new"], g["new"]), "cross": (q["new"], g["old"]), "old_self": (q["old"], g["old"]),
                       "set": bset, "queries": bset.query_groups(cfg)[""].paths}
    return folder, feats


def _json(folder, name):
    return json.load(open(os.path.join(folder, f"{name}.json")))


def test_the_rankings_file_holds_the_ranking_the_evaluation_scored(results):
    folder, feats = results
    for name, f in feats.items():
        result = _json(folder, name)
        kept = load_rankings(str(folder), result)
        assert kept["top"] == len(f["set"].gallery.paths)  # the galleries are shorter than RANKINGS_TOP
        for test in ("self", "cross", "old_self"):
            ids = kept["tests"][test]["ids"]
            assert np.array_equal(ids, rank_matrix(*f[test]).T[:, :kept["top"]])
            ap = kept["tests"][test]["ap"]
            assert 100 * np.nanmean(ap) == pytest.approx(result["headline"][test])
            assert all(kept["gallery"][i] == f["set"].gallery.paths[i] for i in np.unique(ids))
        assert kept["query_paths"] == f["queries"]
    # Revisited: the APs are the Medium APs of the JSON, the frames the ground truth's lists.
    result = _json(folder, "toy")
    kept = load_rankings(str(folder), result)
    cross = kept["tests"]["cross"]
    assert np.allclose(cross["ap"], result["cross"]["medium"]["aps"])
    gnd = feats["toy"]["set"].data.checked_gnd
    for q in range(len(gnd)):
        for i, code in zip(cross["ids"][q], cross["rel"][q]):
            want = (sets.POSITIVE if i in gnd[q]["easy"] else sets.HARD if i in gnd[q]["hard"]
                    else sets.JUNK if i in gnd[q]["junk"] else sets.WRONG)
            assert code == want
    assert result["rankings"]["relevance"] == {"1": "easy", "2": "hard", "3": "junk (not scored)", "0": "wrong"}
    # Own set: the query's own image is junk, same label positive.
    own = feats["shoes"]["set"].data
    kept = load_rankings(str(folder), _json(folder, "shoes"))["tests"]["self"]
    same = own.gallery_labels[kept["ids"]] == own.query_labels[:, None]
    mine = kept["ids"] == own.self_index[:, None]
    assert np.array_equal(kept["rel"], np.where(mine, sets.JUNK, np.where(same, sets.POSITIVE, sets.WRONG)))


def test_gldv2_keeps_the_searched_top_and_per_query_ap(tmp_path):
    from bct.evaluation.metrics import gldv2_ap_at_k, gldv2_map_at_k
    root = tmp_path / "gld"
    gallery = [f"index/g{i}.jpg" for i in range(6)]
    _images(str(root), [(p, i % 2) for i, p in enumerate(gallery)] + [("test/q0.jpg", 0), ("test/q1.jpg", 1)])
    (root / "gldv2_gallery_list.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(gallery)))
    for usage, q, gt in (("public", "q0", "0,2,4"), ("private", "q1", "1,3")):
        (root / f"gldv2_{usage}_query_list.txt").write_text(f"test/{q}.jpg 0\n")
        (root / f"gldv2_{usage}_query_gt.txt").write_text(f"test/{q}.jpg 0 {gt}\n")
    bset = sets.build_set("gldv2", str(root), load_cfg("", ["EVAL.TOPK", "3"]))
    rng = np.random.default_rng(0)
    q = {usage: rng.normal(size=(1, 8)).astype(np.float32) for usage in ("public", "private")}
    g = rng.normal(size=(6, 8)).astype(np.float32)
    part, kept = bset.score_ranked(q, g, "faiss", 100)
    assert kept["ids"].shape == (2, 3)  # the depth GLDv2 searches, k = 3
    for row, (usage, split) in enumerate(bset.splits.items()):
        ids = search(q[usage], g, 3)[1]
        assert np.array_equal(kept["ids"][row], ids[0])
        assert kept["ap"][row] == gldv2_ap_at_k({0: ids[0].tolist()}, split.solution, 3)[0]
        assert part[usage] == gldv2_map_at_k({0: ids[0].tolist()}, split.solution, 3)
        assert np.array_equal(kept["rel"][row], np.isin(ids[0], split.solution[0]).astype(np.int8))
    assert bset.score(q, g, "faiss") == part


class _Page(html.parser.HTMLParser):
    """Per query element: its strips (group, test, AP, [(id, relevance, image)]); every image source."""

    def __init__(self):
        super().__init__()
        self.sections, self.images = {}, []
        self.section = self.query = self.strip = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id", "").startswith("set-"):
            self.section = self.sections.setdefault(a["id"][4:], [])
        elif tag == "div" and "data-query" in a and self.section is not None:
            self.query = {"q": int(a["data-query"]), "strips": []}
            self.section.append(self.query)
        elif tag == "div" and "data-test" in a:
            self.strip = {"group": a["data-group"], "test": a["data-test"], "ap": float(a["data-ap"]), "hits": []}
            self.query["strips"].append(self.strip)
        elif tag == "figure" and "data-id" in a:
            self.strip["hits"].append([int(a["data-id"]), int(a["data-rel"])])
        elif tag == "img":
            self.images.append(a["src"])
            if self.strip is not None and self.strip["hits"] and len(self.strip["hits"][-1]) == 2:
                self.strip["hits"][-1].append(a["src"])


def _read_page(page):
    parser = _Page()
    parser.feed(open(page).read())
    return parser


def _tool(argv, capsys):
    try:
        out = run(report.main, [str(a) for a in argv])
        code = 0
    except SystemExit as e:
        out, code = None, e.code
    captured = capsys.readouterr()
    return code, out, captured.out, captured.err


def test_the_page_shows_the_result_files(results, tmp_path, capsys):
    folder, feats = results
    out = tmp_path / "page"
    code, page, printed, _ = _tool([folder, "--queries", 5, "--top", TOP, "--out", out], capsys)
    assert code == 0 and printed.strip() == str(out / "index.html") == page
    shown = _read_page(page)
    record = json.load(open(out / "page.json"))
    for name in feats:
        result = _json(folder, name)
        kept = load_rankings(str(folder), result)
        queries = shown.sections[name]
        assert [q["q"] for q in queries] == [c["query"] for c in record["sets"][name]]
        for query in queries:
            q = query["q"]
            assert [s["test"] for s in query["strips"]] == ["old_self", "self", "cross"]
            for strip in query["strips"]:
                data = kept["tests"][strip["test"]]
                assert np.array_equal(strip["ap"], data["ap"][q], equal_nan=True)
                assert [h[0] for h in strip["hits"]] == data["ids"][q, :TOP].tolist()
                assert [h[1] for h in strip["hits"]] == data["rel"][q, :TOP].tolist()
        # The labels say why each query is there; helped before hurt before random, as chosen.
        cross, old = kept["tests"]["cross"]["ap"], kept["tests"]["old_self"]["ap"]
        assert record["sets"][name] == [{"query": q, "label": label} for q, label in choose_queries(cross - old, 5, 0)]
    # Thumbnails: small, one per image, beside the page.
    thumbs = set(shown.images)
    assert all(src.startswith("thumbs/") for src in thumbs)
    for src in thumbs:
        with Image.open(out / src) as img:
            assert max(img.size) <= THUMB_PX
    text = open(page).read()
    assert all(f"<div class='tag'>{c['label']}</div>" in text for chosen in record["sets"].values() for c in chosen)


def test_choose_queries_is_reproducible_and_labelled():
    delta = np.array([0.5, -0.2, np.nan, 0.0, 0.3, -0.7, 0.1, 0.2, -0.1, 0.05])
    chosen = choose_queries(delta, 6, seed=3)
    assert chosen[:4] == [(0, "helped most #1"), (4, "helped most #2"), (5, "hurt most #1"), (1, "hurt most #2")]
    assert [label for _, label in chosen[4:]] == ["random (seed 3)"] * 2
    assert {q for q, _ in chosen[4:]} <= {3, 6, 7, 8, 9}
    assert chosen == choose_queries(delta, 6, seed=3) and 2 not in [q for q, _ in chosen]
    # Nothing helped: the helped places go to random queries; never more than the valid queries.
    assert [label for _, label in choose_queries(-np.abs(delta), 3, 0)][0] == "hurt most #1"
    assert len(choose_queries(delta, 50, 0)) == 9


def test_thumbnails_are_made_once_and_follow_the_image(results, tmp_path, capsys):
    folder, _ = results
    out = tmp_path / "page"
    assert _tool([folder, "--out", out, "--queries", 2, "--top", 2], capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}
    assert _tool([folder, "--out", out, "--queries", 2, "--top", 2], capsys)[0] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()} == before
    # A large image shrinks to 128 px on its long side; an unreadable one has no thumbnail (the page
    # shows a grey square and counts it); a changed image gets a new thumbnail.
    big, bad = tmp_path / "big.png", tmp_path / "bad.jpg"
    Image.new("RGB", (1000, 400), (10, 200, 30)).save(big)
    bad.write_bytes(b"not an image")
    made = make_thumbnails([str(big), str(bad), str(tmp_path / "gone.jpg")], str(tmp_path / "t"))
    assert made[str(bad)] is None and made[str(tmp_path / "gone.jpg")] is None
    with Image.open(tmp_path / "t" / made[str(big)]) as img:
        assert img.size == (128, 51)
    Image.new("RGB", (1000, 400), (200, 10, 30)).save(big)
    assert make_thumbnails([str(big)], str(tmp_path / "t"))[str(big)] != made[str(big)]


def test_bad_input_is_one_line_and_writes_nothing(results, tmp_path, capsys):
    folder, _ = results
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, _, err = _tool([folder, "--out", foreign], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds files that no report page wrote" in err
    assert os.listdir(foreign) == ["notes.txt"]
    code, _, _, err = _tool([folder, "--out", folder], capsys)
    assert code == 2 and "is the input of FOLDER" in err and "never writes over its input" in err
    code, _, _, err = _tool([folder, "--top", 101, "--out", tmp_path / "p0"], capsys)
    assert code == 2 and "--top" in err and "at most 100" in err and not (tmp_path / "p0" / "index.html").exists()
    # A rankings file that is not the one its result names, and a result without rankings.
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = dict(np.load(copy / "toy.rankings.npz"))
    data["cross_ids"] = data["cross_ids"][:, ::-1]
    np.savez_compressed(copy / "toy.rankings.npz", **data)
    code, _, _, err = _tool([copy, "--out", tmp_path / "p1"], capsys)
    assert code == 2 and "is not the rankings file that" in err and "toy.json" in err
    result = _json(copy, "toy")
    del result["rankings"]
    (copy / "toy.json").write_text(json.dumps(result))
    code, _, _, err = _tool([copy, "--out", tmp_path / "p2"], capsys)
    assert code == 2 and "keeps no rankings" in err and "run bct.tools.test again" in err
    assert not (tmp_path / "p1" / "index.html").exists() and not (tmp_path / "p2" / "index.html").exists()


def test_a_small_gallery_shows_all_it_keeps(results, tmp_path, capsys):
    """Rankings that keep fewer than 10 results (a gallery of 6): the page shows them all by default;
    asking for more is refused."""
    from bct.utils.fileio import file_digest
    folder, _ = results
    small = tmp_path / "small"
    small.mkdir()
    for name in ("toy", "shoes"):
        data = dict(np.load(folder / f"{name}.rankings.npz"))
        data.update({k: v[:, :6] for k, v in data.items() if v.ndim == 2})
        np.savez_compressed(small / f"{name}.rankings.npz", **data)
        result = _json(folder, name)
        result["rankings"].update(top=6, sha256=file_digest(str(small / f"{name}.rankings.npz")))
        (small / f"{name}.json").write_text(json.dumps(result))
    code, page, _, _ = _tool([small, "--out", tmp_path / "page"], capsys)
    assert code == 0
    strips = [s for queries in _read_page(page).sections.values() for q in queries for s in q["strips"]]
    assert strips and all(len(s["hits"]) == 6 for s in strips)
    code, _, _, err = _tool([small, "--top", 7, "--out", tmp_path / "page"], capsys)
    assert code == 2 and "the results keep the top 6 of each ranking; give --top 6 or less" in err


def _comparison(results, tmp_path):
    """A comparison folder as bct.tools.compare writes it, with two methods of the catalogue."""
    folder, _ = results
    methods = method_names(include_oracle=False)[:2]
    out = tmp_path / "cmp"
    evals = out / "seed7" / "eval"
    for name in ["old", "oracle", *methods]:
        shutil.copytree(folder, evals / name)
    run = {"seed": 7, "old_self": {}, "oracle_self": {}, "methods": {m: {"self": {}, "cross": {}} for m in methods}}
    for ds in ("toy", "shoes"):
        h = _json(folder, ds)["headline"]
        run["old_self"][ds], run["oracle_self"][ds] = h["old_self"], h["self"]
        for m in methods:
            run["methods"][m]["self"][ds], run["methods"][m]["cross"][ds] = h["self"], h["cross"]
    (out / "results.json").write_text(json.dumps({"per_seed": [run]}))
    Image.new("RGB", (300, 200), (200, 220, 240)).save(out / "self_cross.png")
    return out, methods


def test_a_comparison_gets_one_row_group_per_method(results, tmp_path, capsys):
    folder, methods = _comparison(results, tmp_path)
    code, page, _, _ = _tool([folder, "--queries", 3, "--top", 2, "--out", tmp_path / "page"], capsys)
    assert code == 0
    shown = _read_page(page)
    text = open(page).read()
    for query in shown.sections["toy"]:
        assert [(s["group"], s["test"]) for s in query["strips"]] == [("", "old_self")] + [
            (m, t) for m in methods for t in ("self", "cross")]
    assert "id='bct-method'" in text and all(f"<option value='{m}'>" in text for m in methods)
    assert "plots/self_cross.png" in shown.images and "Self-test and cross-test of every method" in text


def test_an_index_search_page_shows_each_hits_model(tmp_path, capsys):
    from bct.engine.checkpoint import save_checkpoint
    from bct.index import Index
    from bct.models.build import build_model_from_meta
    from bct.tools import index as index_tool
    from helpers import make_image_list

    root = tmp_path / "gallery"
    lst = make_image_list(str(root), n_classes=3, per_class=4, size=32)
    models = {}
    for seed, name in enumerate(("A", "B")):
        torch.manual_seed(seed)
        meta = {"arch": "mobilenet_v3_small", "emb_dim": 16, "num_classes": 3, "role": "new" if seed else "old",
                "loss_type": "softmax", "old_model_path": models.get("A", ""),
                "train_type": "compatible" if seed else "base"}
        models[name] = str(tmp_path / f"{name}.pth")
        save_checkpoint(models[name], {"model": build_model_from_meta(meta).state_dict(), "meta": meta, "epoch": 0,
                                       "config": "EVAL:\n  INPUT_SIZE: 32\n  RESIZE: squash\n"})
    Index.build(str(tmp_path / "idx"), models["A"], list_path=lst, root=str(root), batch_size=4, workers=0,
                progress=False)
    Index.open(str(tmp_path / "idx")).backfill(models["B"], rows=5, batch_size=4, workers=0)
    paths = [line.split()[0] for line in open(lst)][:3]
    argv = ["search", tmp_path / "idx", "--model", models["B"], "--images", ",".join(paths), "--root", root,
            "--k", 5, "--out", tmp_path / "r.json", "--page", tmp_path / "page"]
    run(index_tool.main, [str(a) for a in argv])
    assert f"page: {tmp_path / 'page' / 'index.html'}" in capsys.readouterr().out
    text = open(tmp_path / "page" / "index.html").read()
    got = json.load(open(tmp_path / "r.json"))
    shown = re.findall(r"<figure class='hit tagged' data-id='([^']*)' data-model='([^']*)'>", text)
    assert shown == [(hit["id"], hit["model"]) for q in got for hit in q["results"]]
    assert len({m for _, m in shown}) == 2  # rows of both models, each named
    assert len(re.findall(r"<img src='thumbs/[0-9a-f]+\.jpg'", text)) == 3 + 3 * 5


# -- in a browser ------------------------------------------------------------------------------------

_CHECK = """<script>
window.bctErrors = [];
window.addEventListener('error', function (e) { window.bctErrors.push('error: ' + (e.message || e.target.src)); }, true);
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () {
  window.bctErrors.push(k + ': ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = document.createElement('pre'); out.id = 'bct-check';
  var strips = Array.prototype.slice.call(document.querySelectorAll('.strip'));
  out.textContent = JSON.stringify({images: imgs.length,
    strips: strips.length, shown: strips.filter(function (s) { return s.getClientRects().length > 0; }).length,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; }),
    errors: window.bctErrors});
  document.body.appendChild(out);
});
</script>"""


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on this machine (scripts/run_tests.sh installs Debian's package when it can)")


def _browse(page, shot, profile):
    """(check results, console lines) of ``page`` in headless Chromium; a screenshot into ``shot``."""
    browser = _chromium()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run",
             f"--user-data-dir={profile}"]
    probe = os.path.join(os.path.dirname(page), "bct-check.html")
    text = open(page).read()
    with open(probe, "w") as f:
        f.write(text.replace("<head>", "<head>" + _CHECK, 1))
    done = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                                   f"file://{probe}"], capture_output=True, text=True, timeout=120)
    os.remove(probe)
    found = re.search(r"<pre id=\"bct-check\">(.*?)</pre>", done.stdout, re.S)
    assert found, f"the page did not finish loading in chromium: {done.stderr[-2000:]}"
    subprocess.run(flags + ["--window-size=1400,2200", f"--screenshot={shot}", f"file://{page}"],
                   capture_output=True, timeout=120, check=True)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


@pytest.mark.slow
def test_the_page_in_a_browser(results, tmp_path, capsys):
    folder, _ = results
    cmp_folder, _ = _comparison(results, tmp_path)
    shots = os.environ.get("BCT_SCREENSHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    for what, source, rows in (("results", folder, 3), ("comparison", cmp_folder, 5)):
        code, page, _, _ = _tool([source, "--out", tmp_path / what, "--queries", 4, "--top", 6], capsys)
        assert code == 0
        check, console = _browse(page, os.path.join(shots, f"report_{what}.png"), tmp_path / "profile")
        assert check["images"] > 40 and check["broken"] == [] and check["errors"] == [], check
        assert console == []
        # Two sets of 4 queries; a comparison shows the old self-test and the first method's two rows.
        assert check["strips"] == 2 * 4 * rows and check["shown"] == 2 * 4 * 3
        assert os.path.getsize(os.path.join(shots, f"report_{what}.png")) > 10_000
