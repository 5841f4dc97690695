"""Summarise test results (the <dataset>.json files that bct.tools.test writes into EVAL.SAVE_DIR).

One model:  python -m bct.tools.summarize output/eval/new_advbct [--out summary.md]
    Per dataset: old self-test M(old, old), new self-test M(new, new), cross-test M(new, old), the
    BCT criterion (cross > old self and new self > old self) and the gains over the old model.

The paper's table from models that already exist (trained by the scripts, with torchrun or not):
    python -m bct.tools.summarize --oracle output/eval/new_oracle output/eval/new_bct output/eval/new_advbct ...
    Each folder holds the test results of one new model against the same old model; --oracle names
    the folder of the oracle (the new model trained without a compatibility term). Prints the
    paper's table: self / cross per dataset, P_up, P_comp, P_1 and the update gain (Gain %), then
    the BCT criterion per method. A row is named after its folder, or NAME=FOLDER. The numbers are
    defined in docs/evaluation.md.
"""
import argparse
import json
import math
import os

from bct.evaluation.metrics import meets_bct_criterion
from bct.evaluation.report import DATASET_TITLES, markdown_table
from bct.tools.common import run
from bct.utils.errors import BadInputError
from bct.utils.fileio import read_text, write_text_atomic

ORDER = ("rparis6k", "roxford5k", "gldv2")
SUMMARY_TITLE = "Headline mAP x100 (Medium for revisited sets, private mAP@100 for GLDv2):"


def summary_table(results: dict) -> str:
    head = ["Dataset", "old self", "new self", "cross (new→old)", "BCT criterion", "self gain", "cross gain"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in results.items():
        h = r["headline"]
        old, new, cross = h.get("old_self"), h["self"], h.get("cross")
        if old is None or cross is None:
            lines.append(f"| {DATASET_TITLES.get(name, name)} | — | {new:.2f} | — | — | — | — |")
            continue
        ok = meets_bct_criterion(old, new, cross)
        lines.append(f"| {DATASET_TITLES.get(name, name)} | {old:.2f} | {new:.2f} | {cross:.2f} | "
                     f"{'met' if ok else 'not met'} | {new - old:+.2f} | {cross - old:+.2f} |")
    return "\n".join(lines) + "\n"


def _rerun(path: str) -> str:
    return f"run bct.tools.test again to rewrite {os.path.basename(path)}"


def read_result(path: str):
    """A test result JSON, checked: None for a JSON file that is not a test result (no
    "headline"); a one-line error for a truncated file or a headline that is not numbers."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); the file is truncated or "
                            f"edited: {_rerun(path)}") from None
    if not isinstance(data, dict) or "headline" not in data:
        return None
    head = data["headline"]
    if not isinstance(data.get("dataset"), str) or not isinstance(head, dict) or "self" not in head:
        raise BadInputError(f"{path}: expected \"dataset\" (a name) and \"headline\" with at least \"self\"; "
                            f"{_rerun(path)}")
    for key, value in head.items():
        if type(value) not in (int, float) or not math.isfinite(value):
            raise BadInputError(f"{path}: headline.{key} is {json.dumps(value)}, expected a number (mAP x100); the "
                                f"run that wrote it could not score it: {_rerun(path)}")
    return data


def load_results(folder: str) -> dict:
    if not os.path.isdir(folder):
        raise BadInputError(f"{folder} does not exist; run bash scripts/test.sh first")
    found = {}
    for name in sorted(os.listdir(folder), key=lambda n: (ORDER.index(n[:-5]) if n[:-5] in ORDER else 9, n)):
        if name.endswith(".json"):
            data = read_result(os.path.join(folder, name))
            if data is not None:
                found[data["dataset"]] = data
    if not found:
        raise BadInputError(f"{folder} holds no test results (<dataset>.json from bct.tools.test)")
    return found


def _named(spec: str) -> tuple:
    name, sep, folder = spec.partition("=")
    return (name, folder) if sep else (os.path.basename(os.path.normpath(spec)), spec)


def _same_old_model(r: dict, oracle: dict) -> bool:
    """Whether a result was measured against the oracle's old model: equal old self-tests when both
    have one (the same model and settings give the same number), else the same checkpoint path."""
    a, b = r["headline"].get("old_self"), oracle["headline"].get("old_self")
    if a is not None and b is not None:
        return abs(a - b) < 1e-6
    return os.path.normpath(str(r.get("old_model"))) == os.path.normpath(str(oracle.get("old_model")))


def paper_table(oracle_folder: str, method_specs: list) -> str:
    """The paper's table of the new models in ``method_specs`` (FOLDER or NAME=FOLDER), with the
    old model's self-test and the oracle's self-test taken from the oracle's results."""
    oracle = load_results(oracle_folder)
    datasets = [d for d in oracle if "old_self" in oracle[d]["headline"]]
    if not datasets:
        raise BadInputError(f"{oracle_folder}: the oracle's results lack the old model's self-test; test it with "
                            "OLD_MODEL.MODEL_PATH set and EVAL.OLD_SELF True")
    old_self = {d: oracle[d]["headline"]["old_self"] for d in datasets}
    oracle_self = {d: oracle[d]["headline"]["self"] for d in datasets}
    rows, criterion = [], []
    for spec in method_specs:
        name, folder = _named(spec)
        res = {d: r for d, r in load_results(folder).items() if d in datasets}
        for d, r in res.items():
            if not _same_old_model(r, oracle[d]):
                raise BadInputError(f"{folder}/{d}.json was not tested against the oracle's old model "
                                    f"({r.get('old_model')!r} vs {oracle[d].get('old_model')!r} in {oracle_folder}, "
                                    "or other EVAL settings); test every model against the same old model")
        row = {"method": name, "self": {d: r["headline"]["self"] for d, r in res.items()},
               "cross": {d: r["headline"]["cross"] for d, r in res.items() if "cross" in r["headline"]}}
        rows.append(row)
        met = [f"{DATASET_TITLES.get(d, d)} " + ("yes" if meets_bct_criterion(old_self[d], row["self"][d], c) else "no")
               for d, c in row["cross"].items()]
        criterion.append(f"- {name}: " + (", ".join(met) or "no cross-test (OLD_MODEL.MODEL_PATH was empty)"))
    try:
        table = markdown_table(rows, datasets, old_self, oracle_self)
    except ValueError as e:
        raise BadInputError(f"{oracle_folder}: {e}") from None
    return (table + "\nBCT criterion (cross > old self and new self > old self), per dataset:\n\n"
            + "\n".join(criterion) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bct.tools.summarize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="EVAL.SAVE_DIR of bct.tools.test (NAME=FOLDER names a row)")
    p.add_argument("--oracle", default="", help="test results of the oracle: print the paper's table of the folders")
    p.add_argument("--out", default="", help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if args.oracle:
        text = paper_table(args.oracle, args.folders)
        print(f"{SUMMARY_TITLE} self / cross; P-scores and Gain % as in docs/evaluation.md\n")
    else:
        if len(args.folders) > 1:
            raise BadInputError("several result folders make the paper's table: name the oracle's folder with --oracle")
        text = summary_table(load_results(args.folders[0]))
        print(f"{SUMMARY_TITLE}\n")
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return text


if __name__ == "__main__":
    run(main)
