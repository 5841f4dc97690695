"""bct: backward-compatible representation learning for image retrieval (AdvBCT and baselines).

`bct.load_model(path, device="cpu")` returns the embedding model of a bct or reference checkpoint
(see docs/models.md); `bct.Index` is a gallery index on disk (docs/deploying.md). Both are resolved
on first use, so `import bct` does not import torch.
"""
__version__ = "0.1.0"
__all__ = ["load_model", "Index"]


def __getattr__(name):
    if name == "load_model":
        from bct.models.loading import load_model
        return load_model
    if name == "Index":
        from bct.index import Index
        return Index
    raise AttributeError(f"module 'bct' has no attribute {name!r}")
