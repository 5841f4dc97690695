"""hot_refresh across two gloo processes on CPU equals one process on the concatenated batch.

Each rank holds a slice of one fixed batch (5 and 3 samples, so the anchor offsets differ from
rank * batch size); the per-anchor losses and the gradients of the local embeddings must match
those of a single process (docs/method.md: negatives are gathered, gathered copies carry no grad).
"""
import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bct.losses import HotRefreshLoss
from helpers import free_port as _free_port

SIZES = (5, 3)
TEMPERATURE, TOPK = 0.1, 3
TIMEOUT_S = 120


def _batch():
    g = torch.Generator().manual_seed(7)
    feat_new = torch.randn(sum(SIZES), 6, generator=g)
    feat_old = torch.randn(sum(SIZES), 6, generator=g)
    # Labels repeat within and across the two slices.
    labels = torch.tensor([0, 1, 2, 1, 3, 0, 4, 2])
    return feat_new, feat_old, labels


def _per_anchor(feat_new, feat_old, labels):
    feat_new = feat_new.clone().requires_grad_(True)
    losses = HotRefreshLoss(TEMPERATURE, TOPK).per_anchor(feat_new, feat_old, labels)
    losses.sum().backward()
    return losses.detach(), feat_new.grad


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=len(SIZES), timeout=timedelta(seconds=60))
    try:
        start = sum(SIZES[:rank])
        part = slice(start, start + SIZES[rank])
        feat_new, feat_old, labels = _batch()
        losses, grad = _per_anchor(feat_new[part], feat_old[part], labels[part])
        torch.save({"losses": losses, "grad": grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_hot_refresh_two_processes_match_one(tmp_path):
    # fork: the workers inherit the imported modules instead of paying torch's import again.
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=len(SIZES), join=False,
                             start_method="fork")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "the two-process run did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()

    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(len(SIZES))]
    losses = torch.cat([r["losses"] for r in results])
    grads = torch.cat([r["grad"] for r in results])
    ref_losses, ref_grads = _per_anchor(*_batch())
    assert (ref_losses > 0).all()
    assert torch.allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grads, ref_grads, rtol=1e-5, atol=1e-6)
