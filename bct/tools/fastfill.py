"""Train FastFill's transformation h(old embedding) -> (new embedding, uncertainty) for a pair of models,
for `python -m bct.tools.index transform` (docs/deploying.md, "A FastFill cut-over").

    python -m bct.tools.fastfill --cfg CONFIG --old-model OLD.pth --model NEW.pth --out DIR [KEY VALUE ...]

h learns from the embeddings both models give the images of TRAIN.LIST_FILE under TRAIN.ROOT (the new
model's training list, at EVAL.INPUT_SIZE), with FASTFILL.HIDDEN, FASTFILL.EPOCHS, FASTFILL.BASE_LR and
FASTFILL.DISC_WEIGHT, seeded by SEED. DIR gets transformation.pth and transformation.json (the digests
of both checkpoints and of the list, and the settings). DIR holding the transformation of the same
models, list and settings is reused; of others, refused (give another --out).
"""
import os

from bct.tools.common import (add_overrides, existing_file, output_dir, parser, refuse_overlap, run, setup)
from bct.utils.errors import BadInputError


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--old-model", required=True, type=existing_file, help="the old model's checkpoint")
    p.add_argument("--model", required=True, type=existing_file, help="the new model's checkpoint")
    p.add_argument("--out", required=True, type=output_dir, help="folder of transformation.pth and its record")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg, device, logger = setup(args)
    from bct.models.transformation import WEIGHTS
    from bct.pipeline.fastfill import train_transformation

    if not cfg.TRAIN.LIST_FILE or not os.path.isfile(cfg.TRAIN.LIST_FILE):
        raise BadInputError(f"TRAIN.LIST_FILE {cfg.TRAIN.LIST_FILE or '(empty)'} is not a file: the transformation "
                            "learns from the images of the new model's training list (set it in --cfg or as KEY VALUE)")
    refuse_overlap([("--out", args.out)], [("--old-model", args.old_model), ("--model", args.model),
                                           ("TRAIN.LIST_FILE", cfg.TRAIN.LIST_FILE)])
    train_transformation(cfg, args.old_model, args.model, args.out, device, logger, refuse_flag="--out")
    path = os.path.join(args.out, WEIGHTS)
    logger.info(f"[fastfill] transformation {path}; serve it with: python -m bct.tools.index transform INDEX "
                f"--transformation {path} --model {args.model}")
    return path


if __name__ == "__main__":
    run(main)
