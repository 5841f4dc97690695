"""All-method comparison: train the old model, the oracle and every compatible method from one
config folder, evaluate them all, and write the paper's table, P-scores, update gain, partial-backfill
curves and plots (the numbers are defined in docs/evaluation.md).

    python -m bct.tools.compare [--config-dir configs/synthetic] [--methods bct,lce,...] [--seeds 1,2,3]
        [--datasets rparis6k,roxford5k,gldv2] [--out DIR] [--fresh] [--generations N [--fractions 0.3,0.6,1.0]]
        [KEY VALUE ...]

It runs as one process (one GPU, or the CPU). To make the table from models trained separately (for
instance with torchrun through the scripts), test each of them and use
`python -m bct.tools.summarize --oracle ...` instead.

The folder must hold old_model.yml, extract_feat.yml, test_model.yml and new_<method>.yml for the oracle
and every method (the methods are those of bct/methods; without --methods the paper's: BCT, LCE,
UniBCT, Hot-refresh, AdvBCT; --methods all adds the newer ones, docs/method.md). Finished steps of the same settings and
inputs are reused; an interrupted training resumes; a step of other settings in --out is refused;
--fresh deletes --out first. Outputs in --out: results.md, results.json, backfill.png, self_cross.png,
log.txt (the comparison's own log; each model logs into its own folder).

--generations N trains chains of N model generations instead (AdvBCT, BCT and the oracle unless
--methods says otherwise) and writes their compatibility matrices to --out/generations
(docs/generations.md).
"""
from bct.pipeline.chains import generations
from bct.pipeline.comparison import compare
from bct.tools.common import (add_overrides, csv_list, datasets, existing_dir, fraction, nonneg_int, output_dir,
                              overrides, parser, run, seed, text)


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--config-dir", default="configs/synthetic", type=existing_dir, help="setting folder of configs")
    p.add_argument("--methods", type=csv_list(text), help="comma-separated methods, or all for the whole catalogue "
                   "(default: the paper's methods, or advbct,bct with --generations)")
    p.add_argument("--datasets", default="rparis6k,roxford5k,gldv2", type=datasets, help="comma-separated NAME or NAME=ROOT")
    p.add_argument("--seeds", type=csv_list(seed), default=[1234], help="comma-separated seeds")
    p.add_argument("--out", default="", type=output_dir, help="default: output/compare/<config folder name>")
    p.add_argument("--fresh", action="store_true", help="delete --out first and train everything again")
    p.add_argument("--generations", type=nonneg_int, default=0,
                   help="train chains of N model generations (generation t+1 against generation t)")
    p.add_argument("--fractions", type=csv_list(fraction), default=None,
                   help="with --generations: the nested split of each generation, e.g. 0.3,0.6,1.0")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from bct.evaluation.sets import parse_set_specs

    opts, sets = overrides(args.opts), parse_set_specs(args.datasets)
    if args.fractions or args.generations:
        if len(args.seeds) != 1:
            from bct.utils.errors import BadInputError
            raise BadInputError(f"--generations runs one seed; got --seeds {','.join(map(str, args.seeds))}")
        return generations(args.config_dir, args.generations, tuple(args.fractions or ()), args.methods, sets, args.seeds[0],
                           args.out, opts, args.fresh)
    return compare(args.config_dir, args.methods, sets, args.seeds, args.out, opts, args.fresh)


if __name__ == "__main__":
    run(main)
