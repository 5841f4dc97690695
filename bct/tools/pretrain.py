"""Make a shared pretrained start: train a classification model on a pretraining list and publish its
backbone as a weight file that `*.PRETRAINED_PATH` loads exactly like ImageNet weights.

    python -m bct.tools.pretrain --cfg configs/synthetic/pretrain.yml --out FILE [KEY VALUE ...]
    python -m bct.tools.pretrain --from-model CHECKPOINT --out FILE
    python -m bct.tools.pretrain --old-start --cfg NEW_CONFIG [KEY VALUE ...]


The synthetic benchmark's counterpart of ImageNet pretraining: the old model, the oracle and every new
model start from the same backbone. The start is keyed by its training settings and the pretraining
list's digest: when FILE holds the start of the same key nothing is trained; an interrupted run resumes
from its folder OUTPUT/<arch>/pretrain_<key>/; FILE holding a start of another key is refused (give
another --out). FILE gets a JSON sidecar (FILE.json) with the key and the settings.
With --from-model nothing is trained: the backbone of a trained model is published (scripts/own.sh's
new model starting from its old model), keyed by the model's digest. With --old-start the same is done
for a new model's config (scripts/train_new.sh with PRETRAINED=False): the backbone of its
OLD_MODEL.MODEL_PATH goes to OUTPUT/<arch>/start/old_backbone_<digest>.pth, and the last line printed
is that file's path.
"""
from bct.pipeline.pretrained import pretrained_start
from bct.pipeline.records import training_inputs
from bct.tools.common import add_overrides, config, existing_file, output_file, parser, refuse_overwrite, run
from bct.utils.errors import BadInputError


def build_parser():
    p = parser(__file__, __doc__, cfg=True)
    p.add_argument("--out", default="", type=output_file, help="weight file to publish (what *.PRETRAINED_PATH names)")
    p.add_argument("--from-model", default=None, type=existing_file,
                   help="publish the backbone of this trained model instead of training one (no --cfg)")
    p.add_argument("--old-start", action="store_true",
                   help="publish the backbone of the --cfg new model's OLD_MODEL.MODEL_PATH as its start; "
                        "prints the file's path")
    add_overrides(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from bct.utils.logger import setup_logger
    logger = setup_logger()
    if args.old_start:
        if args.from_model or args.out:
            raise BadInputError("--old-start names its own file (OUTPUT/<arch>/start/); it takes no --from-model or --out")
        if not args.cfg:
            raise BadInputError("--old-start needs --cfg: the new model's config, whose OLD_MODEL.MODEL_PATH is read")
        from bct.pipeline.pretrained import model_start, old_model_start_path
        old, out = old_model_start_path(config(args, logger.info))
        model_start(old, out)
        print(out)
        return out
    if not args.out:
        raise BadInputError("--out is required: the weight file to publish")
    if args.from_model:
        if args.cfg or args.opts:
            raise BadInputError("--from-model publishes a trained model's backbone; it takes no --cfg or KEY VALUE")
        from bct.pipeline.pretrained import model_start
        refuse_overwrite(args.out, {"the model read (--from-model)": args.from_model})
        return model_start(args.from_model, args.out)
    cfg = config(args, logger.info)
    refuse_overwrite(args.out, {"the config": args.cfg, **training_inputs(cfg)})
    return pretrained_start(cfg, args.out)


if __name__ == "__main__":
    run(main)
