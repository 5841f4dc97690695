"""Export a trained model's embedding network (backbone + head) for deployment, and check it.

    python -m bct.tools.export --model PATH --format torchscript|onnx --out FILE [--normalize]

The exported network maps a float batch (B, 3, H, W), ImageNet-normalised, to the (B, emb_dim)
embedding (L2-normalised with --normalize); batch size, height and width are free. The classifier is
left out. PATH is a bct or a reference checkpoint; FILE may not be PATH nor a file of a training run.
Before reporting success the tool reloads the written file, runs it on a random batch of another batch
size and compares it with PyTorch: it fails (exit 1) when the largest absolute difference exceeds
ATOL x max(1, largest |embedding value|). ONNX needs the packages of requirements-onnx.txt.
"""
from bct.tools.common import existing_file, output_file, parser, positive_float, positive_int, run
from bct.utils.errors import BadInputError


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--model", required=True, type=existing_file, help="bct or reference checkpoint")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, type=output_file, help="file to write (.pt for TorchScript, .onnx for ONNX)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embedding inside the exported model")
    p.add_argument("--input-size", type=positive_int, default=224, help="side of the square check (and trace) images")
    p.add_argument("--atol", type=positive_float, default=1e-4, help="tolerance of the check (see above)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.input_size < 32:
        raise BadInputError(f"--input-size {args.input_size}: use at least 32 pixels")
    from bct.pipeline.export import export_model
    done = export_model(args.model, args.format, args.out, args.normalize, args.input_size, args.atol)
    meta = done["meta"]
    print(f"wrote {args.out} ({args.format}): {meta['arch']} -> {meta['emb_dim']}-d embedding"
          f"{' (L2-normalised)' if args.normalize else ''}, input (B, 3, H, W) float; check on a batch of "
          f"{done['batch']} at {args.input_size}x{args.input_size}: max abs difference {done['diff']:.3g} "
          f"(allowed {done['limit']:.3g})")
    return done["diff"]


if __name__ == "__main__":
    run(main)
