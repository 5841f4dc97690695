"""Process-group set-up for torchrun (env:// rendezvous, multi-node included) or a single process.

With RANK/WORLD_SIZE in the environment (torchrun), the process joins the group: NCCL on CUDA, gloo
on CPU. Without them the same code runs as one process on whatever device exists.
"""
import datetime
import os

import torch
import torch.distributed as dist

from bct.utils.comm import get_rank, get_world_size, is_dist


def resolve_device(name: str = "auto") -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from bct.utils.errors import BadInputError
        raise BadInputError("DEVICE cuda was asked for but no CUDA device is visible; use DEVICE auto or cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device_name: str = "auto", backend: str = "auto", timeout_s: int = 1800) -> torch.device:
    """Join the torchrun process group if there is one; return this process's device."""
    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_dist():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=int(os.environ.get("BCT_DIST_TIMEOUT", timeout_s)))
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    return device


def cleanup_distributed() -> None:
    if is_dist():
        dist.destroy_process_group()


__all__ = ["init_distributed", "cleanup_distributed", "resolve_device", "get_rank", "get_world_size"]
