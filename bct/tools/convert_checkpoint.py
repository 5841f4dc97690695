"""Convert a checkpoint between the reference implementation's layout and bct's.

    python -m bct.tools.convert_checkpoint --model IN --out OUT                  # reference -> bct
    python -m bct.tools.convert_checkpoint --model IN --out OUT --to reference   # bct -> reference

To bct: the weights only (model, discriminator and boundary weights under `extra`), with the meta
block filled from the tensors (arch, embedding size, classes); the optimiser, scaler, config and
best-accuracy numbers are left out. To reference: a dict with epoch, arch and model, the way the
reference saves one, so that its own test code can evaluate a bct model (it reads only `model`).
Architectures other than the torchvision/timm ResNets cannot go to the reference. Both are read
without running code from the input file; OUT is written atomically and may not be IN (`IN OUT` as
two plain arguments is the older form of the same command).
"""
import argparse

from bct.pipeline.checkpoints import convert
from bct.tools.common import existing_file, output_file, parser, refuse_overwrite, run, text
from bct.utils.errors import BadInputError


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--model", type=existing_file, help="checkpoint to read (bct or reference)")
    p.add_argument("--out", type=output_file, help="file to write")
    p.add_argument("--to", choices=("bct", "reference"), default="bct", help="layout of OUT (default bct)")
    p.add_argument("paths", nargs="*", type=text, help=argparse.SUPPRESS)  # the older IN OUT form, checked below
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.paths:
        if len(args.paths) != 2 or args.model or args.out:
            raise BadInputError("give --model IN --out OUT (or the two paths IN OUT)")
        args.model, args.out = existing_file(args.paths[0]), output_file(args.paths[1])
    if not args.model or not args.out:
        raise BadInputError("give --model IN and --out OUT")
    refuse_overwrite(args.out, {"the checkpoint read (--model)": args.model})
    done = convert(args.model, args.out, args.to)
    meta = done["meta"]
    print(f"wrote {args.out} ({args.to} layout): {meta['arch']}, {meta['emb_dim']}-d embedding, "
          f"{meta['num_classes']} classes, epoch {done['epoch']}, {done['tensors']} tensors; {done['dropped']}")
    return args.out


if __name__ == "__main__":
    run(main)
