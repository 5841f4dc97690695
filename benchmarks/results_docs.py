"""The tables of the results docs, rendered from the results files (a script, not part of the package).

    python benchmarks/results_docs.py            # rewrite every generated block that is out of date
    python benchmarks/results_docs.py --check    # change nothing; exit 1 naming each stale block

Results files (paths relative to the repository):

- docs/results/results.json: the synthetic benchmark, three seeds (per_seed and aggregate);
- docs/results/generations/results.json and docs/results/generations/<chain>/compat_matrix.json:
  the chains of model generations;
- docs/results/demo.json: the demo (scripts/demo.sh, seed 1234) as two machines ran it;
- docs/results/own_images.json: scripts/own.sh on the real sets that ship in wheels (benchmarks/own_real.py).
- docs/results/new_methods/results.json: the newer methods beside AdvBCT (README.md's summary).

A generated block of a doc is the text between a line ``<!-- generated: NAME ... -->`` and the next
``<!-- /generated -->``; BLOCKS lists the blocks of each doc. Everything else in the docs is
hand-written: tests/test_docs_numbers.py checks its numbers against ``quantities()`` and the
results files, and checks with ``--check``'s function that every block is current.
"""
import json
import os
import re
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from any folder
    sys.path.insert(0, REPO)

from bct.config import load_cfg  # noqa: E402
from bct.config.methods import PAPER_ORDER, method_names, method_title  # noqa: E402
from bct.evaluation.metrics import meets_bct_criterion  # noqa: E402
from bct.tools.common import run, script_parser  # noqa: E402
from bct.utils.fileio import write_text_atomic  # noqa: E402
BENCH = "docs/results/results.json"
GENERATIONS = "docs/results/generations/results.json"
DEMO = "docs/results/demo.json"
OWN = "docs/results/own_images.json"
NEW_METHODS = "docs/results/new_methods/results.json"

SETS = ["rparis6k", "roxford5k", "gldv2"]
SET_TITLES = {"rparis6k": "RParis", "roxford5k": "ROxford", "gldv2": "GLDv2"}
# The documented results cover the paper's methods; their order and titles come from the catalogue.
METHODS = [m for m in method_names(include_oracle=False) if m in PAPER_ORDER]
TITLES = {m: method_title(m) for m in ["oracle", *METHODS]}
SCORES = ["P_up", "P_comp", "P_1"]
MINUS = "\u2212"

# doc -> the blocks it holds, in order
BLOCKS = {
    "README.md": ["readme-new-methods", "readme-results"],
    "docs/results/README.md": ["results-table", "criterion-table", "demo-table"],
    "docs/generations.md": ["generations-table"],
    "docs/own_images.md": ["own-images-sets", "own-images-runs", "own-images-spread"],
}
_BLOCK = re.compile(r"^<!-- generated: (?P<name>[\w-]+)[^\n]*-->\n(?P<body>.*?)^<!-- /generated -->$", re.S | re.M)


# -- reading ----------------------------------------------------------------------------------------
def load(repo: str = REPO) -> dict:
    """The results files as one dict: bench, generations, chains (the compat_matrix.json of each
    chain), demo."""
    def read(rel):
        with open(os.path.join(repo, rel), encoding="utf-8") as f:
            return json.load(f)

    gens = read(GENERATIONS)
    chains = {c: read(f"docs/results/generations/{c}/compat_matrix.json") for c in gens["chains"]}
    return {"bench": read(BENCH), "generations": gens, "chains": chains, "demo": read(DEMO), "own": read(OWN),
            "new_methods": read(NEW_METHODS)}


def mean_sd(values) -> tuple:
    """Mean and sample standard deviation (ddof 1), as the benchmark's aggregate computes them."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


# -- the benchmark's quantities ---------------------------------------------------------------------
def seed_value(run: dict, model: str, part: str, ds: str) -> float:
    """One headline of one seed: model "old" / "oracle" / a method, part "self" / "cross"."""
    if model in ("old", "oracle"):
        return run[f"{model}_{part}"][ds]
    return run["methods"][model][part][ds]


def bench_means(bench: dict) -> dict:
    """(mean, sd) over seeds of every headline: {(model, part, ds): (mean, sd)}, the oracle's
    cross-test included (the aggregate of results.json has no entry for it)."""
    out = {}
    parts = {"old": ["self"], "oracle": ["self", "cross"], **{m: ["self", "cross"] for m in METHODS}}
    for model, ps in parts.items():
        for part in ps:
            for ds in SETS:
                out[(model, part, ds)] = mean_sd(seed_value(r, model, part, ds) for r in bench["per_seed"])
    return out


def criterion_rows(bench: dict) -> dict:
    """Per method: mean cross - old self per set, the criterion in the mean per set, seeds meeting
    it per set (the per-seed verdicts stored in results.json), seed-set pairs met."""
    means = bench_means(bench)
    rows = {}
    for m in METHODS:
        margin = {ds: means[(m, "cross", ds)][0] - means[("old", "self", ds)][0] for ds in SETS}
        in_mean = {ds: meets_bct_criterion(means[("old", "self", ds)][0], means[(m, "self", ds)][0],
                                       means[(m, "cross", ds)][0]) for ds in SETS}
        seeds = {ds: sum(bool(r["methods"][m]["bct_criterion"][ds]) for r in bench["per_seed"]) for ds in SETS}
        rows[m] = {"margin": margin, "in_mean": in_mean, "seeds": seeds, "pairs": sum(seeds.values())}
    return rows


# -- formatting -------------------------------------------------------------------------------------
def f2(x: float) -> str:
    return f"{x:.2f}"


def signed(x: float) -> str:
    """+1.61 / \u22120.10 (a true minus sign, as the docs write it)."""
    s = f"{x:+.2f}"
    return s.replace("-", MINUS) if s != "-0.00" else "+0.00"


def _table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# -- the blocks -------------------------------------------------------------------------------------
def block_results_table(res: dict) -> str:
    """docs/results/README.md: mean \u00b1 sd of every cell; the best method of each column in bold."""
    bench = res["bench"]
    means, agg = bench_means(bench), bench["aggregate"]["methods"]

    def best(key):
        vals = {m: key(m) for m in METHODS}
        return max(vals, key=vals.get)

    def pm(ms, bold=False):
        return (f"**{f2(ms[0])}**" if bold else f2(ms[0])) + f" \u00b1 {f2(ms[1])}"

    rows = [["Old (270 classes)"] + [pm(means[("old", "self", ds)]) for ds in SETS] + [""] * 3,
            ["Oracle (cross: chance)"] + [f"{pm(means[('oracle', 'self', ds)])} / {pm(means[('oracle', 'cross', ds)])}"
                                          for ds in SETS] + [""] * 3]
    top = {(part, ds): best(lambda m, p=part, d=ds: means[(m, p, d)][0]) for part in ("self", "cross") for ds in SETS}
    top_score = {s: best(lambda m, s=s: agg[m]["scores"][s][0]) for s in SCORES}
    for m in METHODS:
        cells = [f"{pm(means[(m, 'self', ds)], top[('self', ds)] == m)} / {pm(means[(m, 'cross', ds)], top[('cross', ds)] == m)}"
                 for ds in SETS]
        cells += [f"**{f2(agg[m]['scores'][s][0])}**" if top_score[s] == m else f2(agg[m]["scores"][s][0])
                  for s in SCORES]
        rows.append([TITLES[m]] + cells)
    return _table(["Method"] + [SET_TITLES[ds] for ds in SETS] + SCORES, rows)


def block_criterion_table(res: dict) -> str:
    """docs/results/README.md: the BCT criterion per method in the mean and per seed."""
    n = len(res["bench"]["per_seed"])
    rows = []
    for m, r in criterion_rows(res["bench"]).items():
        rows.append([TITLES[m], " / ".join(signed(r["margin"][ds]) for ds in SETS),
                     " / ".join(str(r["seeds"][ds]) for ds in SETS), str(r["pairs"])])
    return _table(["Method", "mean cross \u2212 old self", f"seeds meeting it (of {n})",
                   f"seed-set pairs (of {n * len(SETS)})"], rows)


def block_readme_results(res: dict) -> str:
    """README.md: three-seed means, self / cross, P-scores and where the criterion holds."""
    bench = res["bench"]
    means, agg, crit = bench_means(bench), bench["aggregate"]["methods"], criterion_rows(bench)
    rows = [["Old (resnet18, 270 classes)"] + [f"{f2(means[('old', 'self', ds)][0])} / \u2014" for ds in SETS] + [""] * 4,
            ["Oracle (no compatibility)"] + [f"{f2(means[('oracle', 'self', ds)][0])} / {f2(means[('oracle', 'cross', ds)][0])}"
                                             for ds in SETS] + [""] * 4]
    for m in METHODS:
        held = [SET_TITLES[ds] for ds in SETS if crit[m]["in_mean"][ds]]
        where = "all" if len(held) == len(SETS) else (", ".join(held) or "none")
        rows.append([TITLES[m]] + [f"{f2(means[(m, 'self', ds)][0])} / {f2(means[(m, 'cross', ds)][0])}" for ds in SETS]
                    + [f2(agg[m]["scores"][s][0]) for s in SCORES]
                    + [f"{where} ({', '.join(str(crit[m]['seeds'][ds]) for ds in SETS)})"])
    return _table(["Method"] + [SET_TITLES[ds] for ds in SETS] + SCORES + ["BCT criterion (seeds)"], rows)


def demo_runs(res: dict) -> list:
    return res["demo"]["runs"]


def block_demo_table(res: dict) -> str:
    """docs/results/README.md: the demo's headline on each machine, side by side."""
    runs = demo_runs(res)
    names = " / ".join(r["machine"] for r in runs)
    rows = []
    for ds in SETS:
        h = [r["headline"][ds] for r in runs]
        verdict = ["met" if meets_bct_criterion(x["old_self"], x["self"], x["cross"]) else "missed" for x in h]
        rows.append([SET_TITLES[ds],
                     " / ".join(f2(x["old_self"]) for x in h), " / ".join(f2(x["self"]) for x in h),
                     " / ".join(f2(x["cross"]) for x in h),
                     " / ".join(signed(x["cross"] - x["old_self"]) for x in h), " / ".join(verdict)])
    return _table([f"Demo, seed 1234 (machine {names})", "old self", "new self", "cross",
                   "cross \u2212 old self", "BCT criterion"], rows)


def block_generations_table(res: dict) -> str:
    """docs/generations.md: one row per chain, mean AC / mean AMA and P_1 of each consecutive pair."""
    gens = res["generations"]
    n_gen = len(gens["fractions"])
    head = ["Chain", "mean AC", "mean AMA"] + [f"P_1 gen{i}\u2192gen{i + 1}" for i in range(1, n_gen)]
    rows = []
    for c, chain in gens["chains"].items():
        p1 = [f2(p["P_1"]) for p in chain["consecutive"]] or ["\u2014"] * (n_gen - 1)
        rows.append([TITLES.get(c, c), f2(chain["AC"]), f2(chain["AMA"])] + p1)
    return _table(head, rows)


def _own_row(r: dict) -> list:
    """One run of scripts/own.sh on a real set: its results, whether it meets the criterion, its time."""
    load = "/".join(str(x) for x in r["load"] if x is not None) or "not recorded"
    return [f"--query {r['query']} --split {r['split']}", f2(r["old_self"]), f2(r["self"]), f2(r["cross"]),
            "met" if meets_bct_criterion(r["old_self"], r["self"], r["cross"]) else "not met",
            signed(r["self"] - r["old_self"]), signed(r["cross"] - r["old_self"]),
            f"{r['seconds']} s (load {load}, {r['cores']} cores)"]


OWN_SEED = load_cfg(os.path.join(REPO, "configs", "own", "old_model.yml")).SEED  # own.sh's seed unless SEED is given
OWN_HEAD = ["preparation", "old self", "new self", "cross", "BCT criterion", "new self \u2212 old self",
            "cross \u2212 old self", "wall time"]


def block_own_images_sets(res: dict) -> str:
    """docs/own_images.md: the default command (no variable, no override) on each real set, by set."""
    runs = sorted((r for r in res["own"]["runs"] if not r["env"] and not r["opts"]), key=lambda r: r["set"])
    return _table(["Set", "Run"] + OWN_HEAD, [[r["set"], r["note"]] + _own_row(r) for r in runs])


def block_own_images_spread(res: dict) -> str:
    """docs/own_images.md: each series (one setting over several seeds) of runs on a real set: the margin
    of the cross-test over the old self-test, its mean ± std, its lowest, and how many meet the criterion."""
    series = {}
    for r in res["own"]["runs"]:
        if r.get("series"):
            series.setdefault((r["set"], r["series"]), []).append(r)
    rows = []
    for (name, title), runs in series.items():
        margin = np.array([r["cross"] - r["old_self"] for r in runs])
        seeds = [r["opts"][r["opts"].index("SEED") + 1] if "SEED" in r["opts"] else str(OWN_SEED) for r in runs]
        met = sum(meets_bct_criterion(r["old_self"], r["self"], r["cross"]) for r in runs)
        rows.append([name, title, " ".join(seeds), " ".join(signed(m) for m in margin),
                     f"{signed(margin.mean())} \u00b1 {margin.std(ddof=1):.2f}", signed(margin.min()),
                     f"{met} of {len(runs)}"])
    return _table(["Set", "settings (PRETRAINED=False)", "seeds", "cross \u2212 old self", "mean \u00b1 std",
                   "lowest", "BCT criterion met"], rows)


def block_own_images_runs(res: dict) -> str:
    """docs/own_images.md: every recorded run of scripts/own.sh on a real set, in file order."""
    rows = []
    for r in res["own"]["runs"]:
        env = " ".join(f"{k}={v}" for k, v in r["env"].items())
        rows.append([r["set"], r["note"], " ".join(x for x in (env, " ".join(r["opts"])) if x) or "(defaults)"]
                    + _own_row(r))
    return _table(["Set", "Run", "settings (PRETRAINED=False)"] + OWN_HEAD, rows)


def block_readme_new_methods(res: dict) -> str:
    """README.md: the newer methods' run beside AdvBCT, P_up, P_comp and P_1 (mean ± std over its seeds)."""
    run_ = res["new_methods"]
    lines = [f"| Method ({len(run_['per_seed'])} seeds, x100) | P_up | P_comp | P_1 |", "|---|---|---|---|"]
    for m, entry in run_["aggregate"]["methods"].items():
        sc = entry["scores"]
        lines.append(f"| {method_title(m)} | " + " | ".join(f"{sc[k][0]:.2f} ± {sc[k][1]:.2f}"
                                                            for k in SCORES) + " |")
    return "\n".join(lines) + "\n"


RENDER = {"readme-new-methods": block_readme_new_methods, "results-table": block_results_table, "criterion-table": block_criterion_table,
          "demo-table": block_demo_table, "readme-results": block_readme_results,
          "generations-table": block_generations_table, "own-images-runs": block_own_images_runs,
          "own-images-sets": block_own_images_sets, "own-images-spread": block_own_images_spread}


def render_blocks(res: dict) -> dict:
    return {name: fn(res) for name, fn in RENDER.items()}


def updated(text: str, doc: str, blocks: dict) -> str:
    """The doc's text with each of its blocks rendered anew; a missing, unknown or repeated block is
    a ValueError naming the doc."""
    found = [m.group("name") for m in _BLOCK.finditer(text)]
    if found != BLOCKS[doc]:
        raise ValueError(f"{doc}: generated blocks {found}, expected {BLOCKS[doc]} "
                         f"(each between '<!-- generated: NAME -->' and '<!-- /generated -->' lines)")
    return _BLOCK.sub(lambda m: m.group(0)[:m.start("body") - m.start()] + blocks[m.group("name")]
                      + "<!-- /generated -->", text)


def stale(repo: str = REPO) -> list:
    """(doc, new text) of every doc whose generated blocks differ from the results files."""
    blocks = render_blocks(load(repo))
    out = []
    for doc in BLOCKS:
        path = os.path.join(repo, doc)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = updated(text, doc, blocks)
        if new != text:
            out.append((doc, new))
    return out


def build_parser():
    p = script_parser(__file__, __doc__)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a generated block is stale")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        changes = stale(REPO)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for doc, new in changes:
        if args.check:
            print(f"{doc}: generated blocks differ from the results files (run python benchmarks/results_docs.py)")
        else:
            write_text_atomic(os.path.join(REPO, doc), new)
            print(f"{doc}: rewritten")
    if not changes:
        print("every generated block is current")
    return 1 if (changes and args.check) else 0


if __name__ == "__main__":
    sys.exit(run(main))
