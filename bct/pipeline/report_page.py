"""The report page: a static HTML page that shows, query by query, what the old model, the new model
and the new model against the old gallery retrieve, next to the headline numbers and the plots
(docs/evaluation.md, "The report page").

Sources:

- a test tool's results folder (``<set>.json`` with ``<set>.rankings.npz``; the demo, scripts/test.sh,
  scripts/own.sh): per set, the old self-test M(old, old), the new self-test M(new, new) and the
  cross-test M(new, old);
- a comparison folder (``results.json`` of bct.tools.compare, each model's results under
  ``seed<N>/eval/<model>/``): the old self-test and, per method, a group of two rows (self, cross),
  one group shown at a time (a selector in the page, or all);
- an index search (``write_search_page``): each query's hits, framed by the model tag of their rows.

The rankings and APs shown are the evaluation's own, read from the rankings files its results name
(bct.pipeline.results.load_rankings); nothing is searched or scored again here. Per set the page
shows N queries, chosen reproducibly: those the upgrade helped most and hurt most (AP of the
cross-test minus AP of the old self-test; the mean over the methods in a comparison), then random
ones drawn with a recorded seed. Thumbnails (at most 128 px on the long side) are made in parallel
into ``<out>/thumbs``, each named by a digest of the image's path, the size and the image's content,
so a page written again reuses them. The page needs no server, network or script library; a few
lines of inline script choose the method shown in a comparison.
"""
import hashlib
import html
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bct.evaluation.metrics import meets_bct_criterion
from bct.config.methods import method_title
from bct.evaluation.report import set_title
from bct.pipeline.results import load_rankings, load_results
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path, file_digest, write_json_atomic, write_text_atomic

THUMB_PX = 128
DEFAULT_QUERIES = 9
DEFAULT_TOP = 10
DEFAULT_SEED = 0
PAGE_RECORD = "page.json"
MISSING = "missing.png"
TESTS = {"old_self": "old self-test M(old, old)", "self": "new self-test M(new, new)",
         "cross": "cross-test M(new, old)"}
# Frame colours of the relevance codes of bct.evaluation.sets (wrong, positive or easy, hard, junk), and a
# mark under each thumbnail that says the same without colour.
COLOURS = {0: "#d7191c", 1: "#33a02c", 2: "#0b4d1c", 3: "#9e9e9e"}
MARKS = {0: "✗", 1: "✓", 2: "✓", 3: "–"}
PLOT_CAPTIONS = {
    "self_cross.png": "Self-test and cross-test of every method beside the old model's and the oracle's self-tests "
                      "(headline mAP x100); the number over each cross bar is cross-test minus old self-test.",
    "backfill.png": "Partial backfill: headline mAP x100 of new-model queries as a growing share of the gallery "
                    "is re-embedded (0 %: the cross-test, 100 %: the self-test).",
    "heatmaps.png": "Compatibility matrices of the model generations: queries of the row's model against the "
                    "column's gallery (headline mAP x100); a red frame marks a pair that fails M[i][j] > M[j][j].",
    "compat_matrix.png": "Compatibility matrix: queries of the row's model against the column's gallery (headline "
                         "mAP x100); a red frame marks a pair that fails M[i][j] > M[j][j].",
}


# -- choosing the queries --------------------------------------------------------------------------

def choose_queries(delta: np.ndarray, n: int, seed: int, words=("helped most", "hurt most")) -> list:
    """[(query index, label)] of at most ``n`` queries: about a third with the largest positive
    ``delta`` (labelled ``words[0]``), a third with the most negative (``words[1]``), the rest drawn at
    random with ``seed`` from the others. Queries whose delta is NaN (no positive) are never chosen;
    ties go to the lower index."""
    delta = np.asarray(delta, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(delta))
    n = min(int(n), valid.size)
    n_up, n_down = (n + 2) // 3, (n + 1) // 3
    order = valid[np.lexsort((valid, -delta[valid]))]
    up = [int(q) for q in order if delta[q] > 0][:n_up]
    down = [int(q) for q in order[::-1] if delta[q] < 0 and q not in up][:n_down]
    chosen = [(q, f"{words[0]} #{i + 1}") for i, q in enumerate(up)]
    chosen += [(q, f"{words[1]} #{i + 1}") for i, q in enumerate(down)]
    rest = np.array([q for q in valid if q not in set(up) | set(down)], dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = rng.permutation(rest)[:n - len(chosen)] if rest.size else rest
    chosen += [(int(q), f"random (seed {seed})") for q in picked]
    return chosen


# -- thumbnails --------------------------------------------------------------------------------------

def thumbnail_name(path: str, px: int = THUMB_PX) -> str:
    """The thumbnail's file name: a digest of the image's absolute path, the size and its content."""
    key = f"{os.path.abspath(path)}\0{px}\0{file_digest(path)}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + ".jpg"


def _thumbnail(path: str, folder: str, px: int):
    from PIL import Image

    try:
        name = thumbnail_name(path, px)
    except OSError:
        return None
    target = os.path.join(folder, name)
    if os.path.isfile(target):
        return name
    try:
        with Image.open(path) as img:
            img.draft("RGB", (px, px))
            img = img.convert("RGB")
            img.thumbnail((px, px))
            with atomic_path(target, sync=False) as tmp:
                img.save(tmp, format="JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return name


def make_thumbnails(paths, folder: str, px: int = THUMB_PX, workers: int = 0) -> dict:
    """{path: thumbnail file name in ``folder``} of every path, made in parallel (``workers``
    threads, default one per CPU) and reused when already there; an image that cannot be read maps
    to None."""
    os.makedirs(folder, exist_ok=True)
    paths = sorted(set(paths))
    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        names = list(pool.map(lambda p: _thumbnail(p, folder, px), paths))
    return dict(zip(paths, names))


def _missing_image(folder: str) -> None:
    """The grey square shown where an image could not be read."""
    from PIL import Image, ImageDraw

    target = os.path.join(folder, MISSING)
    if os.path.isfile(target):
        return
    img = Image.new("RGB", (96, 72), (235, 235, 235))
    ImageDraw.Draw(img).text((14, 30), "no image", fill=(90, 90, 90))
    with atomic_path(target, sync=False) as tmp:
        img.save(tmp, format="PNG")


# -- the page's data -----------------------------------------------------------------------------------

def _fmt(value, digits=2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _ap_text(ap: float) -> str:
    return "n/a" if not math.isfinite(ap) else f"{100 * ap:.1f}"


class SetView:
    """One set of the page: its numbers, the rows shown (each a test of one model group) and the queries."""

    def __init__(self, name: str, result: dict, rankings: dict):
        self.name, self.result, self.rankings = name, result, rankings
        self.title = result.get("title") or set_title(name)
        self.rows = []  # [(group, test, label, {'ids', 'rel', 'ap'})]
        self.numbers = ""
        self.queries = []

    def add(self, group: str, test: str, label: str, data: dict) -> None:
        if data["ids"].shape[0] != len(self.rankings["query_paths"]):
            raise BadInputError(f"set {self.name}: the rankings of {label} hold {data['ids'].shape[0]} queries, "
                                f"others {len(self.rankings['query_paths'])}; test every model on the same set")
        self.rows.append((group, test, label, data))


def _criterion_html(old: float, new: float, cross: float) -> str:
    met = meets_bct_criterion(old, new, cross)
    return (f"<span class='{'met' if met else 'notmet'}'>{'met' if met else 'not met'}</span> "
            f"(cross − old self {cross - old:+.2f}, new self − old self {new - old:+.2f})")


_CRITERION = ("<p class='note'>The BCT criterion holds when the cross-test beats the old self-test and the new "
              "self-test beats it too (docs/evaluation.md).</p>")


def _bar(value, scale: float = 1.2) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"<span class='bar' style='width:{max(1, round(value * scale))}px'></span>"


def _eval_sets(folder: str) -> tuple:
    """(set views, overview html, source words) of a test tool's results folder."""
    results = load_results(folder)
    views, rows = [], []
    for name, r in results.items():
        view = SetView(name, r, load_rankings(folder, r))
        tests = view.rankings["tests"]
        for test in ("old_self", "self", "cross"):
            if test in tests:
                view.add("", test, TESTS[test], tests[test])
        h = r["headline"]
        cells = "".join(f"<td>{_fmt(h.get(t))} {_bar(h.get(t))}</td>" for t in ("old_self", "self", "cross"))
        crit = (_criterion_html(h["old_self"], h["self"], h["cross"]) if "old_self" in h and "cross" in h
                else "no old self-test or cross-test: no criterion")
        rows.append(f"<tr><th>{html.escape(view.title)}</th><td class='l'>{html.escape(r['headline_name'])}</td>"
                    f"{cells}<td class='l'>{crit}</td></tr>")
        view.numbers = (f"{html.escape(r['headline_name'])} x100: " +
                        ", ".join(f"{TESTS[t]} <b>{_fmt(h[t])}</b>" for t in ("old_self", "self", "cross") if t in h)
                        + (f"; BCT criterion {crit}." if "old_self" in h and "cross" in h else "."))
        if r.get("backfill"):
            view.numbers += (" Partial backfill (share re-embedded: mAP): " +
                             ", ".join(f"{100 * a:.0f} %: {b:.2f}" for a, b in r["backfill"]) + ".")
        views.append(view)
    first = next(iter(results.values()))
    models = first.get("models") or {}
    who = ", ".join(f"{role} model {html.escape(str(m.get('path', '')))}" for role, m in models.items())
    overview = ("<table class='nums'><tr><th>Set</th><th class='l'>headline</th><th>old self-test</th>"
                "<th>new self-test</th><th>cross-test</th><th class='l'>BCT criterion</th></tr>" + "".join(rows) +
                f"</table>{_CRITERION}")
    return views, overview, f"the test results in {html.escape(folder)} ({who})"


def _compare_sets(folder: str) -> tuple:
    """(set views, overview html, source words, methods) of a comparison folder (its first seed)."""
    from bct.utils.fileio import read_text

    record = json.loads(read_text(os.path.join(folder, "results.json")))
    per_seed = record.get("per_seed") or []
    if not per_seed:
        raise BadInputError(f"{folder}/results.json holds no seed; run bct.tools.compare again")
    run = per_seed[0]
    seed, methods = run["seed"], list(run["methods"])
    evals = os.path.join(folder, f"seed{seed}", "eval")
    if not os.path.isdir(evals):
        raise BadInputError(f"{evals} does not exist: this comparison was run before it kept each model's results; "
                            "run bct.tools.compare again (finished trainings are reused)")
    old = load_results(os.path.join(evals, "old"))
    per_method = {m: load_results(os.path.join(evals, m)) for m in methods}
    views, rows = [], []
    for name in run["old_self"]:
        view = SetView(name, old[name], load_rankings(os.path.join(evals, "old"), old[name]))
        view.add("", "old_self", TESTS["old_self"], view.rankings["tests"]["self"])
        o = run["old_self"][name]
        lines = [f"old self-test <b>{_fmt(o)}</b>, oracle self-test {_fmt(run['oracle_self'][name])}<br>"]
        for m in methods:
            r = per_method[m][name]
            ranks = load_rankings(os.path.join(evals, m), r)
            title = method_title(m)
            view.add(m, "self", f"{title}: new self-test", ranks["tests"]["self"])
            view.add(m, "cross", f"{title}: cross-test", ranks["tests"]["cross"])
            s, c = run["methods"][m]["self"][name], run["methods"][m]["cross"][name]
            crit = _criterion_html(o, s, c)
            lines.append(f"<span data-group='{html.escape(m)}'>{html.escape(title)}: new self-test <b>{_fmt(s)}</b>, "
                         f"cross-test <b>{_fmt(c)}</b>; BCT criterion {crit}<br></span>")
            rows.append(f"<tr><th>{html.escape(view.title)}</th><td class='l'>{html.escape(title)}</td>"
                        f"<td>{_fmt(o)} {_bar(o)}</td><td>{_fmt(s)} {_bar(s)}</td><td>{_fmt(c)} {_bar(c)}</td>"
                        f"<td class='l'>{crit}</td></tr>")
        view.numbers = f"{html.escape(old[name]['headline_name'])} x100 (seed {seed}): " + "".join(lines)
        views.append(view)
    overview = ("<table class='nums'><tr><th>Set</th><th class='l'>method</th><th>old self-test</th>"
                "<th>new self-test</th><th>cross-test</th><th class='l'>BCT criterion</th></tr>" + "".join(rows) +
                f"</table>{_CRITERION}<p class='note'>Numbers and rankings of seed {seed}"
                + (f" (of {len(per_seed)} seeds; results.md has their means)" if len(per_seed) > 1 else "") + ".</p>")
    return views, overview, f"the comparison in {html.escape(folder)}", methods


def _choose(view: SetView, n: int, seed: int) -> None:
    tests = {}
    for group, test, _, data in view.rows:
        tests.setdefault(test, []).append(data["ap"])
    if "cross" in tests and "old_self" in tests:
        view.delta = np.mean(tests["cross"], axis=0) - tests["old_self"][0]
        words = ("helped most", "hurt most")
        view.basis = ("AP of the cross-test minus AP of the old self-test" +
                      (", the mean over the methods" if len(tests["cross"]) > 1 else ""))
        view.queries = choose_queries(view.delta, n, seed, words)
    else:
        ap = np.asarray(tests["self"][0], dtype=np.float64)
        view.delta = None
        view.basis = "AP of the new self-test, above and below its median (no old self-test or cross-test here)"
        median = np.nanmedian(ap) if np.isfinite(ap).any() else 0.0
        view.queries = choose_queries(ap - median, n, seed, ("best", "worst"))


# -- writing -------------------------------------------------------------------------------------------

_CSS = """
[hidden]{display:none !important}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:18px 26px;color:#1d1d1d;max-width:1500px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:30px 0 4px;border-bottom:2px solid #444}
.note{color:#555;font-size:13px;margin:4px 0}
table.nums{border-collapse:collapse;margin:8px 0}
table.nums td,table.nums th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right;vertical-align:middle;
white-space:nowrap}
table.nums .l{text-align:left}
.bar{display:inline-block;height:9px;background:#7b9cc4;vertical-align:middle}
.met{color:#1b7a2a;font-weight:600} .notmet{color:#c0171c;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:18px} .plots figure{margin:0;max-width:720px}
.plots img{max-width:100%;border:1px solid #ddd} .plots figcaption{font-size:13px;color:#333}
.legend{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin:6px 0;font-size:13px}
.legend span.sw{display:inline-block;width:14px;height:14px;border:3px solid;margin-right:4px;vertical-align:middle}
.query{display:flex;gap:14px;padding:10px 0;border-top:1px solid #ccc}
.qinfo{width:150px;flex:none;font-size:12px;word-break:break-all}
.qinfo img{display:block;width:128px;height:96px;object-fit:contain;background:#eee;border:3px solid #333;
margin-bottom:3px}
.qinfo .tag{font-weight:600;font-size:13px;word-break:normal}
.strip{display:flex;align-items:flex-start;gap:5px;margin:3px 0}
.slabel{width:170px;flex:none;font-size:12px;padding-top:6px}
.slabel b{font-size:13px}
figure.hit{margin:0;width:78px;text-align:center}
figure.hit img{display:block;width:72px;height:54px;object-fit:cover;border:3px solid #999;background:#eee}
figure.hit figcaption{font-size:10px;color:#444;line-height:1.2;word-break:break-all}
figure.hit.tagged{width:112px} figure.hit.tagged img{width:106px;height:72px}
.picker{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ccc;z-index:1}
"""

_PICK_JS = """
function bctPick(m){document.querySelectorAll('[data-group]').forEach(function(e){
var g=e.getAttribute('data-group');e.hidden=!(g===''||m==='*'||g===m);});}
bctPick(document.getElementById('bct-method').value);
"""


def _legend(relevance: dict) -> str:
    items = [f"<span><span class='sw' style='border-color:{COLOURS.get(code, '#999')}'></span>"
             f"{html.escape(words)} {MARKS.get(code, '')}</span>" for code, words in sorted(relevance.items(), key=lambda kv: (kv[0] == 0, kv[0]))]
    return "<div class='legend'>Frames: " + "".join(items) + "</div>"


def _img(thumbs: dict, path: str, alt: str, frame: str = "") -> str:
    name = thumbs.get(path)
    src = f"thumbs/{name}" if name else f"thumbs/{MISSING}"
    style = f" style='border-color:{frame}'" if frame else ""
    return f"<img src='{html.escape(src)}' alt='{html.escape(alt)}' title='{html.escape(alt)}'{style}>"


def _set_html(view: SetView, top: int, thumbs: dict) -> str:
    r = view.rankings
    out = [f"<section id='set-{html.escape(view.name)}'><h2>{html.escape(view.title)}</h2>",
           f"<p>{view.numbers}</p>"]
    notes = []
    if view.result.get("no_positive_queries"):
        notes.append(f"{view.result['no_positive_queries']} queries have no positive in the gallery and are never "
                     "chosen")
    notes.append(f"Queries chosen by {view.basis}; each row is one ranking, its {r['ap_name']} x100 on the left")
    out.append(f"<p class='note'>{'. '.join(notes)}.</p>")
    out.append(_legend(r["relevance"]))
    # Each query is named by its path below the folder all the queries share (an own set: class/image).
    paths = r["query_paths"]
    shared = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    for q, label in view.queries:
        qpath = r["query_paths"][q]
        group = r["query_groups"][q] if r["query_groups"] else ""
        delta = "" if view.delta is None else f"<br>Δ AP {100 * view.delta[q]:+.1f}"
        out.append(f"<div class='query' data-query='{q}'><div class='qinfo'>"
                   f"{_img(thumbs, qpath, f'query {q}: {qpath}')}<div class='tag'>{html.escape(label)}</div>"
                   f"query {q}{f' ({html.escape(group)})' if group else ''}<br>{html.escape(os.path.relpath(qpath, shared))}"
                   f"{delta}</div><div>")
        for group_name, test, label_words, data in view.rows:
            ap = float(data["ap"][q])
            out.append(f"<div class='strip' data-group='{html.escape(group_name)}' data-test='{test}' "
                       f"data-ap='{ap!r}'><div class='slabel'>{html.escape(label_words)}<br>"
                       f"<b>{html.escape(r['ap_name'])} {_ap_text(ap)}</b></div>")
            for rank in range(min(top, data["ids"].shape[1])):
                gid, code = int(data["ids"][q, rank]), int(data["rel"][q, rank])
                path = r["gallery"][gid]
                words = r["relevance"].get(code, str(code))
                out.append(f"<figure class='hit' data-id='{gid}' data-rel='{code}'>"
                           f"{_img(thumbs, path, f'rank {rank + 1}: {path} ({words})', COLOURS.get(code, '#999'))}"
                           f"<figcaption>{rank + 1} {MARKS.get(code, '')}</figcaption></figure>")
            out.append("</div>")
        out.append("</div></div>")
    out.append("</section>")
    return "\n".join(out)


def _page(title: str, intro: str, body: str, picker: str = "") -> str:
    script = f"<script>{_PICK_JS}</script>" if picker else ""
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='generator' content='bct.tools.report'><style>{_CSS}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1>{intro}{picker}\n{body}\n{script}</body></html>\n")


def _check_out(out: str, source: str) -> None:
    """Refuse an ``out`` that holds something other than a page of this tool, or that is ``source``."""
    if os.path.realpath(out) == os.path.realpath(source):
        raise BadInputError(f"--out {out} is the folder the page is made from; give another folder")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, PAGE_RECORD)):
        raise BadInputError(f"--out {out} holds files that no report page wrote (no {PAGE_RECORD}); give an empty "
                            "or new folder")


def _copy_plots(folder: str, out: str) -> list:
    """[(relative path in out, caption)] of the PNGs of ``folder`` (and its generations/ folder)."""
    found = []
    for sub in ("", "generations"):
        where = os.path.join(folder, sub)
        if not os.path.isdir(where):
            continue
        for name in sorted(os.listdir(where)):
            if name.lower().endswith(".png") and os.path.isfile(os.path.join(where, name)):
                rel = os.path.join("plots", f"{sub}_{name}" if sub else name)
                os.makedirs(os.path.join(out, "plots"), exist_ok=True)
                with atomic_path(os.path.join(out, rel), sync=False) as tmp:
                    shutil.copyfile(os.path.join(where, name), tmp)
                found.append((rel, PLOT_CAPTIONS.get(name, name)))
    return found


def write_report_page(folder: str, out: str, queries: int = DEFAULT_QUERIES, top: int | None = None,
                      seed: int = DEFAULT_SEED) -> str:
    """Write the report page of a results or comparison ``folder`` (module docstring) into ``out``
    (``index.html``, ``thumbs/``, ``plots/``, ``page.json``); returns the page's path. ``top`` None:
    DEFAULT_TOP, or all that the rankings keep when they keep fewer (a small gallery)."""
    if not os.path.isdir(folder):
        raise BadInputError(f"{folder} is not a folder; give a results folder of bct.tools.test or a comparison "
                            "folder of bct.tools.compare")
    _check_out(out, folder)
    methods = []
    if os.path.isfile(os.path.join(folder, "results.json")):
        views, overview, source, methods = _compare_sets(folder)
        kind = "comparison"
    else:
        views, overview, source = _eval_sets(folder)
        kind = "results"
    kept = min(v.rankings["top"] for v in views)
    if top is None:
        top = min(DEFAULT_TOP, kept)
    elif top > kept:
        raise BadInputError(f"--top {top}: the results keep the top {kept} of each ranking; give --top {kept} or less")
    paths = []
    for view in views:
        _choose(view, queries, seed)
        r = view.rankings
        for q, _ in view.queries:
            paths.append(r["query_paths"][q])
            for _, _, _, data in view.rows:
                paths += [r["gallery"][int(i)] for i in data["ids"][q, :top]]
    thumbs = make_thumbnails(paths, os.path.join(out, "thumbs"))
    missing = sum(1 for p in set(paths) if thumbs.get(p) is None)
    if missing:
        _missing_image(os.path.join(out, "thumbs"))
    plots = _copy_plots(folder, out)
    plot_html = ("<div class='plots'>" + "".join(
        f"<figure><img src='{html.escape(rel)}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption>"
        "</figure>" for rel, cap in plots) + "</div>") if plots else (
        "<p class='note'>No plots in this folder (bct.tools.compare and bct.tools.compat_matrix draw them); the "
        "bars above show the headline numbers.</p>")
    intro = (f"<p class='note'>Made by <code>python -m bct.tools.report</code> from {source}. Per set: {queries} "
             f"queries (the upgrade helped most, hurt most, and random ones drawn with seed {seed}), each with the "
             f"top {top} of every ranking as the evaluation ranked and scored it." +
             (f" {missing} images could not be read and show as grey squares." if missing else "") + "</p>")
    picker = ""
    if methods:
        options = "".join(f"<option value='{html.escape(m)}'>{html.escape(method_title(m))}</option>"
                          for m in methods)
        picker = (f"<div class='picker'><label>Method shown: <select id='bct-method' onchange='bctPick(this.value)'>"
                  f"{options}<option value='*'>all methods</option></select></label> "
                  "<span class='note'>(the old self-test row is every method's)</span></div>")
    body = (f"<section id='overview'><h2>Headline numbers</h2>{overview}{plot_html}</section>\n"
            + "\n".join(_set_html(v, top, thumbs) for v in views))
    title = f"bct report: {os.path.basename(os.path.normpath(os.path.abspath(folder)))}"
    page = os.path.join(out, "index.html")
    write_text_atomic(page, _page(title, intro, body, picker))
    write_json_atomic(os.path.join(out, PAGE_RECORD), {
        "source": os.path.abspath(folder), "kind": kind, "queries": queries, "top": top, "seed": seed,
        "sets": {v.name: [{"query": q, "label": label} for q, label in v.queries] for v in views}}, indent=1)
    return page


def write_search_page(index, result, query_paths, out: str, top: int = DEFAULT_TOP) -> str:
    """Write a page of an index search (bct.index's SearchResult ``result`` of ``index``) into ``out``:
    each query (``query_paths``: its image, or None for a vector) with its hits, each framed and
    captioned by the model tag of its row. Returns the page's path."""
    _check_out(out, index.path)
    root = (index.status().get("gallery") or {}).get("root") or ""
    hits = [[os.path.join(root, str(i)) for i in row] for row in result.ids]
    paths = [p for p in query_paths if p] + [p for row in hits for p in row[:top]]
    thumbs = make_thumbnails(paths, os.path.join(out, "thumbs"))
    if any(thumbs.get(p) is None for p in paths) or not all(query_paths):
        _missing_image(os.path.join(out, "thumbs"))
    palette = ["#1f78b4", "#e66101", "#5e3c99", "#1b9e77", "#b2182b", "#7f7f7f"]
    colour = {code: palette[i % len(palette)] for i, code in enumerate(sorted(result.tags))}
    legend = "<div class='legend'>Frames: the model that embedded the row: " + "".join(
        f"<span><span class='sw' style='border-color:{colour[c]}'></span>{html.escape(str(t))}</span>"
        for c, t in sorted(result.tags.items())) + "</div>"
    body = [legend]
    for q, name in enumerate(result.queries):
        qpath = query_paths[q]
        body.append(f"<div class='query' data-query='{q}'><div class='qinfo'>"
                    f"{_img(thumbs, qpath, f'query: {qpath}') if qpath else _img({}, '', f'vector {name}')}"
                    f"<div class='tag'>query {q}</div>{html.escape(str(name))}</div><div><div class='strip'>")
        for rank in range(min(top, result.rows.shape[1])):
            code = int(result.models[q, rank])
            tag = str(result.tags[code])
            path = hits[q][rank]
            body.append(f"<figure class='hit tagged' data-id='{html.escape(str(result.ids[q][rank]))}' data-model='"
                        f"{html.escape(tag)}'>{_img(thumbs, path, f'rank {rank + 1}: {path} ({tag})', colour[code])}"
                        f"<figcaption>{rank + 1} · {float(result.scores[q, rank]):.3f}<br>{html.escape(tag)}"
                        "</figcaption></figure>")
        body.append("</div></div></div>")
    intro = (f"<p class='note'>Made by <code>python -m bct.tools.index search --page</code>: the top {top} rows of "
             f"index {html.escape(index.path)} for {len(result.queries)} queries (score: inner product).</p>")
    page = os.path.join(out, "index.html")
    write_text_atomic(page, _page(f"bct index search: {os.path.basename(index.path)}", intro, "\n".join(body)))
    write_json_atomic(os.path.join(out, PAGE_RECORD), {"source": index.path, "kind": "index search", "top": top,
                                                       "queries": len(result.queries)}, indent=1)
    return page
