"""The old model's embeddings of the training images, kept after their first computation.

The old model is frozen and in eval mode, and without augmentation (TRAIN.AUGMENT False, the paper's
setting) an image's input tensor is the same in every epoch: so is its old embedding. The trainer
keeps each one the first time it is computed and gives a batch its kept embeddings once all of them
are there, so the old forward pass runs in the first epoch only. A batch with any missing image runs
the old model on the whole batch (the same batch shape as without the cache, so the same numbers;
on the CPU they are bit-identical, which a test checks).

Under DDP every rank sees another part of each epoch. Until its store is complete, each rank shares
the embeddings of its batch with the others (one all-gather per step), so every rank holds the union
and all of them complete their stores at the same step, in the first epoch.
"""
import torch
import torch.distributed as dist

from bct.utils.comm import get_world_size, is_dist


class OldFeatureCache:
    def __init__(self, num_images: int, dim: int, device: torch.device, batch_size: int):
        pin = device.type == "cuda"
        self.feats = torch.empty(num_images, dim, dtype=torch.float32, pin_memory=pin)
        self.have = torch.zeros(num_images, dtype=torch.bool)
        self.device, self.batch_size = device, batch_size
        self.complete = False
        self.hits = self.misses = 0  # batches served from the store / computed

    @staticmethod
    def nbytes(num_images: int, dim: int) -> int:
        return num_images * dim * 4

    def lookup(self, idx: torch.Tensor):
        """The kept embeddings of a batch (on the device), or None when any of them is missing."""
        if idx.numel() == 0 or not (self.complete or bool(self.have[idx].all())):
            self.misses += 1
            return None
        self.hits += 1
        return self.feats[idx].to(self.device, non_blocking=True)

    def store(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """Keep a batch's embeddings; under DDP also those of the other ranks' batches."""
        if self.complete:
            return
        feats = feats.detach().float()
        if is_dist() and get_world_size() > 1:
            idx, feats = self._gather(idx, feats)
        idx = idx.cpu()
        self.feats[idx] = feats.cpu()
        self.have[idx] = True
        self.complete = bool(self.have.all())

    def _gather(self, idx: torch.Tensor, feats: torch.Tensor):
        # Batches can be short (TRAIN.SKIP_BAD_IMAGES): pad to the batch size, index -1 marks padding.
        n, world = idx.numel(), get_world_size()
        pad_idx = torch.full((self.batch_size,), -1, dtype=torch.long, device=feats.device)
        pad_feats = torch.zeros(self.batch_size, feats.shape[1], dtype=feats.dtype, device=feats.device)
        pad_idx[:n] = idx.to(feats.device)
        pad_feats[:n] = feats
        all_idx = [torch.empty_like(pad_idx) for _ in range(world)]
        all_feats = [torch.empty_like(pad_feats) for _ in range(world)]
        dist.all_gather(all_idx, pad_idx)
        dist.all_gather(all_feats, pad_feats)
        all_idx, all_feats = torch.cat(all_idx), torch.cat(all_feats)
        keep = all_idx >= 0
        return all_idx[keep], all_feats[keep]
