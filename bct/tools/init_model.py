"""Write a checkpoint of an untrained model (its initialisation) in the standard format.

Useful as the "at initialisation" baseline and for a first end-to-end check of the evaluation:

    python -m bct.tools.init_model --cfg CFG --role old --out output/init_old.pth [--seed 0] KEY VALUE ...
"""
from bct.pipeline.checkpoints import write_untrained
from bct.tools.common import add_overrides, config, output_file, parser, run, seed


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--role", choices=("old", "new"), required=True)
    p.add_argument("--out", required=True, type=output_file, help="checkpoint file to write")
    p.add_argument("--seed", type=seed, default=0, help="seed of the initialisation")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg = config(args)
    meta = write_untrained(cfg, args.role, args.out, args.seed)
    print(f"wrote untrained {meta['arch']} ({args.role}, {meta['num_classes']} classes) to {args.out}")


if __name__ == "__main__":
    run(main)
