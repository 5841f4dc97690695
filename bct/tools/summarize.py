"""Summarise test results (the <set>.json files that bct.tools.test writes into EVAL.SAVE_DIR).

One model:  python -m bct.tools.summarize output/eval/new_advbct [--out summary.md]
    Per set: old self-test M(old, old), new self-test M(new, new), cross-test M(new, old), the BCT
    criterion (cross > old self and new self > old self) and the gains over the old model.

The paper's table from models that already exist (trained by the scripts, with torchrun or not):
    python -m bct.tools.summarize --oracle output/eval/new_oracle output/eval/new_bct output/eval/new_advbct ...
    Each folder holds the test results of one new model against the same old model; --oracle names
    the folder of the oracle (the new model trained without a compatibility term). Prints the
    paper's table: self / cross per set, P_up, P_comp, P_1 and the update gain (Gain %), then the
    BCT criterion per method. A row is named after its folder, or NAME=FOLDER. The numbers are
    defined in docs/evaluation.md.

A folder must hold one model's results: two results for one set (say roxford5k.json and a kept
roxford5k_before_fix.json), a headline outside [0, 100] or, unless --mixed, results of different
models are refused with one line.
"""
import os

from bct.pipeline.results import SUMMARY_TITLE, load_results, paper_table, summary_table
from bct.tools.common import output_file, parser, refuse_overwrite, result_folder, run
from bct.utils.errors import BadInputError
from bct.utils.fileio import write_text_atomic


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("folders", nargs="+", type=result_folder, help="EVAL.SAVE_DIR of bct.tools.test (NAME=FOLDER names a row)")
    p.add_argument("--oracle", default="", type=result_folder, help="test results of the oracle: print the paper's table of the folders")
    p.add_argument("--out", default="", type=output_file, help="also write the table to this markdown file")
    p.add_argument("--mixed", action="store_true", help="accept a folder whose results are of different models")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.oracle:
        text = paper_table(args.oracle, args.folders, args.mixed)
        print(f"{SUMMARY_TITLE} self / cross; P-scores and Gain % as in docs/evaluation.md\n")
    else:
        if len(args.folders) > 1:
            raise BadInputError("several result folders make the paper's table: name the oracle's folder with --oracle")
        text = summary_table(load_results(args.folders[0], args.mixed))
        print(f"{SUMMARY_TITLE}\n")
    print(text)
    if args.out:
        folders = [f.partition("=")[2] if "=" in f and not os.path.isdir(f) else f for f in [*args.folders, args.oracle]]
        results = {f"the result {name}": os.path.join(f, name) for f in folders if f and os.path.isdir(f)
                   for name in os.listdir(f) if name.endswith(".json")}
        refuse_overwrite(args.out, results)
        write_text_atomic(args.out, text)
    return text


if __name__ == "__main__":
    run(main)
