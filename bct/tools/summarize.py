"""Print the compatibility summary of test results (the JSON files of bct.tools.test).

python -m bct.tools.summarize output/synthetic/eval/demo [--out summary.md]

Per dataset: old self-test M(old, old), new self-test M(new, new), cross-test M(new, old), and the
BCT criterion (cross > old self and new self > old self). Without an oracle run the P-scores do
not apply; the relative gains over the old model are shown instead.
"""
import argparse
import json
import math
import os

from bct.evaluation.report import DATASET_TITLES
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
        ok = cross > old and new > old
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    table = summary_table(load_results(args.folder))
    print(f"{SUMMARY_TITLE}\n")
    print(table)
    if args.out:
        write_text_atomic(args.out, table)
    return table


if __name__ == "__main__":
    run(main)
