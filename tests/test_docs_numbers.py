"""The numbers the docs quote from a results file are the results file's.

Results files: docs/results/results.json (the synthetic benchmark, three seeds),
docs/results/generations/results.json with each chain's compat_matrix.json, docs/results/demo.json
(the demo on two machines). The tables are generated from them (benchmarks/results_docs.py; the
first test runs its --check). The prose around them stays hand-written, and here:

- every 2-decimal number of a results section is a quantity computed from the results files (a
  value of one seed, a mean or standard deviation over seeds, a difference, a P-score...), a number
  of the paper's table, or a measurement the docs record in a table of their own;
- every range (``15-26 points``, ``5-12x``, ``0.98-2.15``) of a results section has an entry in
  RANGES that computes what it spans, and must contain the computed minimum and maximum at the
  precision it is written in without going a whole unit beyond them (or an entry in NOT_RESULTS
  saying why it is not a result);
- every ratio or rounded value in VALUES, and each claim of the tests below, is recomputed.

Runs in well under a second; no training.
"""
import os
import re

import numpy as np
import pytest

from benchmarks import results_docs as rd

REPO = rd.REPO
RES = rd.load()
BENCH, GENS, DEMO = RES["bench"], RES["generations"], RES["demo"]
SETS, METHODS = rd.SETS, rd.METHODS
MEANS = rd.bench_means(BENCH)
RUNS = BENCH["per_seed"]

# The paper's Table (class split, old resnet18 on 30 % of the classes; self / cross x100, P-scores)
# and its data-split row.
PAPER = {
    "old": [74.29, 54.34, 11.43], "oracle": [81.15, 63.85, 16.48],
    "bct": [79.45, 76.13, 58.94, 53.43, 14.79, 12.26, 48.33, 52.79, 50.41],
    "lce": [81.26, 76.78, 60.49, 54.29, 16.07, 12.04, 49.37, 53.95, 51.51],
    "unibct": [76.92, 74.55, 59.07, 57.82, 14.80, 12.31, 48.09, 54.78, 51.17],
    "hot_refresh": [78.93, 75.33, 60.31, 51.68, 14.00, 10.41, 48.06, 47.26, 47.57],
    "advbct": [82.05, 77.16, 64.51, 54.82, 16.44, 12.05, 50.16, 54.87, 52.35],
    "data_split": [75.45, 49.15, 10.03, 82.78, 78.55, 62.13, 52.31, 15.71, 11.49, 53.45],
}

# doc -> the sections whose numbers come from results files (None: the whole file)
SCOPES = {
    "README.md": ["Quick start", "Results on the synthetic benchmark"],
    "docs/results/README.md": None,
    "docs/generations.md": ["What it trains, and what it costs", "Results on the synthetic benchmark"],
    "data/README.md": ["The regime: what mirrors the paper"],
}


# -- reading the docs ---------------------------------------------------------------------------------
def read(doc: str) -> str:
    with open(os.path.join(REPO, doc), encoding="utf-8") as f:
        return f.read()


def section(text: str, title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(title)}\n", text, flags=re.M)
    assert m, f"no section '{title}'"
    level = len(m.group(1))
    end = re.search(rf"^#{{1,{level}}} ", text[m.end():], flags=re.M)
    return text[m.end():m.end() + end.start()] if end else text[m.end():]


def scope(doc: str, keep_generated: bool = False) -> str:
    """The results sections of a doc, whitespace collapsed; generated blocks left out (the --check
    test covers them) unless asked for."""
    text = read(doc)
    parts = [text] if SCOPES[doc] is None else [section(text, t) for t in SCOPES[doc]]
    out = "\n".join(parts)
    if not keep_generated:
        out = re.sub(r"<!-- generated:.*?<!-- /generated -->", "", out, flags=re.S)
    out = re.sub(r"<!--.*?-->", "", out, flags=re.S)
    return re.sub(r"\s+", " ", out)


def tables(text: str) -> list:
    """Every markdown table of a text as a list of rows, each a list of cells (header included)."""
    out, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            out.append(rows)
            rows = []
    return out


def num(s: str) -> float:
    return float(s.replace("\u2212", "-").replace("*", "").strip())


def nums(cell: str) -> list:
    """The numbers of a cell such as '30.09 / 20.70 / 24.77' or '+1.03 / -0.25'."""
    return [num(x) for x in re.findall(r"[+\-\u2212]?\d+(?:\.\d+)?", cell)]


REGIME = section(read("data/README.md"), "The regime: what mirrors the paper")
REGIME_TABLES = tables(REGIME)


def regime_row(first_cell_start: str) -> dict:
    """{column header: numbers} of the row of data/README.md's regime tables whose first cell starts
    with the given text (bold marks dropped)."""
    hits = [dict(zip(t[0], (nums(c) for c in row))) | {"_label": row[0]}
            for t in REGIME_TABLES for row in t[1:] if row[0].replace("*", "").startswith(first_cell_start)]
    assert len(hits) == 1, f"{len(hits)} rows of data/README.md's regime tables start with {first_cell_start!r}"
    return hits[0]


# -- every quantity of the results files --------------------------------------------------------------
def result_values() -> list:
    """Every number of the results files and every difference the docs quote, x100 where the
    docs write percentages."""
    vals = []
    heads = ["self", "cross"]
    for run in RUNS:
        for ds in SETS:
            old, oracle = run["old_self"][ds], run["oracle_self"][ds]
            vals += [old, oracle, run["oracle_cross"][ds], oracle - old]
            for m in METHODS:
                e = run["methods"][m]
                vals += [e[h][ds] for h in heads] + [e["cross"][ds] - old, e["self"][ds] - old, e["self"][ds] - oracle]
                vals += [run["curves"][m][ds][i][1] for i in range(len(run["curves"][m][ds]))]
        for m in METHODS:
            sc = run["methods"][m]["scores"]
            vals += [sc[s] for s in rd.SCORES] + [100 * sc["gain"]]
            vals += [v for d in sc["per_dataset"].values() for k, v in d.items() if k != "gain"]
        vals += list(run["train_seconds"].values())
    for (model, part, ds), (mean, sd) in MEANS.items():
        vals += [mean, sd, mean - MEANS[("old", "self", ds)][0]]
        if model not in ("old", "oracle"):
            vals.append(mean - MEANS[("oracle", "self", ds)][0])
    for m, e in BENCH["aggregate"]["methods"].items():
        for s, (mean, sd) in e["scores"].items():
            vals += [mean, sd] if s != "gain" else [100 * mean, 100 * sd]
        vals += [x for curve in e["curves"].values() for point in curve for x in point[1:]]
    for c, chain in GENS["chains"].items():
        vals += [chain["AC"], chain["AMA"]]
        for p in chain["consecutive"]:
            vals += [p[s] for s in rd.SCORES] + [100 * p["gain"]]
            vals += [v for d in p["per_dataset"].values() for v in d.values()]
        vals.append(np.mean([d["matrix"][i][i] for d in chain["datasets"].values() for i in range(1, len(d["matrix"]))]))
        for d in chain["datasets"].values():
            vals += [d["AC"], d["AMA"]]
            mat = d["matrix"]
            for i, row in enumerate(mat):
                for j, v in enumerate(row[:i + 1]):
                    vals += [v, v - mat[j][j]]
    vals += list(GENS["train_seconds"].values()) + [GENS["wall_seconds"]]
    runs = rd.demo_runs(RES)
    for r in runs:
        for ds, h in r["headline"].items():
            vals += list(h.values()) + [h["cross"] - h["old_self"], h["self"] - h["old_self"]]
    for ds in SETS:
        for k in ("old_self", "self", "cross"):
            vals.append(runs[1]["headline"][ds][k] - runs[0]["headline"][ds][k])
    return vals


def documented_values() -> list:
    """Measurements whose results files were not kept, recorded in the tables of data/README.md's
    regime section (the earlier recipes and the probes that chose the benchmark)."""
    return [x for t in REGIME_TABLES for row in t[1:] for cell in row[1:] for x in nums(cell)]


def _keys(values) -> tuple:
    signed = {f"{v:+.2f}" for v in values} | {f"{-v:+.2f}" for v in values if v == 0}
    return signed, {f"{abs(v):.2f}" for v in values}


KNOWN = _keys(result_values() + documented_values() + [x for row in PAPER.values() for x in row])

# 2-decimal numbers of the results sections that are neither in a results file nor in a table:
# measurements whose results files were not kept, and other numbers, each with what it is.
NOT_KEPT = {
    "README.md": {"3.11": "the Python version"},
    "docs/results/README.md": {
        "1.11": "10-epoch recipe, seed 1234's GLDv2 margin (data/README.md)",
        "53.23": "10-epoch recipe, LCE's P_1", "50.32": "10-epoch recipe, Hot-refresh's P_comp",
        "45.86": "10-epoch recipe, Hot-refresh's P_1", "42.87": "6-epoch recipe, the oracle's self-test",
        "34.63": "6-epoch recipe, the oracle's self-test", "37.26": "6-epoch recipe, the oracle's self-test",
        "52.96": "6-epoch recipe, LCE's P_1", "50.08": "6-epoch recipe, AdvBCT's P_1",
    },
    "data/README.md": {
        "0.03": "a learning rate", "0.06": "a learning rate", "0.23": "old classes per embedding dimension",
        "0.82": "the discriminator's accuracy (training log)", "0.54": "the discriminator's accuracy (training log)",
        "-1.11": "10-epoch recipe, GLDv2 margin per seed", "-1.72": "10-epoch recipe, GLDv2 margin per seed",
        "+3.71": "10-epoch recipe, GLDv2 margin per seed",
    },
}

RANGE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[-\u2013](\d+(?:\.\d+)?)(?![\w.]*\d)")
TWO_DECIMALS = re.compile(r"(?<![\w.])([+\-\u2212]?)(\d+\.\d\d)(?![\d.]*\d)")


@pytest.mark.parametrize("doc", sorted(SCOPES))
def test_every_two_decimal_number_is_a_result(doc):
    signed, unsigned = KNOWN
    allowed = NOT_KEPT.get(doc, {})
    wrong = []
    text = scope(doc)
    in_ranges = [m.span() for m in RANGE.finditer(text)]  # checked by the range tests
    for m in TWO_DECIMALS.finditer(text):
        if any(a <= m.start() < b for a, b in in_ranges):
            continue
        sign, digits = m.group(1).replace("\u2212", "-"), m.group(2)
        if sign + digits in allowed or (not sign and digits in allowed):
            continue
        if (sign and sign + digits not in signed) or (not sign and digits not in unsigned):
            wrong.append(f"{sign}{digits} in '...{text[max(0, m.start() - 60):m.end() + 20]}...'")
    assert not wrong, f"{doc}: numbers that no results file holds:\n" + "\n".join(wrong)


@pytest.mark.catalogue
def test_generated_blocks_are_current():
    stale = [doc for doc, _ in rd.stale(REPO)]
    assert not stale, f"{stale}: generated blocks are stale; run python benchmarks/results_docs.py"


def test_the_generator_rewrites_a_stale_block(tmp_path):
    doc = "docs/generations.md"
    text = read(doc)
    edited = text.replace("| AdvBCT | 0.22 |", "| AdvBCT | 0.99 |")
    assert edited != text
    assert rd.updated(edited, doc, rd.render_blocks(RES)) == text
    with pytest.raises(ValueError, match="generated blocks"):
        rd.updated(text.replace("<!-- /generated -->", ""), doc, rd.render_blocks(RES))


# -- ranges ---------------------------------------------------------------------------------------------
def per_seed(fn) -> list:
    return [fn(run, ds) for run in RUNS for ds in SETS]


def chain(c: str, ds: str) -> list:
    return GENS["chains"][c]["datasets"][ds]["matrix"]


def demo(ds: str) -> tuple:
    a, b = rd.demo_runs(RES)
    return a["headline"][ds], b["headline"][ds]


def _rows3(label: str, col: str) -> list:
    return regime_row(label)[col]


def _diff(a: list, b: list) -> list:
    return [x - y for x, y in zip(a, b)]


# (doc, pattern around the range: group r is the range, values the range spans)
RANGES = [
    ("README.md", r"lifts the cross-test (?P<r>\S+)x above chance",
     lambda: [MEANS[(m, "cross", ds)][0] / MEANS[("oracle", "cross", ds)][0] for m in METHODS for ds in SETS]),
    ("README.md", r"new self-tests (?P<r>\S+) points apart",
     lambda: [abs(demo(ds)[1]["self"] - demo(ds)[0]["self"]) for ds in SETS]),
    ("docs/results/README.md", r"the seven models (?P<r>\S+) s each",
     lambda: list(RUNS[0]["train_seconds"].values())),
    ("docs/results/README.md", r"an oracle (?P<r>\S+) points above it",
     lambda: per_seed(lambda r, ds: r["oracle_self"][ds] - r["old_self"][ds])),
    ("docs/results/README.md", r"new self-test is above the old one by (?P<r>\S+) points on every seed and set",
     lambda: per_seed(lambda r, ds: r["methods"]["advbct"]["self"][ds] - r["old_self"][ds])),
    ("docs/results/README.md", r"standard deviations (?P<r>[\d.\-]+)\)",
     lambda: [BENCH["aggregate"]["methods"][m]["scores"]["P_comp"][1] for m in ("bct", "advbct", "hot_refresh", "unibct")]),
    ("docs/results/README.md", r"the new self-test by (?P<r>\S+) and",
     lambda: [abs(demo(ds)[1]["self"] - demo(ds)[0]["self"]) for ds in SETS]),
    ("docs/results/README.md", r"the cross-test by (?P<r>[\d.\-]+);",
     lambda: [abs(demo(ds)[1]["cross"] - demo(ds)[0]["cross"]) for ds in SETS]),
    ("docs/generations.md", r"the 60% generations (?P<r>\S+) s",
     lambda: [v for k, v in GENS["train_seconds"].items() if k.endswith("gen2")]),
    ("docs/generations.md", r"the 100% generations (?P<r>\S+) s",
     lambda: [v for k, v in GENS["train_seconds"].items() if k.endswith("gen3")]),
    ("docs/generations.md", r"(?P<r>\S+) % of generation 1's self-test",
     lambda: [100 * chain("advbct", ds)[2][0] / chain("advbct", ds)[0][0] for ds in SETS]),
    ("docs/generations.md", r"self-test and (?P<r>[\d.\-]+)x the oracle chain's",
     lambda: [chain("advbct", ds)[2][0] / chain("oracle", ds)[2][0] for ds in SETS]),
    ("docs/generations.md", r"gives (?P<r>\S+) mAP",
     lambda: [chain("oracle", ds)[2][0] for ds in SETS]),
    # data/README.md: the regime's readings, against its own tables and the results files
    ("data/README.md", r"oracle's cross-test was (?P<r>\S+) % of the old self-test at 48 px",
     lambda: [100 * o / s for o, s in zip(_rows3("48 px, 256, same", "oracle cross"), _rows3("48 px, 256, same", "old self"))]),
    ("data/README.md", r"new models (?P<r>\S+) points above it at lr 0.03",
     lambda: _diff(_rows3("32 px, 256, separate, lr 0.03", "oracle self"), _rows3("32 px, 256, separate, lr 0.03", "old self"))),
    ("data/README.md", r"cross-test is at chance \((?P<r>[\d.\-]+)\)",
     lambda: [x for t in REGIME_TABLES[:1] for row in t[1:] if "separate" in row[0]
              for x in nums(row[t[0].index("oracle cross")])]),
    ("data/README.md", r"AdvBCT's cross-test, (?P<r>\S+)x chance",
     lambda: [c / o for c, o in zip(_rows3("32 px, 256, separate, lr 0.03", "AdvBCT cross"),
                                    _rows3("32 px, 256, separate, lr 0.03", "oracle cross"))]),
    ("data/README.md", r"stayed (?P<r>\S+) points below the old self-test",
     lambda: _diff(_rows3("32 px, 256, separate, lr 0.03", "old self"), _rows3("32 px, 256, separate, lr 0.03", "AdvBCT cross"))),
    ("data/README.md", r"\(the oracle by (?P<r>\S+) points\)",
     lambda: _diff(_rows3("32 px, 256, separate, lr 0.1, 10 epochs", "oracle self"),
                   _rows3("32 px, 256, separate, lr 0.1, 6 epochs", "oracle self"))),
    ("data/README.md", r"the old model by (?P<r>[\d.\-]+),",
     lambda: _diff(_rows3("10 epochs, batch 64", "old self"), _rows3("6 epochs, batch 64", "old self"))),
    ("data/README.md", r"AdvBCT's self-test gains (?P<r>\S+) points",
     lambda: _diff([MEANS[("advbct", "self", ds)][0] for ds in SETS], _rows3("10 epochs, batch 64", "AdvBCT self"))),
    ("data/README.md", r"the oracle's (?P<r>\S+) \(50.96",
     lambda: _diff([MEANS[("oracle", "self", ds)][0] for ds in SETS],
                   _rows3("32 px, 256, separate, lr 0.1, 10 epochs", "oracle self"))),
    ("data/README.md", r"\| \*\*12 epochs, batch 64 \(840 steps\): the benchmark\*\* (\|[^|]*){5}\| (?P<r>\d+-\d+) s \|",
     lambda: [r["train_seconds"]["advbct"] for r in RUNS]),
]

# Ranges in the results sections that are not results, and why.
NOT_RESULTS = [
    ("README.md", r"in (?P<r>4-5) minutes", "the demo's wall time, timed by hand"),
    ("data/README.md", r"seeds \((?P<r>1234-1236)\)", "seed numbers"),
    ("data/README.md", r"landmarks of (?P<r>4-6) images", "the synthetic data's counts"),
    ("data/README.md", r"\| (?P<r>\d+-\d+) s( \(one thread\))? \|", "training times of runs whose logs were not kept"),
]


def _places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


@pytest.mark.parametrize("doc, pattern, values", RANGES, ids=[f"{d}: {p[:40]}" for d, p, _ in RANGES])
def test_each_range_spans_what_it_describes(doc, pattern, values):
    text = scope(doc, keep_generated=True)
    hits = list(re.finditer(pattern, text))
    assert len(hits) == 1, f"{doc}: {len(hits)} matches of {pattern!r}; the text changed: update RANGES"
    lo_s, hi_s = RANGE.fullmatch(hits[0].group("r")).groups()
    places = max(_places(lo_s), _places(hi_s))
    vals = values()
    lo, hi, step = float(lo_s), float(hi_s), 10.0 ** -places
    vmin, vmax = round(min(vals), places), round(max(vals), places)
    assert lo <= vmin + 1e-9 and hi >= vmax - 1e-9, \
        f"{doc}: '{hits[0].group(0)}' does not contain the values it describes, {min(vals):.3f} to {max(vals):.3f}"
    assert lo > min(vals) - step and hi < max(vals) + step, \
        f"{doc}: '{hits[0].group(0)}' is wider than the values it describes, {min(vals):.3f} to {max(vals):.3f}"


@pytest.mark.parametrize("doc, pattern, why", NOT_RESULTS, ids=[f"{d}: {w}" for d, _, w in NOT_RESULTS])
def test_each_exemption_still_applies(doc, pattern, why):
    assert re.search(pattern, scope(doc, keep_generated=True)), f"{doc}: nothing matches {pattern!r} ({why}): drop it"


@pytest.mark.parametrize("doc", sorted(SCOPES))
def test_every_range_is_checked(doc):
    text = scope(doc, keep_generated=True)
    covered = []
    for d, pattern, *_ in RANGES + NOT_RESULTS:
        if d == doc:
            covered += [m.span("r") if "r" in m.re.groupindex else m.span() for m in re.finditer(pattern, text)]
    loose = [m.group(0) + f" in '...{text[max(0, m.start() - 50):m.end() + 30]}...'" for m in RANGE.finditer(text)
             if not any(a <= m.start() and m.end() <= b for a, b in covered)]
    assert not loose, f"{doc}: ranges with no check in RANGES (or reason in NOT_RESULTS):\n" + "\n".join(loose)


# -- single values (ratios and rounded numbers) ------------------------------------------------------
def _ratio_min(num_key, den_key) -> float:
    return min(MEANS[num_key(ds)][0] / MEANS[den_key(ds)][0] for ds in SETS)


VALUES = [
    ("docs/results/README.md", r"its self-test is (?P<v>[\d.]+)x the oracle's cross-test",
     lambda: _ratio_min(lambda ds: ("old", "self", ds), lambda ds: ("oracle", "cross", ds))),
    ("docs/results/README.md", r"per seed and set the smallest ratio is (?P<v>[\d.]+)x",
     lambda: min(per_seed(lambda r, ds: r["old_self"][ds] / r["oracle_cross"][ds]))),
    ("docs/results/README.md", r"where the oracle's cross-test reached (?P<v>[\d.]+)\)",
     lambda: next(r for r in RUNS if r["seed"] == 1235)["oracle_cross"]["roxford5k"]),
    ("docs/results/README.md", r"cross-test to the oracle's is (?P<v>[\d.]+)x over every seed and set",
     lambda: min(r["methods"][m]["cross"][ds] / r["oracle_cross"][ds] for r in RUNS for m in METHODS for ds in SETS)),
    ("docs/results/README.md", r"over every seed and set, (?P<v>[\d.]+)x in the mean",
     lambda: min(MEANS[(m, "cross", ds)][0] / MEANS[("oracle", "cross", ds)][0] for m in METHODS for ds in SETS)),
    ("docs/results/README.md", r"(?P<v>[\d.]+) below on ROxford",
     lambda: MEANS[("oracle", "self", "roxford5k")][0] - MEANS[("advbct", "self", "roxford5k")][0]),
    ("docs/results/README.md", r"the old self-test moves by up to (?P<v>[\d.]+) points",
     lambda: max(abs(demo(ds)[1]["old_self"] - demo(ds)[0]["old_self"]) for ds in SETS)),
    ("docs/generations.md", r"(?P<v>\d+) s for the whole run", lambda: GENS["wall_seconds"]),
    ("docs/generations.md", r"misses by (?P<v>[\d.]+) \(", lambda: chain("bct", "rparis6k")[0][0] - chain("bct", "rparis6k")[2][0]),
]


@pytest.mark.parametrize("doc, pattern, value", VALUES, ids=[f"{d}: {p[:40]}" for d, p, _ in VALUES])
def test_each_value_is_the_computed_one(doc, pattern, value):
    hits = list(re.finditer(pattern, scope(doc, keep_generated=True)))
    assert len(hits) == 1, f"{doc}: {len(hits)} matches of {pattern!r}; the text changed: update VALUES"
    written = hits[0].group("v")
    assert f"{value():.{_places(written)}f}" == written, f"{doc}: '{hits[0].group(0)}' but the results give {value():.4f}"


def test_within_half_a_point_holds():
    p_comp = [BENCH["aggregate"]["methods"][m]["scores"]["P_comp"][0] for m in ("bct", "advbct", "hot_refresh", "unibct")]
    assert max(p_comp) - min(p_comp) < 0.5
    assert all(BENCH["aggregate"]["methods"]["lce"]["scores"]["P_comp"][0] > x for x in p_comp)


# -- claims in words -------------------------------------------------------------------------------------
def _has(doc: str, phrase: str) -> None:
    assert phrase in scope(doc), f"{doc} no longer says '{phrase}': update this test with the text"


def test_claims_of_the_benchmark():
    agg = BENCH["aggregate"]["methods"]
    _has("docs/results/README.md", "within AdvBCT's seed-to-seed standard deviation on every set")
    for ds in SETS:
        adv, oracle = MEANS[("advbct", "self", ds)], MEANS[("oracle", "self", ds)]
        assert abs(adv[0] - oracle[0]) < adv[1]
        assert MEANS[("bct", "self", ds)][0] < oracle[0]  # "BCT lowers it"
    _has("README.md", "LCE leads P_1")
    order = sorted(METHODS, key=lambda m: -agg[m]["scores"]["P_1"][0])
    assert order[:2] == ["lce", "advbct"]
    assert min(METHODS, key=lambda m: agg[m]["scores"]["P_1"][0]) == "hot_refresh"
    # AdvBCT: all three sets in the mean and on seeds 1234 and 1235, GLDv2 only on seed 1236
    crit = rd.criterion_rows(BENCH)
    assert all(crit["advbct"]["in_mean"].values())
    verdicts = {r["seed"]: r["methods"]["advbct"]["bct_criterion"] for r in RUNS}
    assert all(verdicts[1234].values()) and all(verdicts[1235].values())
    assert verdicts[1236] == {"rparis6k": False, "roxford5k": False, "gldv2": True}
    # every method meets it on RParis in the mean, AdvBCT by the least; on every seed only LCE and Hot-refresh
    assert all(crit[m]["in_mean"]["rparis6k"] for m in METHODS)
    assert min(METHODS, key=lambda m: crit[m]["margin"]["rparis6k"]) == "advbct"
    assert [m for m in METHODS if crit[m]["seeds"]["rparis6k"] == len(RUNS)] == ["lce", "hot_refresh"]
    # seed 1236's old model is the strongest of the three on every set
    assert all(max(RUNS, key=lambda r: r["old_self"][ds])["seed"] == 1236 for ds in SETS)


def test_claims_of_the_generations():
    _has("docs/generations.md", "BCT meets 6 of 9 pairs")
    _has("docs/generations.md", "AdvBCT meets 2 of 9 pairs")
    met = {c: sum(d["n_met"] for d in ch["datasets"].values()) for c, ch in GENS["chains"].items()}
    assert (met["bct"], met["advbct"], met["oracle"]) == (6, 2, 0)

    def verdicts(c, ds):
        return {(p["query"][:4], p["gallery"][:4]): p["met"] for p in GENS["chains"][c]["datasets"][ds]["criterion"]}
    # AdvBCT's two: generation 3 on generation 2's gallery, RParis and ROxford
    assert [(ds, pair) for ds in SETS for pair, ok in verdicts("advbct", ds).items() if ok] == \
        [("rparis6k", ("gen3", "gen2")), ("roxford5k", ("gen3", "gen2"))]
    # BCT: where both one-step pairs hold, the two-step pair holds too
    for ds in SETS:
        v = verdicts("bct", ds)
        assert not (v[("gen2", "gen1")] and v[("gen3", "gen2")]) or v[("gen3", "gen1")]
    # AdvBCT's new generations' self-tests are higher than BCT's on average
    _has("docs/generations.md", "its self-tests are higher on average")
    diag = {c: np.mean([chain(c, ds)[i][i] for ds in SETS for i in (1, 2)]) for c in ("advbct", "bct")}
    assert diag["advbct"] > diag["bct"]
    # the reports of each chain hold the same matrices as the summary
    for c, ch in GENS["chains"].items():
        for ds, d in ch["datasets"].items():
            assert RES["chains"][c]["datasets"][ds]["matrix"] == d["matrix"]


def test_claims_of_the_demo():
    _has("docs/results/README.md", "the verdict of the criterion is the same on every set")
    from bct.evaluation.metrics import meets_bct_criterion
    for ds in SETS:
        a, b = demo(ds)
        assert meets_bct_criterion(a["old_self"], a["self"], a["cross"]) == meets_bct_criterion(b["old_self"], b["self"], b["cross"])


# -- the docs' own tables agree with the results and with each other ------------------------------------
def test_data_readme_tables_agree_with_the_results():
    bench_rows = [regime_row("12 epochs, batch 64"), regime_row("32 px, 256, separate, lr 0.1, 12 epochs")]
    for places, row in zip((2, 1), bench_rows):
        for col, key in (("old self", ("old", "self")), ("AdvBCT self", ("advbct", "self")), ("AdvBCT cross", ("advbct", "cross"))):
            want = [round(MEANS[key + (ds,)][0], places) for ds in SETS]
            assert row[col] == want, f"data/README.md {row['_label']}, {col}: {row[col]}, results.json {want}"
    regime = bench_rows[1]
    for col, key in (("oracle self", ("oracle", "self")), ("oracle cross", ("oracle", "cross"))):
        assert regime[col] == [round(MEANS[key + (ds,)][0], 1) for ds in SETS]
    assert bench_rows[0]["cross - old self"] == [round(c, 2) for c in rd.criterion_rows(BENCH)["advbct"]["margin"].values()]
    # the demo's row of the probes is machine A of demo.json
    a = rd.demo_runs(RES)[0]["headline"]
    probe = regime_row("0.1, 6 (the demo)")
    for col, key in (("old self", "old_self"), ("AdvBCT self", "self"), ("AdvBCT cross", "cross")):
        assert probe[col] == [round(a[ds][key], 2) for ds in SETS]


def test_data_readme_differences_are_their_columns():
    for t in REGIME_TABLES:
        if "cross - old self" not in t[0]:
            continue
        for row in t[1:]:
            r = dict(zip(t[0], (nums(c) for c in row)))
            got, want = r["cross - old self"], _diff(r["AdvBCT cross"], r["old self"])
            assert np.allclose(got, want, atol=0.011), f"data/README.md {row[0]}: {got} is not cross - old self {want}"


def test_data_readme_recipes_agree_across_its_two_tables():
    for epochs in (6, 10, 12):
        three = regime_row(f"{epochs} epochs, batch 64")
        regime = regime_row(f"32 px, 256, separate, lr 0.1, {epochs} epochs")
        for col in ("old self", "AdvBCT self", "AdvBCT cross"):
            assert np.allclose([round(x, 1) for x in three[col]], regime[col], atol=0.051), (epochs, col)


def test_data_loading_seed_table():
    """docs/data_loading.md: each mean ± sd is its row's, the differences of the means are the
    quoted ones, and the plain rows are the lr 0.03 old model of data/README.md."""
    text = read("docs/data_loading.md")
    rows = {row[0]: [nums(c) for c in row[1:]] for t in tables(text) if t[0][0] == "training input" for row in t[1:]}
    assert len(rows) == 6
    for label, cells in rows.items():
        seeds, (mean, sd) = [c[0] for c in cells[:3]], cells[3]
        want = rd.mean_sd(seeds)  # from the rounded seeds: the last digit may differ by one
        assert abs(want[0] - mean) <= 0.0101 and abs(want[1] - sd) <= 0.0101, (label, want)
    diffs = [rows[f"fast, {s}"][3][0] - rows[f"plain, {s}"][3][0] for s in ("RParis", "ROxford", "GLDv2")]
    quoted = re.search(r"differences of the means \(([^)]*)\)", text).group(1)
    assert nums(quoted) == [round(d, 2) for d in diffs]
    plain_means = [rows[f"plain, {s}"][3][0] for s in ("RParis", "ROxford", "GLDv2")]
    assert [round(x, 1) for x in plain_means] == regime_row("32 px, 256, separate, lr 0.03")["old self"]
    assert [rows[f"plain, {s}"][0][0] for s in ("RParis", "ROxford", "GLDv2")] == regime_row("0.03, 6")["old self"]


def test_paper_tables_are_the_papers():
    text = read("docs/models.md")
    got = {row[0]: [x for c in row[1:] for x in nums(c)] for t in tables(text) if t[0][0] == "new resnet18" for row in t[1:]}
    for key, title in (("bct", "BCT"), ("lce", "LCE"), ("unibct", "UniBCT"), ("hot_refresh", "Hot-refresh"), ("advbct", "AdvBCT")):
        assert got[title] == PAPER[key][:6], title
    assert got["oracle (no compatibility)"] == PAPER["oracle"]


def test_the_newer_methods_results_readme_is_current():
    """docs/results/new_methods/README.md (table and claims) is what its results file renders."""
    from benchmarks import new_methods_docs
    new_methods_docs.main(["--check"])  # raises CheckFailedError when README.md is out of date
