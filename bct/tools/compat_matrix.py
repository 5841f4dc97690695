"""The compatibility matrix of a sequence of models (model generations, docs/evaluation.md): every
(query model i, gallery model j <= i) pair on each set, the criterion of every pair, Average
Compatibility, Average Multi-model Accuracy and the P-scores of consecutive pairs.

    python -m bct.tools.compat_matrix --cfg configs/test_model.yml \
        --models gen1=old.pth,gen2=new.pth,gen3=newer.pth --datasets rparis6k,roxford5k,gldv2 \
        [--oracles gen2=oracle2.pth,gen3=oracle3.pth] [--out output/compat_matrix] [KEY VALUE ...]

Models oldest first, all of one embedding size; a model given as an existing file is named after it.
Each model embeds each set's queries and gallery once (gallery features go through the feature cache,
EVAL.CACHE_DIR); every pair is then a search. --oracles names, for a model, the oracle (no
compatibility term) of its generation: its self-test is what the P-scores of the pair (previous model
-> that model) are measured against. Writes into --out: compat_matrix.json, compat_matrix.md (a table
per set and the summary) and compat_matrix.png.
"""
import os

from bct.pipeline.matrix import FILES, matrix_report, write_report
from bct.tools.common import add_overrides, datasets, models, output_dir, parser, refuse_overwrite, run, setup
from bct.utils.errors import BadInputError


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--models", required=True, type=models, help="NAME=CHECKPOINT,... oldest first (at least two)")
    p.add_argument("--datasets", default="rparis6k,roxford5k,gldv2", type=datasets, help="comma-separated NAME or NAME=ROOT")
    p.add_argument("--oracles", default="", type=models, help="MODEL_NAME=CHECKPOINT,...: the oracle of a model's generation")
    p.add_argument("--out", default="output/compat_matrix", type=output_dir, help="folder receiving the report")
    add_overrides(p)
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    models = args.models
    if len(models) < 2:
        raise BadInputError(f"--models names {len(models)} model(s); a compatibility matrix needs at least two")
    oracles = dict(args.oracles)
    unknown = sorted(set(oracles) - {n for n, _ in models})
    if unknown:
        raise BadInputError(f"--oracles: {unknown[0]!r} is not one of the --models names ({', '.join(n for n, _ in models)})")
    for name in FILES:
        refuse_overwrite(os.path.join(args.out, name), {f"model {n}": path for n, path in [*models, *oracles.items()]})
    from bct.evaluation.sets import parse_set_specs

    sets = parse_set_specs(args.datasets)  # a bad --datasets fails before any model loads
    cfg, device, logger = setup(args)
    report = matrix_report(cfg, models, sets, device, oracles)
    text = write_report(args.out, report, "Compatibility matrix: " + " → ".join(n for n, _ in models))
    logger.info("\n" + text)
    logger.info(f"written to {os.path.join(args.out, FILES[1])} (+ {FILES[0]}, {FILES[2]})")
    return report


if __name__ == "__main__":
    run(main)
