"""Train the old model, the oracle (TRAIN.TYPE base) or a compatible new model (compatible /
adv_compatible) into OUTPUT/<arch>/<TAG>.

    python -m bct.tools.train --cfg configs/old_model.yml [--resume | --new-lr LR] [--reuse] KEY VALUE ...

The folder is held by one run at a time (its train.lock) and keeps the run's record (run.json: its
settings and the digests of its input files). A folder holding a run of other settings or inputs is
refused, never written over; --reuse keeps a finished run of the same settings and inputs, --resume
continues an interrupted one (or a finished one, to more epochs). --new-lr LR continues from the last
checkpoint at another learning rate (say after the loss or the weights turned non-finite; the message
names the checkpoint): --resume with TRAIN.RESUME_WITH_NEW_LR True and TRAIN.OPTIMIZER.BASE_LR LR.
"""
from bct.pipeline.train import train_run
from bct.tools.common import add_overrides, overrides, parser, positive_float, run, setup


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the output folder")
    p.add_argument("--new-lr", type=positive_float, help="continue from the last checkpoint at this learning rate")
    p.add_argument("--reuse", action="store_true", help="keep a finished model of the same settings and inputs")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.new_lr is not None:
        args.opts = [*overrides(args.opts), "TRAIN.RESUME_WITH_NEW_LR", "True", "TRAIN.OPTIMIZER.BASE_LR", str(args.new_lr)]
    cfg, device, _ = setup(args)
    return train_run(cfg, resume=args.resume or args.new_lr is not None, reuse=args.reuse, device=device).history


if __name__ == "__main__":
    run(main)
