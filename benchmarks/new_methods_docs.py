"""docs/results/new_methods/README.md rendered from docs/results/new_methods/results.json (a script, not part
of the package): the run's table, and, claim by claim, which of each newer method's own claims hold on the
synthetic benchmark, each decided by a number of the results file.

    python benchmarks/new_methods_docs.py            # rewrite the README
    python benchmarks/new_methods_docs.py --check    # change nothing; exit 1 when it is out of date
"""
import glob
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bct.config.methods import method_title  # noqa: E402
from bct.tools.common import run, script_parser  # noqa: E402
from bct.utils.errors import CheckFailedError  # noqa: E402
from bct.utils.fileio import write_text_atomic  # noqa: E402

FOLDER = os.path.join(REPO, "docs", "results", "new_methods")
TITLES = {"rparis6k": "RParis", "roxford5k": "ROxford", "gldv2": "GLDv2"}
INTRO = """# The methods published since AdvBCT on the synthetic benchmark

`results.md`, `results.json`, `backfill.png` and `self_cross.png` were written by
`bash scripts/benchmark.sh --methods advbct,bt2,simplex,fastfill --seeds {seeds}`, the benchmark's own
recipe (the shared pretrained start, 12 epochs for every model), on an otherwise idle 2-core machine:
{n_seeds}. The old model, the oracle and AdvBCT were trained in the same run, so the rows compare;
[../README.md](../README.md) holds the paper's methods from another run of the same recipe (CPU
training repeats exactly on one machine, not across machines). d-Simplex is scored against its own old
model (trained with the same fixed classifier, 899 dimensions); FastFill's new model is the oracle's,
its cross-test searches the transformed old gallery. Methods and their differences from the authors'
code: [../../method.md](../../method.md). This file is generated from `results.json` by
`python benchmarks/new_methods_docs.py`.
"""


def _mean(values):
    """The element-wise mean of equally shaped results (dicts, lists, numbers); other leaves: the first."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_mean([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return sum(values) / len(values)
    return first


def _claims(res: dict) -> list:
    """[(method, claim, measured on the mean over seeds, holds on every seed)]."""
    per_seed = [_one_seed(r) for r in res["per_seed"]]
    mean = _one_seed(_mean(res["per_seed"]))
    return [(m, claim, measured, all(p[i][3] for p in per_seed)) for i, (m, claim, measured, _) in enumerate(mean)]


def _one_seed(r: dict) -> list:
    """[(method, claim, measured, holds)] of one seed's results."""
    sets = list(r["old_self"])
    methods = r["methods"]
    out = []

    def cells(fn):
        return ", ".join(f"{TITLES.get(d, d)} {fn(d)}" for d in sets)

    if "bt2" in methods:
        e = methods["bt2"]
        out.append(("bt2", "The new model is compatible: its cross-test beats the old self-test (on every set)",
                    cells(lambda d: f"{e['cross'][d]:.2f} vs {r['old_self'][d]:.2f}"),
                    all(e["cross"][d] > r["old_self"][d] for d in sets)))
        out.append(("bt2", "Compatibility costs the new model (almost) nothing: its self-test stays within 1 point "
                    "of the independently trained oracle's (on every set)",
                    cells(lambda d: f"{e['self'][d]:.2f} vs {r['oracle_self'][d]:.2f}"),
                    all(e["self"][d] >= r["oracle_self"][d] - 1.0 for d in sets)))
        if "advbct" in methods:
            a = methods["advbct"]
            out.append(("bt2", "A better update / compatibility balance than the earlier methods: P_1 above AdvBCT's",
                        f"{e['scores']['P_1']:.2f} vs {a['scores']['P_1']:.2f}",
                        e["scores"]["P_1"] > a["scores"]["P_1"]))
    if "simplex" in methods:
        e = methods["simplex"]
        own = e["own_old"]["self"]
        out.append(("simplex", "Compatible by construction, with no compatibility loss: the cross-test beats its own "
                    "old model's self-test (on every set)",
                    cells(lambda d: f"{e['cross'][d]:.2f} vs {own[d]:.2f}"), all(e["cross"][d] > own[d] for d in sets)))
        out.append(("simplex", "The fixed classifier does not cost the new model accuracy: its self-test within 1 "
                    "point of the oracle's (a learned classifier, on every set)",
                    cells(lambda d: f"{e['self'][d]:.2f} vs {r['oracle_self'][d]:.2f}"),
                    all(e["self"][d] >= r["oracle_self"][d] - 1.0 for d in sets)))
    if "fastfill" in methods:
        f = methods["fastfill"]["fastfill"]
        out.append(("fastfill", "The transformed old gallery is compatible at once, before any image is re-embedded: "
                    "its cross-test beats the old self-test (on every set)",
                    cells(lambda d: f"{methods['fastfill']['cross'][d]:.2f} vs {r['old_self'][d]:.2f}"),
                    all(methods["fastfill"]["cross"][d] > r["old_self"][d] for d in sets)))
        out.append(("fastfill", "Backfilling the most uncertain rows first gives a larger area under the backfill "
                    "curve than a random order (on every set)",
                    cells(lambda d: f"{f[d]['auc']['uncertainty']:.2f} vs {f[d]['auc']['random']:.2f}"),
                    all(f[d]["auc"]["uncertainty"] > f[d]["auc"]["random"] for d in sets)))
        out.append(("fastfill", "(bct's own heuristic, not a paper claim) The uncertainty order also beats the "
                    "'distinct' order (on every set)",
                    cells(lambda d: f"{f[d]['auc']['uncertainty']:.2f} vs {f[d]['auc']['distinct']:.2f}"),
                    all(f[d]["auc"]["uncertainty"] > f[d]["auc"]["distinct"] for d in sets)))
        out.append(("fastfill", "Transforming first beats backfilling the untransformed gallery: area of the random "
                    "order with the transformation above that without (on every set)",
                    cells(lambda d: f"{f[d]['auc']['random']:.2f} vs {f[d]['auc']['random, no transformation']:.2f}"),
                    all(f[d]["auc"]["random"] > f[d]["auc"]["random, no transformation"] for d in sets)))
    return out


def render(res: dict, table: str, gens: dict = None) -> str:
    seeds = [r["seed"] for r in res["per_seed"]]
    n_seeds = f"{'One seed' if len(seeds) == 1 else f'{len(seeds)} seeds'} ({', '.join(map(str, seeds))})"
    md = [INTRO.format(seeds=",".join(map(str, seeds)), n_seeds=n_seeds), "## The run's report", "", table.strip(), "", "## The papers' claims on this benchmark", "",
          f"Decided on {n_seeds.lower()}: numbers are headline × 100 (new / reference)" +
          (", means over the seeds; a claim holds only if it holds on every seed." if len(seeds) > 1 else "."),
          "", "| Method | Claim | Measured | Holds |", "|---|---|---|---|"]
    for m, claim, measured, holds in _claims(res):
        md.append(f"| {method_title(m)} | {claim} | {measured} | {'yes' if holds else 'no'} |")
    if gens is not None:
        md += ["", *_chain_section(gens)]
    return "\n".join(md) + "\n"


def _chain_section(runs: list) -> list:
    """d-Simplex's chains of generations (generations/seed<S>/results.json, one run per seed): its claim
    that compatibility holds across many upgrades, decided on every seed, beside the oracle chains of the
    same runs."""
    fr, seeds = runs[0]["fractions"], [g["seed"] for g in runs]
    names = " → ".join(f"{round(100 * f)}%" for f in fr)
    walls = ", ".join(f"{g['wall_seconds'] / 60:.0f}" for g in runs)
    sets = list(runs[0]["chains"]["simplex"]["datasets"])

    def stat(chain, ds, fn):
        v = np.array([fn(g["chains"][chain]["datasets"][ds]) for g in runs], dtype=np.float64)
        return v, f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}"

    md = ["## d-Simplex across generations", "",
          f"`generations/seed<S>/` holds one run per seed of `GENERATIONS={len(fr)} METHODS=simplex bash "
          f"scripts/benchmark.sh --seeds S` (seeds {', '.join(map(str, seeds))}; the benchmark's 12-epoch recipe, "
          f"{names} of the classes; {walls} min on this 2-core "
          "machine, the first while other work shared it, the others reusing generation 1 from the comparison "
          "above, trained with the same settings and inputs): the d-Simplex chain starts from its own generation 1 "
          "(trained with the fixed classifier) and the oracle chain beside it trains every generation with no "
          "compatibility term. AC is the fraction of (newer query, older gallery) pairs that meet the criterion "
          "M[i][j] > M[j][j]; AMA the mean of M[i][j] over every pair i ≥ j, the diagonal (each model on its own "
          "gallery) included. Mean ± std over the seeds.", "",
          f"| Set | d-Simplex AC | d-Simplex AMA | oracle AC | oracle AMA | gen{len(fr)} → gen1 (no training links "
          "them) vs gen1 self |", "|---|---|---|---|---|---|"]
    every, far_ok, ama_ok = True, True, True
    for ds in sets:
        s_ac, s_ac_t = stat("simplex", ds, lambda e: e["AC"])
        s_ama, s_ama_t = stat("simplex", ds, lambda e: e["AMA"])
        o_ac, o_ac_t = stat("oracle", ds, lambda e: e["AC"])
        o_ama, o_ama_t = stat("oracle", ds, lambda e: e["AMA"])
        far, far_t = stat("simplex", ds, lambda e: e["matrix"][-1][0])
        own, own_t = stat("simplex", ds, lambda e: e["matrix"][0][0])
        every &= bool((s_ac == 1).all())
        far_ok &= bool((far > own).all())
        ama_ok &= bool((s_ama > o_ama).all())
        md.append(f"| {TITLES.get(ds, ds)} | {s_ac_t} | {s_ama_t} | {o_ac_t} | {o_ama_t} | {far_t} vs {own_t} |")
    md += ["", "| Claim (decided on every seed) | Holds |", "|---|---|",
           f"| Every upgrade stays compatible: each newer generation's queries beat the older gallery's own "
           f"self-test, on every set (AC = 1) | {'yes' if every else 'no'} |",
           f"| Compatibility carries over pairs that no training linked (gen{len(fr)} → gen1) | "
           f"{'yes' if far_ok else 'no'} |",
           f"| The fixed classifier keeps more of the older galleries searchable than no compatibility at all "
           f"(AMA above the oracle chain's, on every set) | {'yes' if ama_ok else 'no'} |", "",
           "The matrices: " + ", ".join(f"[seed {g['seed']}](generations/seed{g['seed']}/results.md)" for g in runs)
           + "."]
    return md


def build_parser():
    p = script_parser(__file__, __doc__)
    p.add_argument("--check", action="store_true", help="exit 1 when README.md is not what the results file gives")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    with open(os.path.join(FOLDER, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(FOLDER, "results.md")) as f:
        table = f.read().split("\n", 1)[1]  # without its title line
    gens = []
    for path in sorted(glob.glob(os.path.join(FOLDER, "generations", "seed*", "results.json"))):
        with open(path) as f:
            gens.append(json.load(f))
    text = render(res, table, gens or None)
    path = os.path.join(FOLDER, "README.md")
    current = open(path).read() if os.path.isfile(path) else ""
    if args.check:
        if current != text:
            raise CheckFailedError(f"{path} is out of date: run python benchmarks/new_methods_docs.py")
        return
    write_text_atomic(path, text)
    print(f"wrote {path}")


if __name__ == "__main__":
    run(main)
