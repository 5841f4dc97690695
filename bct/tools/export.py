"""Export a trained model's embedding network (backbone + head) for deployment, and check it.

python -m bct.tools.export --model PATH --format torchscript|onnx --out FILE [--normalize]

The exported network maps a float batch (B, 3, H, W), ImageNet-normalised, to the (B, emb_dim)
embedding (L2-normalised with --normalize); batch size, height and width are free. The
classifier is left out. PATH is a bct or a reference checkpoint. Before reporting success the tool
reloads the written file, runs it on a random batch of another batch size and compares it with
PyTorch: it fails (exit 1) when the largest absolute difference exceeds
ATOL x max(1, largest |embedding value|). ONNX needs the packages of requirements-onnx.txt.
"""
import argparse
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.engine.checkpoint import load_model
from bct.tools.common import run
from bct.utils.errors import BadInputError, CheckFailedError
from bct.utils.fileio import atomic_path

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class EmbeddingNet(nn.Module):
    """images (B, 3, H, W) -> embedding (B, emb_dim), optionally L2-normalised."""

    def __init__(self, model: nn.Module, normalize: bool):
        super().__init__()
        self.backbone, self.head, self.normalize = model.backbone, model.head, bool(normalize)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = self.head(self.backbone(images))
        return F.normalize(emb, dim=1) if self.normalize else emb


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="bct or reference checkpoint")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, help="file to write (.pt for TorchScript, .onnx for ONNX)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embedding inside the exported model")
    p.add_argument("--input-size", type=int, default=224, help="side of the square check (and trace) images")
    p.add_argument("--atol", type=float, default=1e-4, help="tolerance of the check (see above)")
    return p.parse_args(argv)


def _torchscript(net, example, path):
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; it still loads everywhere libtorch runs
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, tmp)
        loaded = torch.jit.load(path, map_location="cpu")
    return lambda x: loaded(x).numpy()


def _onnx(net, example, path):
    missing = []
    for name in ONNX_PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BadInputError(f"--format onnx needs {', '.join(missing)}: pip install -r requirements-onnx.txt")
    import onnxruntime

    with atomic_path(path) as tmp:
        torch.onnx.export(net, (example,), tmp, input_names=["images"], output_names=["embedding"],
                          dynamic_shapes=({0: "batch", 2: "height", 3: "width"},), external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x.numpy()})[0]


def main(argv=None):
    args = parse_args(argv)
    if args.input_size < 32:
        raise BadInputError(f"--input-size {args.input_size}: use at least 32 pixels")
    model = load_model(args.model)
    net = EmbeddingNet(model, args.normalize).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, args.input_size, args.input_size, generator=gen)
    check = torch.randn(3, 3, args.input_size, args.input_size, generator=gen)
    with torch.no_grad():
        run_exported = (_torchscript if args.format == "torchscript" else _onnx)(net, example, args.out)
        expected = net(check).numpy()
        got = run_exported(check)
    if got.shape != expected.shape:
        raise CheckFailedError(f"export check: {args.out} returned shape {got.shape}, PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    limit = args.atol * max(1.0, float(np.abs(expected).max()))
    if not diff <= limit:
        raise CheckFailedError(f"export check: {args.out} differs from PyTorch by up to {diff:.3g} "
                               f"(allowed {limit:.3g}); the file is left for inspection")
    meta = model.meta
    print(f"wrote {args.out} ({args.format}): {meta['arch']} -> {meta['emb_dim']}-d embedding"
          f"{' (L2-normalised)' if args.normalize else ''}, input (B, 3, H, W) float; check on a batch of "
          f"{check.shape[0]} at {args.input_size}x{args.input_size}: max abs difference {diff:.3g} "
          f"(allowed {limit:.3g})")
    return diff


if __name__ == "__main__":
    run(main)
