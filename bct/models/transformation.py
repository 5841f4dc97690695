"""FastFill's transformation (Jaeckle et al., ICLR 2023): a small network h that maps an old
embedding to an estimate of the new embedding of the same image, with a predicted uncertainty, so that
a gallery is first transformed without its images and then backfilled, most uncertain rows first.

    old embedding (L2-normalised, old_dim) -> MLP -> (new-embedding estimate (new_dim), log sigma^2 (scalar))

Two hidden layers of ``hidden`` units with BatchNorm and ReLU feed two linear heads: the estimate and
the log-variance. The loss is bct.losses.fastfill.fastfill_loss; training is bct.pipeline.fastfill,
which keeps the weights as ``transformation.pth`` (a state dict) beside ``transformation.json``
(RECORD: {"key": {..., "old": old checkpoint digest, "new": new checkpoint digest}, "dims": the
constructor's arguments}); `save_transformation` writes that pair and `load_transformation` reads it back.
"""
import json
import os

import torch
import torch.nn as nn

from bct.utils.errors import BadInputError

RECORD = "transformation.json"
WEIGHTS = "transformation.pth"


class FastFillTransform(nn.Module):
    def __init__(self, old_dim: int, new_dim: int, hidden: int = 512):
        super().__init__()
        self.dims = {"old_dim": int(old_dim), "new_dim": int(new_dim), "hidden": int(hidden)}
        self.body = nn.Sequential(nn.Linear(old_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))
        self.mean = nn.Linear(hidden, new_dim)
        self.log_var = nn.Linear(hidden, 1)

    def forward(self, old: torch.Tensor):
        """(B, old_dim) -> (estimate (B, new_dim), log sigma^2 (B,))."""
        h = self.body(old)
        return self.mean(h), self.log_var(h).squeeze(1)

    @torch.no_grad()
    def transform(self, old, batch: int = 4096):
        """numpy/torch (N, old_dim) -> (L2-normalised estimates (N, new_dim) float32 numpy, uncertainty
        sigma^2 (N,) float32 numpy), in eval mode."""
        import numpy as np

        self.eval()
        old = torch.as_tensor(np.asarray(old, dtype=np.float32))
        est, var = [], []
        for s in range(0, old.shape[0], batch):
            m, lv = self(old[s:s + batch])
            est.append(torch.nn.functional.normalize(m, dim=1))
            var.append(lv.exp())
        if not est:
            return np.zeros((0, self.dims["new_dim"]), np.float32), np.zeros(0, np.float32)
        return torch.cat(est).numpy().astype(np.float32), torch.cat(var).numpy().astype(np.float32)


def save_transformation(h: FastFillTransform, folder: str, key: dict) -> str:
    """Write `h` as WEIGHTS and its RECORD ({"key": key, "dims": h.dims}) into `folder`, the weights
    first and each file whole; returns the weights' path (what load_transformation reads)."""
    from bct.utils.fileio import atomic_path, write_json_atomic

    os.makedirs(folder, exist_ok=True)
    weights = os.path.join(folder, WEIGHTS)
    with atomic_path(weights) as tmp:
        torch.save(h.state_dict(), tmp)
    write_json_atomic(os.path.join(folder, RECORD), {"key": key, "dims": h.dims})
    return weights


def load_transformation(path: str, what: str = "--transformation"):
    """(FastFillTransform in eval mode, its record) from `path` (the weights) and the RECORD beside it;
    one line when either is missing, unreadable or does not fit the other."""
    record_path = os.path.join(os.path.dirname(os.path.abspath(path)), RECORD)
    try:
        with open(record_path) as f:
            record = json.load(f)
        dims, key = record["dims"], record["key"]
        h = FastFillTransform(**{k: int(dims[k]) for k in ("old_dim", "new_dim", "hidden")})
        str(key["old"]), str(key["new"])
    except FileNotFoundError:
        raise BadInputError(f"{what} {path}: no {RECORD} beside it (the record train_transformation writes: which "
                            f"old and new checkpoints it maps); keep the two files together") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{what} {path}: its record {record_path} is damaged ({type(e).__name__}: "
                            f"{str(e)[:80]})") from None
    try:
        h.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # torch raises several kinds for a file that is not this state dict
        raise BadInputError(f"{what} {path} is not the transformation its record {RECORD} describes "
                            f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
    return h.eval(), record
