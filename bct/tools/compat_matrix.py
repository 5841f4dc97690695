"""The compatibility matrix of a sequence of models (model generations, docs/evaluation.md): every
(query model i, gallery model j <= i) pair on each dataset, the compatibility criterion of every
pair, Average Compatibility, Average Multi-model Accuracy and the P-scores of consecutive pairs.

python -m bct.tools.compat_matrix --cfg configs/test_model.yml \\
    --models gen1=old.pth,gen2=new.pth,gen3=newer.pth --datasets rparis6k,roxford5k,gldv2 \\
    [--oracles gen2=oracle2.pth,gen3=oracle3.pth] [--out output/compat_matrix] [KEY VALUE ...]

Models oldest first. Each model embeds each dataset's queries and gallery once (gallery features
go through the feature cache, EVAL.CACHE_DIR); every pair is then a search. --oracles names, for a
model, the oracle (no compatibility term) of its generation: its self-test is what the P-scores of
the pair (previous model -> that model) are measured against. Writes into --out:
compat_matrix.json, compat_matrix.md (a table per dataset and the summary) and compat_matrix.png.
"""
import os

import numpy as np

from bct.engine.checkpoint import load_trained_model
from bct.evaluation.metrics import consecutive_scores, matrix_compatibility
from bct.evaluation.protocol import compatibility_matrix
from bct.evaluation.report import DATASET_TITLES, matrix_heatmaps, matrix_table
from bct.tools.common import default_parser, run, setup
from bct.tools.test import dataset_roots
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest, jsonable, write_json_atomic, write_text_atomic

FILES = ("compat_matrix.json", "compat_matrix.md", "compat_matrix.png")
HEADLINE = ("mAP x100: Medium mAP for the revisited sets, private mAP@100 for GLDv2. Row i holds the queries "
            "embedded by model i, column j the gallery embedded by model j (never re-embedded); "
            "✓ / ✗: the pair meets / fails the criterion M[i][j] > M[j][j].")


def parse_named_paths(text: str, flag: str) -> list:
    """'a=x.pth,b=y.pth' -> [('a', 'x.pth'), ('b', 'y.pth')], names unique."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise BadInputError(f"{flag}: {item!r} is not NAME=PATH (e.g. gen1=output/old.pth,gen2=output/new.pth)")
        if name.strip() in dict(out):
            raise BadInputError(f"{flag}: the name {name.strip()!r} is given twice; every model needs its own name")
        out.append((name.strip(), path.strip()))
    return out


def evaluate_models(cfg, named_paths: list, sets: list, device) -> dict:
    """{dataset: bct.evaluation.protocol.compatibility_matrix result} for the models (name, checkpoint)
    oldest first, on the (dataset, root) pairs of ``sets``."""
    models, digests = [], []
    for _, path in named_paths:
        model, _ = load_trained_model(cfg, "new", path=path, device=device, check=("emb_dim",))
        models.append(model)
        digests.append(file_digest(path))
    return {name: compatibility_matrix(cfg, name, root, models, device, digests) for name, root in sets}


def summarize(named_paths: list, results: dict, oracle_self: dict = None, oracles: dict = None) -> dict:
    """The JSON-ready report of a matrix evaluation: per dataset the matrix, every pair's full scores,
    the criterion, AC and AMA; their means over datasets; and the P-scores of the consecutive pairs
    whose newer model has an oracle (``oracle_self``: dataset -> one self-test x100 or None per model)."""
    names = [n for n, _ in named_paths]
    per_dataset = {}
    for ds, r in results.items():
        entry = {"matrix": r["matrix"], **matrix_compatibility(r["matrix"]),
                 "pairs": [{"query": names[i], "gallery": names[j], "scores": s} for (i, j), s in r["pairs"].items()]}
        for c in entry["criterion"]:
            c["query"], c["gallery"] = names[c["query"]], names[c["gallery"]]
        if oracle_self:
            entry["oracle_self"] = oracle_self[ds]
        per_dataset[ds] = entry
    consecutive = consecutive_scores({d: r["matrix"] for d, r in results.items()}, oracle_self or {})
    for c in consecutive:
        c["old"], c["new"] = names[c["old"]], names[c["new"]]
    return {"models": [{"name": n, "path": p} for n, p in named_paths], "oracles": oracles or {},
            "datasets": per_dataset,
            "AC": float(np.mean([e["AC"] for e in per_dataset.values()])),
            "AMA": float(np.mean([e["AMA"] for e in per_dataset.values()])),
            "consecutive": consecutive}


def summary_markdown(report: dict) -> str:
    """AC and AMA per dataset and their means, then the P-scores of the consecutive pairs."""
    lines = ["| Dataset | criterion met | AC | AMA |", "| --- | --- | --- | --- |"]
    for ds, e in report["datasets"].items():
        lines.append(f"| {DATASET_TITLES.get(ds, ds)} | {e['n_met']} of {e['n_pairs']} | {e['AC']:.2f} | {e['AMA']:.2f} |")
    lines.append(f"| Mean | | {report['AC']:.2f} | {report['AMA']:.2f} |")
    if report["consecutive"]:
        lines += ["", "P-scores of consecutive pairs (against the oracle of the newer generation):", "",
                  "| Pair (old → new) | P_up | P_comp | P_1 | Gain % |", "| --- | --- | --- | --- | --- |"]
        for c in report["consecutive"]:
            lines.append(f"| {c['old']} → {c['new']} | {c['P_up']:.2f} | {c['P_comp']:.2f} | {c['P_1']:.2f} | "
                         f"{100 * c['gain']:.2f} |")
    return "\n".join(lines) + "\n"


def write_report(out: str, report: dict, title: str) -> str:
    """Write compat_matrix.{json,md,png} into ``out``; returns the markdown."""
    names = [m["name"] for m in report["models"]]
    md = [f"# {title}", "", HEADLINE]
    for ds, e in report["datasets"].items():
        md += ["", f"## {DATASET_TITLES.get(ds, ds)}", "", matrix_table(names, e["matrix"]).rstrip()]
    md += ["", "## Summary", "", summary_markdown(report).rstrip(), "", f"![heat-maps]({FILES[2]})"]
    text = "\n".join(md) + "\n"
    write_json_atomic(os.path.join(out, FILES[0]), jsonable(report), indent=1)
    write_text_atomic(os.path.join(out, FILES[1]), text)
    matrix_heatmaps([[{"title": DATASET_TITLES.get(ds, ds), "names": names, "matrix": e["matrix"]}
                      for ds, e in report["datasets"].items()]], os.path.join(out, FILES[2]))
    return text


def parse_args(argv=None):
    p = default_parser(__doc__)
    p.add_argument("--models", required=True, help="NAME=CHECKPOINT,... oldest first (at least two)")
    p.add_argument("--datasets", default="rparis6k,roxford5k,gldv2",
                   help="comma-separated NAME or NAME=ROOT (ROOT defaults to EVAL.ROOT, EVAL.GLDV2_ROOT for gldv2)")
    p.add_argument("--oracles", default="", help="MODEL_NAME=CHECKPOINT,...: the oracle of a model's generation")
    p.add_argument("--out", default="output/compat_matrix", help="folder receiving the report")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    models = parse_named_paths(args.models, "--models")
    if len(models) < 2:
        raise BadInputError(f"--models names {len(models)} model(s); a compatibility matrix needs at least two")
    oracles = dict(parse_named_paths(args.oracles, "--oracles"))
    unknown = sorted(set(oracles) - {n for n, _ in models})
    if unknown:
        raise BadInputError(f"--oracles: {unknown[0]!r} is not one of the --models names ({', '.join(n for n, _ in models)})")
    for flag, pairs in (("--models", models), ("--oracles", oracles.items())):
        for name, path in pairs:
            if not os.path.isfile(path):
                raise BadInputError(f"{flag}: checkpoint {path} of {name!r} does not exist")
    cfg, device, logger = setup(args)
    sets = dataset_roots(args.datasets, cfg)  # a bad --datasets fails before any model loads
    results = evaluate_models(cfg, models, sets, device)
    oracle_self = None
    if oracles:
        oracle_self = {ds: [None] * len(models) for ds, _ in sets}
        for t, (name, _) in enumerate(models):
            if name in oracles:
                for ds, r in evaluate_models(cfg, [(name, oracles[name])], sets, device).items():
                    oracle_self[ds][t] = float(r["matrix"][0, 0])
    report = summarize(models, results, oracle_self, oracles)
    text = write_report(args.out, report, "Compatibility matrix: " + " → ".join(n for n, _ in models))
    logger.info("\n" + text)
    logger.info(f"written to {os.path.join(args.out, FILES[1])} (+ {FILES[0]}, {FILES[2]})")
    return report


if __name__ == "__main__":
    run(main)
