"""Optimiser and learning-rate schedule from the config (docs/method.md defaults: SGD 0.1/0.9/5e-4, x0.1 at 5/10/20).

The schedule is a per-iteration LambdaLR so that warm-up is smooth and resuming restores it exactly;
without warm-up the multistep factor changes only at epoch boundaries, as the reference's.
"""
import bisect
import math

import torch


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    o = cfg.TRAIN.OPTIMIZER
    params = [p for p in params if p.requires_grad]
    if o.NAME == "sgd":
        return torch.optim.SGD(params, lr=o.BASE_LR, momentum=o.MOMENTUM, weight_decay=o.WEIGHT_DECAY)
    return torch.optim.AdamW(params, lr=o.BASE_LR, weight_decay=o.WEIGHT_DECAY)


def milestones(cfg) -> list:
    """The multistep schedule's epochs: TRAIN.LR_SCHEDULER.MILESTONES, fractions of TRAIN.EPOCHS (all
    items in (0, 1)) turned into epochs round(f * EPOCHS), at least 1."""
    m = list(cfg.TRAIN.LR_SCHEDULER.MILESTONES)
    if m and all(isinstance(v, float) and 0.0 < v < 1.0 for v in m):
        return [max(1, int(round(v * cfg.TRAIN.EPOCHS))) for v in m]
    return m


def lr_factor(cfg, iteration: int, iters_per_epoch: int) -> float:
    """Multiplier of BASE_LR at a global iteration (0-based)."""
    s = cfg.TRAIN.LR_SCHEDULER
    epoch_float = iteration / max(1, iters_per_epoch)
    warm = 1.0
    if s.WARMUP_EPOCHS > 0 and epoch_float < s.WARMUP_EPOCHS:
        warm = (iteration + 1) / (s.WARMUP_EPOCHS * iters_per_epoch)
    if s.NAME == "multistep":
        return warm * s.DECAY_RATE ** bisect.bisect_right(milestones(cfg), int(epoch_float))
    total = cfg.TRAIN.EPOCHS * iters_per_epoch
    progress = min(1.0, iteration / max(1, total))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(cfg, optimizer, iters_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it, iters_per_epoch))
