"""The compatibility matrix of a sequence of models (model generations, docs/evaluation.md): every
(query model i, gallery model j <= i) pair on each set, the criterion of every pair, Average
Compatibility, Average Multi-model Accuracy and the P-scores of consecutive pairs; and its report
(compat_matrix.json, compat_matrix.md, compat_matrix.png).
"""
import os

import numpy as np

from bct.evaluation.metrics import consecutive_scores, matrix_compatibility
from bct.evaluation.report import matrix_table, set_title
from bct.pipeline.evaluation import load_for_eval
from bct.pipeline.plots import matrix_heatmaps
from bct.utils.errors import BadInputError
from bct.utils.fileio import jsonable, write_json_atomic, write_text_atomic

FILES = ("compat_matrix.json", "compat_matrix.md", "compat_matrix.png")
HEADLINE = ("mAP x100 (each set's headline number: Medium mAP for the revisited sets, private mAP@100 for "
            "GLDv2). Row i holds the queries embedded by model i, column j the gallery embedded by model j "
            "(never re-embedded); ✓ / ✗: the pair meets / fails the criterion M[i][j] > M[j][j].")


def evaluate_models(cfg, named_paths: list, sets: list, device) -> dict:
    """{set name: matrix result} for the models [(name, checkpoint)] oldest first on ``sets``
    ([(name, root or None)]); all models must embed in one size."""
    from bct.evaluation.sets import build_set, compatibility_matrix

    bsets = [build_set(name, root, cfg) for name, root in sets]
    models, digests, dims = [], [], []
    for name, path in named_paths:
        model, meta, digest = load_for_eval(cfg, "new", path, device, check=())
        if dims and meta["emb_dim"] != dims[0][2]:
            first = dims[0]
            raise BadInputError(f"--models: {first[0]} ({first[1]}) embeds in {first[2]} dimensions but {name} "
                                f"({path}) in {meta['emb_dim']}; every model of a matrix must embed in one size")
        dims.append((name, path, meta["emb_dim"]))
        models.append(model)
        digests.append(digest)
    return {b.name: dict(compatibility_matrix(cfg, b, models, device, digests), title=b.title,
                         headline_name=b.headline_name) for b in bsets}


def summarize(named_paths: list, results: dict, oracle_self: dict = None, oracles: dict = None) -> dict:
    """The JSON-ready report of a matrix evaluation: per set the matrix, every pair's full scores,
    the criterion, AC and AMA; their means over sets; and the P-scores of the consecutive pairs
    whose newer model has an oracle (``oracle_self``: set -> one self-test x100 or None per model)."""
    names = [n for n, _ in named_paths]
    per_set = {}
    for ds, r in results.items():
        entry = {"title": r.get("title", set_title(ds)), "headline_name": r.get("headline_name", ""),
                 "matrix": r["matrix"], **matrix_compatibility(r["matrix"]),
                 "pairs": [{"query": names[i], "gallery": names[j], "scores": s} for (i, j), s in r["pairs"].items()]}
        for c in entry["criterion"]:
            c["query"], c["gallery"] = names[c["query"]], names[c["gallery"]]
        if oracle_self:
            entry["oracle_self"] = oracle_self[ds]
        per_set[ds] = entry
    consecutive = consecutive_scores({d: r["matrix"] for d, r in results.items()}, oracle_self or {})
    for c in consecutive:
        c["old"], c["new"] = names[c["old"]], names[c["new"]]
    return {"models": [{"name": n, "path": p} for n, p in named_paths], "oracles": oracles or {},
            "datasets": per_set,
            "AC": float(np.mean([e["AC"] for e in per_set.values()])),
            "AMA": float(np.mean([e["AMA"] for e in per_set.values()])),
            "consecutive": consecutive}


def matrix_report(cfg, models: list, sets: list, device, oracles: dict = None) -> dict:
    """Evaluate the matrix of ``models`` and, for the models named in ``oracles``, their oracles'
    self-tests; returns summarize()'s report."""
    results = evaluate_models(cfg, models, sets, device)
    oracle_self = None
    if oracles:
        oracle_self = {ds: [None] * len(models) for ds in results}
        for t, (name, _) in enumerate(models):
            if name in oracles:
                for ds, r in evaluate_models(cfg, [(name, oracles[name])], sets, device).items():
                    oracle_self[ds][t] = float(r["matrix"][0, 0])
    return summarize(models, results, oracle_self, oracles)


def summary_markdown(report: dict) -> str:
    """AC and AMA per set and their means, then the P-scores of the consecutive pairs."""
    lines = ["| Dataset | criterion met | AC | AMA |", "| --- | --- | --- | --- |"]
    for ds, e in report["datasets"].items():
        lines.append(f"| {e['title']} | {e['n_met']} of {e['n_pairs']} | {e['AC']:.2f} | {e['AMA']:.2f} |")
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
        md += ["", f"## {e['title']} ({e['headline_name']} x100)", "", matrix_table(names, e["matrix"]).rstrip()]
    md += ["", "## Summary", "", summary_markdown(report).rstrip(), "", f"![heat-maps]({FILES[2]})"]
    text = "\n".join(md) + "\n"
    write_json_atomic(os.path.join(out, FILES[0]), jsonable(report), indent=1)
    write_text_atomic(os.path.join(out, FILES[1]), text)
    matrix_heatmaps([[{"title": e["title"], "names": names, "matrix": e["matrix"]}
                      for e in report["datasets"].values()]], os.path.join(out, FILES[2]))
    return text
