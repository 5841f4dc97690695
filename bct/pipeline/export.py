"""Export a trained model's embedding network (backbone + head) for deployment, and check it.

The exported network maps a float batch (B, 3, H, W), ImageNet-normalised, to the (B, emb_dim)
embedding (L2-normalised with ``normalize``); batch size, height and width are free; the classifier is
left out. Before reporting success the written file is reloaded, run on a random batch of another
batch size and compared with PyTorch (CheckFailedError beyond ATOL x max(1, largest |embedding value|)).
"""
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.models.loading import model_from_checkpoint, read_model_checkpoint
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


def export_model(path: str, fmt: str, out: str, normalize: bool = False, input_size: int = 224,
                 atol: float = 1e-4) -> dict:
    """Export the checkpoint at ``path`` to ``out`` ("torchscript" or "onnx") and check it; returns
    {"meta", "diff", "limit", "batch"}."""
    model = model_from_checkpoint(read_model_checkpoint(path, "--model"), path)
    net = EmbeddingNet(model, normalize).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, input_size, input_size, generator=gen)
    check = torch.randn(3, 3, input_size, input_size, generator=gen)
    with torch.no_grad():
        run_exported = (_torchscript if fmt == "torchscript" else _onnx)(net, example, out)
        expected = net(check).numpy()
        got = run_exported(check)
    if got.shape != expected.shape:
        raise CheckFailedError(f"export check: {out} returned shape {got.shape}, PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    limit = atol * max(1.0, float(np.abs(expected).max()))
    if not diff <= limit:
        raise CheckFailedError(f"export check: {out} differs from PyTorch by up to {diff:.3g} "
                               f"(allowed {limit:.3g}); the file is left for inspection")
    return {"meta": model.meta, "diff": diff, "limit": limit, "batch": check.shape[0]}
