"""Write a checkpoint of an untrained model (its initialisation) in the standard format.

Useful as the "at initialisation" baseline and for a first end-to-end check of the evaluation:
python -m bct.tools.init_model --cfg CFG --role old --out output/init_old.pth KEY VALUE ...
"""
import argparse

import torch

from bct.config import cfg_to_yaml, load_cfg
from bct.engine.checkpoint import save_checkpoint
from bct.models.build import build_model
from bct.tools.common import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cfg", default="")
    p.add_argument("--role", choices=("old", "new"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cfg = load_cfg(args.cfg, args.opts)
    torch.manual_seed(args.seed)
    model = build_model(cfg, args.role)
    meta = dict(model.meta, train_type="init", comp_loss="none", old_model_path="")
    save_checkpoint(args.out, {"model": model.state_dict(), "meta": meta, "epoch": 0,
                               "config": cfg_to_yaml(cfg)})
    print(f"wrote untrained {meta['arch']} ({args.role}, {meta['num_classes']} classes) to {args.out}")


if __name__ == "__main__":
    run(main)
