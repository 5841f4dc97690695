"""The training data loader: the list read and checked against the trained model's classes, the
dataset (CPU or GPU decoding, bct.data.datasets), a distributed sampler that can start an epoch
part-way (exact resume mid-epoch), seeded workers, and batches of (images, labels, dataset indices,
number of unreadable images left out).
"""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from bct.data.datasets import build_image_dataset, loader_workers
from bct.data.gpu_decode import raw_collate
from bct.data.lists import check_labels, read_image_list
from bct.models.build import ROLE_KEYS, trained_role
from bct.utils.comm import get_rank, get_world_size
from bct.utils.errors import BadInputError

__all__ = ["build_train_loader", "ResumableSampler", "GpuDecodedLoader"]


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _collate_ok(batch):
    """Stack a batch, dropping images that failed to load under SKIP_BAD_IMAGES (they are counted)."""
    images, labels, indices, ok = zip(*batch)
    keep = [i for i, good in enumerate(ok) if good]
    return (torch.stack([images[i] for i in keep]) if keep else torch.empty(0),
            torch.tensor([labels[i] for i in keep], dtype=torch.long),
            torch.tensor([indices[i] for i in keep], dtype=torch.long),
            len(batch) - len(keep))


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (resuming a checkpoint saved mid-epoch)."""

    skip = 0

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class GpuDecodedLoader:
    """The training DataLoader when images are decoded on the GPU (DATA.DECODE_DEVICE cuda): the
    workers deliver file bytes, ``decoder`` decodes each batch on the device, and batches come out
    as from the CPU loader: (images on the device, labels, dataset indices, number of unreadable
    images left out)."""

    def __init__(self, loader, decoder):
        self.loader, self.decoder = loader, decoder
        self.generator = loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for payloads, labels, indices, _ in self.loader:
            images, ok = self.decoder(payloads, indices)
            yield images[ok.to(images.device)], labels[ok], indices[ok], int((~ok).sum())


def build_train_loader(cfg, seed: int, device="cpu"):
    """(loader, sampler) of the training list; `device` is where DATA.DECODE_DEVICE cuda decodes."""
    paths, labels = read_image_list(cfg.TRAIN.LIST_FILE, cfg.TRAIN.ROOT)
    num_classes = cfg[ROLE_KEYS[trained_role(cfg)]].NUM_CLASSES
    check_labels(labels, num_classes, cfg.TRAIN.LIST_FILE, key=f"{ROLE_KEYS[trained_role(cfg)]}.NUM_CLASSES")
    dataset, decoder = build_image_dataset(cfg, "train", cfg.TRAIN.ROOT, paths, labels, size=cfg.TRAIN.INPUT_SIZE,
                                           augment=cfg.TRAIN.AUGMENT, skip_bad=cfg.TRAIN.SKIP_BAD_IMAGES,
                                           list_name=cfg.TRAIN.LIST_FILE, device=device)
    world = get_world_size()
    if len(dataset) < cfg.TRAIN.BATCH_SIZE * world:
        raise BadInputError(
            f"{cfg.TRAIN.LIST_FILE}: {len(dataset)} images cannot fill one batch of TRAIN.BATCH_SIZE "
            f"{cfg.TRAIN.BATCH_SIZE} on {world} process(es); lower TRAIN.BATCH_SIZE"
        )
    sampler = ResumableSampler(dataset, num_replicas=world, rank=get_rank(), shuffle=True,
                                 seed=cfg.SEED, drop_last=True)
    workers = loader_workers(cfg.TRAIN.NUM_WORKERS, "TRAIN.NUM_WORKERS")
    loader = DataLoader(dataset, batch_size=cfg.TRAIN.BATCH_SIZE, sampler=sampler, drop_last=True,
                        num_workers=workers, pin_memory=torch.cuda.is_available(),
                        persistent_workers=workers > 0 and not cfg.DETERMINISTIC, prefetch_factor=4 if workers > 0 else None,
                        worker_init_fn=_worker_init, collate_fn=_collate_ok if decoder is None else raw_collate,
                        generator=torch.Generator().manual_seed(seed))
    return (loader if decoder is None else GpuDecodedLoader(loader, decoder)), sampler
