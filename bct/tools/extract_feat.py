"""Old-class statistics (docs/method.md): run the old model over the old training list and write
radius.json, angle.json, feats.npy, labels.npy, config.yaml and run.json into EXTRACT.SAVE_DIR, together
and only when complete.

    python -m bct.tools.extract_feat --cfg configs/extract_feat.yml [--model OLD.pth] [--out DIR] [--reuse] KEY VALUE ...

--model sets OLD_MODEL.MODEL_PATH, --out EXTRACT.SAVE_DIR. A folder holding statistics of another old
model, list or settings is refused; --reuse keeps statistics of the same ones.
"""
from bct.pipeline.stats import class_stats
from bct.tools.common import add_overrides, existing_file, output_dir, parser, refuse_overwrite, run, setup


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--model", type=existing_file, help="the old model's checkpoint (OLD_MODEL.MODEL_PATH)")
    p.add_argument("--out", type=output_dir, help="folder of the statistics (EXTRACT.SAVE_DIR)")
    p.add_argument("--reuse", action="store_true", help="keep statistics of the same old model, list and settings")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.opts = [*(["OLD_MODEL.MODEL_PATH", args.model] if args.model else []),
                 *(["EXTRACT.SAVE_DIR", args.out] if args.out else []), *args.opts]
    cfg, device, _ = setup(args)
    refuse_overwrite(cfg.EXTRACT.SAVE_DIR, {"the old model": cfg.OLD_MODEL.MODEL_PATH}, "EXTRACT.SAVE_DIR")
    return class_stats(cfg, reuse=args.reuse, device=device)


if __name__ == "__main__":
    run(main)
