"""Train the old model, the oracle (TRAIN.TYPE base) or a compatible new model (compatible /
adv_compatible): python -m bct.tools.train --cfg configs/old_model.yml [--resume] KEY VALUE ...

The output folder is held by one run at a time (its train.lock); a second run there is refused."""
from contextlib import ExitStack

from bct.engine.trainer import Trainer, output_dir
from bct.tools.common import default_parser, run, setup


def main(argv=None):
    args = default_parser(__doc__, resume=True).parse_args(argv)
    with ExitStack() as hold:
        cfg, device, logger = setup(args, output_dir, hold=hold)
        trainer = Trainer(cfg, device, resume=args.resume)
        history = trainer.train()
        logger.info(f"finished: {output_dir(cfg)}/model_final.pth")
    return history


if __name__ == "__main__":
    run(main)
