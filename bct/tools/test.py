"""Self-test and cross-test (new-model queries against the old-model gallery), docs/evaluation.md.

python -m bct.tools.test --cfg configs/test_model.yml EVAL.DATASET roxford5k EVAL.ROOT ./data/ROxfordParis/ \\
    NEW_MODEL.MODEL_PATH new.pth OLD_MODEL.MODEL_PATH old.pth [NEW_MODEL.ARCH resnet18 OLD_MODEL.ARCH resnet18]

Revisited sets print Easy/Medium/Hard mAP and mP@1/5/10; GLDv2 prints public and private mAP@100.
Results go to EVAL.SAVE_DIR/<dataset>.json. With OLD_MODEL.MODEL_PATH empty, only the self-test runs.
`--datasets rparis6k,roxford5k,gldv2` evaluates several sets in one process (models loaded once);
`--summary` ends with the old/new/cross table of bct.tools.summarize.
"""
import os

from bct.engine.checkpoint import load_trained_model
from bct.evaluation.metrics import format_revisited
from bct.evaluation.protocol import evaluate_gldv2_models, evaluate_revisited_models, headline
from bct.tools.common import default_parser, run, setup
from bct.tools.summarize import SUMMARY_TITLE, summary_table
from bct.utils.comm import is_main_process
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest, jsonable, write_json_atomic, write_text_atomic

NAMES = {"self": "self-test  M(new, new)", "cross": "cross-test M(new, old)", "old_self": "old self   M(old, old)"}


def report_lines(result: dict) -> list:
    lines = []
    for key in ("self", "cross", "old_self"):
        if key not in result:
            continue
        if result["dataset"] == "gldv2":
            part = result[key]
            lines.append(f"{NAMES[key]}: mAP@{result['k']} public {100 * part['public']:.2f} "
                         f"private {100 * part['private']:.2f}")
        else:
            lines.append(f"{NAMES[key]}: {format_revisited(result[key])}")
    if "backfill" in result and result["dataset"] != "gldv2":
        curve = " ".join(f"{p['ratio']:.2f}:{100 * p['medium']:.2f}" for p in result["backfill"])
        lines.append(f"partial backfill (ratio:Medium mAP, seed {result['backfill_seed']}): {curve}")
    return lines


def parse_args(argv=None):
    p = default_parser(__doc__)
    p.add_argument("--datasets", default="",
                   help="comma-separated NAME or NAME=ROOT: evaluate several sets in one process with the models "
                        "loaded once (ROOT defaults to EVAL.ROOT, EVAL.GLDV2_ROOT for gldv2); put it before the "
                        "KEY VALUE overrides")
    p.add_argument("--summary", action="store_true",
                   help="print the old/new/cross summary table of this run and write EVAL.SAVE_DIR/summary.md")
    return p.parse_args(argv)


def dataset_roots(spec: str, cfg) -> list:
    """[(name, root)] from --datasets (empty: EVAL.DATASET at EVAL.ROOT)."""
    if not spec:
        return [(cfg.EVAL.DATASET, cfg.EVAL.ROOT)]
    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, _, root = item.partition("=")
        if not root:
            root = cfg.EVAL.GLDV2_ROOT if name == "gldv2" else cfg.EVAL.ROOT
        if not name or "." in name or name.isupper():
            raise BadInputError(f"--datasets: {item!r} is not NAME or NAME=ROOT (e.g. rparis6k,roxford5k,gldv2)")
        out.append((name, root))
    if not out:
        raise BadInputError("--datasets is empty; give e.g. rparis6k,roxford5k,gldv2")
    return out


def main(argv=None):
    args = parse_args(argv)
    cfg, device, logger = setup(args)
    sets = dataset_roots(args.datasets, cfg)  # a bad --datasets fails before any model loads
    check = ("arch", "emb_dim")
    new_model, _ = load_trained_model(cfg, "new", device=device, check=check)
    old_model = None
    digests = {"new": file_digest(cfg.NEW_MODEL.MODEL_PATH)}
    if cfg.OLD_MODEL.MODEL_PATH:
        old_model, _ = load_trained_model(cfg, "old", device=device, check=check)
        digests["old"] = file_digest(cfg.OLD_MODEL.MODEL_PATH)
    common = dict(device=device, with_old_self=cfg.EVAL.OLD_SELF, use_cache=cfg.EVAL.USE_CACHE,
                  digests=digests, backfill=cfg.EVAL.HOT_REFRESH)
    results = {}
    for name, root in sets:
        if name == "gldv2":
            result = evaluate_gldv2_models(cfg, root, new_model, old_model, **common)
        else:
            result = evaluate_revisited_models(cfg, name, root, new_model, old_model, **common)
        result["new_model"] = cfg.NEW_MODEL.MODEL_PATH
        result["old_model"] = cfg.OLD_MODEL.MODEL_PATH
        result["headline"] = {k: headline(result, k) for k in ("self", "cross", "old_self") if k in result}
        if is_main_process():
            for line in report_lines(result):
                logger.info(f"[{name}] {line}")
            path = os.path.join(cfg.EVAL.SAVE_DIR, f"{name}.json")
            write_json_atomic(path, jsonable(result), indent=1)
            logger.info(f"results written to {path}")
        results[name] = result
    if args.summary and is_main_process():
        table = summary_table(results)
        print(f"\n{SUMMARY_TITLE}\n\n{table}")
        write_text_atomic(os.path.join(cfg.EVAL.SAVE_DIR, "summary.md"), table)
    return results if args.datasets else results[cfg.EVAL.DATASET]


if __name__ == "__main__":
    run(main)
