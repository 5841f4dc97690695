"""Write the embedded synthetic landmark benchmark (GLDv2-format training and retrieval files,
revisitop-format test sets, docs/evaluation.md, Dataset.md) and, unless --no-prepare, its GLDv2 lists;
see data/README.md.

    python -m bct.tools.make_synthetic --out data/synthetic [--seed 0] [--size small|tiny]
                                       [--no-prepare] [--force] [--workers 2] [--fractions 0.3,0.6,1.0]
"""
import os

from bct.data.synthetic import SIZES, generate_synthetic
from bct.tools.common import csv_list, fraction, output_dir, parser, positive_int, run, seed


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--out", default="data/synthetic", type=output_dir, help="output folder (default: data/synthetic)")
    p.add_argument("--seed", type=seed, default=0, help="generator seed; the same seed gives identical files")
    p.add_argument("--size", default="small", choices=sorted(SIZES),
                   help="small: the demo benchmark (default); tiny: a few landmarks, for tests")
    p.add_argument("--no-prepare", action="store_true",
                   help="do not run the GLDv2 preparation (split and retrieval lists) at the end")
    p.add_argument("--force", action="store_true", help="regenerate even if OUT already holds the benchmark")
    p.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="rendering processes (default: min(2, CPU count)); the files do not depend on it")
    p.add_argument("--fractions", type=csv_list(fraction), default=None,
                   help="also write the nested splits of a chain of model generations (e.g. 0.3,0.6,1.0; "
                        "see docs/generations.md); added to an existing folder that lacks them")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    return generate_synthetic(args.out, seed=args.seed, size=args.size, prepare=not args.no_prepare,
                              force=args.force, workers=args.workers,
                              fractions=tuple(args.fractions) if args.fractions else None)


if __name__ == "__main__":
    run(main)
