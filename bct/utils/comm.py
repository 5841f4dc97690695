"""Distributed communication helpers that work identically with one process (no torch.distributed).

Every function degrades to the single-process identity when no process group is initialised,
so losses and evaluation never branch on the world size themselves.
"""
import sys


def _dist():
    """torch.distributed when something has imported it, else None: a process group cannot exist
    before that, so tools that never touch torch (data generation, summaries) do not import it."""
    return sys.modules.get("torch.distributed")


def is_dist() -> bool:
    dist = _dist()
    return dist is not None and dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return _dist().get_rank() if is_dist() else 0


def get_world_size() -> int:
    return _dist().get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        _dist().barrier()


def all_gather_nograd(tensor: "torch.Tensor") -> "torch.Tensor":
    """Concatenate ``tensor`` (N, ...) from every rank along dim 0, in rank order, detached.

    Ranks may hold different N (the last batch of an epoch); shapes are exchanged first.
    """
    tensor = tensor.detach()
    if not is_dist():
        return tensor
    import torch
    dist = _dist()
    world = get_world_size()
    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    max_n = max(sizes)
    if tensor.shape[0] < max_n:
        pad = tensor.new_zeros((max_n - tensor.shape[0],) + tuple(tensor.shape[1:]))
        tensor = torch.cat([tensor, pad], 0)
    out = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat([o[:s] for o, s in zip(out, sizes)], 0)


def all_reduce_mean(tensor: "torch.Tensor") -> "torch.Tensor":
    """Mean of a tensor over ranks (returns a new tensor; identity on one process)."""
    if not is_dist():
        return tensor
    t = tensor.detach().clone()
    _dist().all_reduce(t)
    return t / get_world_size()
