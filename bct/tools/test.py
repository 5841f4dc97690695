"""Self-test and cross-test (new-model queries against the old-model gallery), docs/evaluation.md.

    python -m bct.tools.test --cfg configs/test_model.yml --model NEW.pth [--old-model OLD.pth]
        [--datasets rparis6k,roxford5k,gldv2,shoes=data/shoes/eval] [--out DIR] [--summary] [KEY VALUE ...]

--model and --old-model set NEW_MODEL.MODEL_PATH and OLD_MODEL.MODEL_PATH (with no old model only the
self-test runs); --datasets evaluates several sets in one process with the models loaded once (NAME
takes its root from the config, NAME=ROOT names it; default: EVAL.DATASET at EVAL.ROOT); --out sets
EVAL.SAVE_DIR, where each set's result goes (<set>.json, with the models' paths and digests, and
<set>.rankings.npz: the top 100 of every query's ranking and its AP, which bct.tools.report shows).
Revisited sets print Easy/Medium/Hard mAP and mP@1/5/10; GLDv2-format sets public and private
mAP@100. --summary ends with the old/new/cross table of bct.tools.summarize.
"""
import os

from bct.pipeline.evaluation import evaluate
from bct.pipeline.results import SUMMARY_TITLE, refuse_other_models_result, summary_table, write_result
from bct.tools.common import add_overrides, datasets, existing_file, output_dir, parser, refuse_overwrite, run, setup
from bct.utils.comm import is_main_process
from bct.utils.fileio import write_text_atomic


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--model", type=existing_file, help="the new model's checkpoint (NEW_MODEL.MODEL_PATH)")
    p.add_argument("--old-model", type=existing_file, help="the old model's checkpoint (OLD_MODEL.MODEL_PATH)")
    p.add_argument("--datasets", default="", type=datasets, help="comma-separated NAME or NAME=ROOT")
    p.add_argument("--out", type=output_dir, help="folder of the results (EVAL.SAVE_DIR)")
    p.add_argument("--summary", action="store_true",
                   help="print the old/new/cross summary table of this run and write EVAL.SAVE_DIR/summary.md")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.opts = [*(["NEW_MODEL.MODEL_PATH", args.model] if args.model else []),
                 *(["OLD_MODEL.MODEL_PATH", args.old_model] if args.old_model else []),
                 *(["EVAL.SAVE_DIR", args.out] if args.out else []), *args.opts]
    cfg, device, logger = setup(args)
    from bct.evaluation.sets import parse_set_specs

    sets = parse_set_specs(args.datasets) if args.datasets else [(cfg.EVAL.DATASET, cfg.EVAL.ROOT)]
    models = {"new": cfg.NEW_MODEL.MODEL_PATH, "old": cfg.OLD_MODEL.MODEL_PATH}
    for name, _ in sets:
        out = os.path.join(cfg.EVAL.SAVE_DIR, f"{name}.json")
        refuse_overwrite(out, {f"the {role} model": path for role, path in models.items()}, "EVAL.SAVE_DIR")
        refuse_other_models_result(out, models)

    def report(bset, result):
        if is_main_process():
            for line in bset.report_lines(result):
                logger.info(f"[{bset.name}] {line}")
            path = write_result(cfg.EVAL.SAVE_DIR, result)
            logger.info(f"results written to {path} (rankings: {bset.name}.rankings.npz)")

    results = evaluate(cfg, sets, cfg.NEW_MODEL.MODEL_PATH, cfg.OLD_MODEL.MODEL_PATH, device,
                       with_old_self=cfg.EVAL.OLD_SELF, backfill=cfg.EVAL.PARTIAL_BACKFILL, check=("arch", "emb_dim"),
                       on_result=report, rankings=True)
    if args.summary and is_main_process():
        table = summary_table(results)
        print(f"\n{SUMMARY_TITLE}\n\n{table}")
        write_text_atomic(os.path.join(cfg.EVAL.SAVE_DIR, "summary.md"), table)
    return results if args.datasets else results[sets[0][0]]


if __name__ == "__main__":
    run(main)
