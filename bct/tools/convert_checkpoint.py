"""Convert a checkpoint between the reference implementation's layout and bct's.

python -m bct.tools.convert_checkpoint IN OUT                  # reference -> bct
python -m bct.tools.convert_checkpoint IN OUT --to reference   # bct -> reference

To bct: the weights only (model, discriminator and boundary weights under `extra`), with the meta
block filled from the tensors (arch, embedding size, classes); the optimiser, scaler, config and
best-accuracy numbers are left out. To reference: a dict with epoch, arch and model, the way the
reference saves one, so that its own test code can evaluate a bct model (it reads only `model`).
Architectures other than the torchvision/timm ResNets cannot go to the reference.
Both are read without running code from the input file; the output is written atomically.
"""
import argparse

import torch

from bct.engine.checkpoint import load_checkpoint, save_checkpoint
from bct.models.reference import bct_to_reference
from bct.tools.common import run
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="IN", help="checkpoint to read (bct or reference)")
    p.add_argument("dst", metavar="OUT", help="file to write")
    p.add_argument("--to", choices=("bct", "reference"), default="bct", help="layout of OUT (default bct)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint(args.src, "convert_checkpoint")
    meta = ckpt["meta"]
    from_reference = meta.get("source") == "reference"
    if args.to == "bct":
        if not from_reference:
            raise BadInputError(f"convert_checkpoint: {args.src} is already a bct checkpoint; "
                                f"use --to reference to convert it to the reference's layout")
        save_checkpoint(args.dst, {k: ckpt[k] for k in ("model", "meta", "extra", "epoch")})
        written = len(ckpt["model"]) + len(ckpt["extra"])
        dropped = "optimizer, grad_scaler, config and best-accuracy numbers left out"
    else:
        out = bct_to_reference(ckpt, args.src)
        with atomic_path(args.dst) as tmp:
            torch.save(out, tmp)
        written = len(out["model"])
        dropped = "only epoch, arch and model written"
    print(f"wrote {args.dst} ({args.to} layout): {meta['arch']}, {meta['emb_dim']}-d embedding, "
          f"{meta['num_classes']} classes, epoch {ckpt.get('epoch', 0)}, {written} tensors; {dropped}")
    return args.dst


if __name__ == "__main__":
    run(main)
