"""The old model's embeddings of the training images, kept after their first computation.

The old model is frozen and in eval mode, and without augmentation (TRAIN.AUGMENT False, the paper's
setting) an image's input tensor is the same in every epoch: so is its old embedding. The trainer
keeps each one the first time it is computed and gives a batch its kept embeddings once all of them
are there, so the old forward pass runs in the first epoch only. A batch with any missing image runs
the old model on the whole batch (the same batch shape as without the cache, so the same numbers;
on the CPU they are bit-identical, which a test checks).

Under DDP every rank sees another part of each epoch. Until its store is complete, each rank shares
the embeddings of its batch with the others (all-gathers each step), so every rank holds the union
and all of them complete their stores at the same step, in the first epoch.
"""
import torch

from bct.utils.comm import all_gather_nograd


class OldFeatureCache:
    def __init__(self, num_images: int, dim: int, device: torch.device):
        pin = device.type == "cuda"
        self.feats = torch.empty(num_images, dim, dtype=torch.float32, pin_memory=pin)
        self.have = torch.zeros(num_images, dtype=torch.bool)
        self.device = device
        self.complete = False

    @staticmethod
    def nbytes(num_images: int, dim: int) -> int:
        return num_images * dim * 4

    def lookup(self, idx: torch.Tensor):
        """The kept embeddings of a batch (on the device), or None when any of them is missing."""
        if idx.numel() == 0 or not (self.complete or bool(self.have[idx].all())):
            return None
        return self.feats[idx].to(self.device, non_blocking=True)

    def store(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """Keep a batch's embeddings; under DDP also those of the other ranks' batches (batches of
        different sizes included), so every rank's store fills alike."""
        if self.complete:
            return
        feats = all_gather_nograd(feats.float())
        idx = all_gather_nograd(idx.to(feats.device)).cpu()
        self.feats[idx] = feats.cpu()
        self.have[idx] = True
        self.complete = bool(self.have.all())
