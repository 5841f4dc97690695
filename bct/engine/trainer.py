"""The one training loop shared by every trainer (docs/method.md; checkpoints and resuming in docs/configuration.md).

Epochs and iterations, DistributedSampler epochs (the loader: bct/engine/loaders.py), the
per-iteration LR schedule, AMP on CUDA, channels_last, SyncBN, gradient-norm logging, atomic
checkpoints with exact resume (RNG states included; the file format and the resume checks are in
bct/engine/checkpoint.py), and a clear stop on a non-finite loss or on non-finite weights about to
be saved. Log lines, TensorBoard scalars, periodic validation and when to save hang on the loop as
hooks (bct/engine/hooks.py). The old-model trainer and the compatible trainer differ only in the task
module that turns a batch into a loss dict (bct/engine/tasks.py).
"""
import os
import random
import signal
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from bct.config.loader import cfg_to_yaml
from bct.engine.checkpoint import (
    CONFIG_NAME,
    LAST_POINTER,
    check_resume_config,
    last_checkpoint,
    non_finite_entry,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bct.engine.hooks import default_hooks
from bct.engine.loaders import build_train_loader
from bct.engine.old_cache import OldFeatureCache
from bct.engine.optim import build_optimizer, build_scheduler
from bct.engine.tasks import BaseTask, CompatTask
from bct.losses.registry import Progress, build_terms, needs_angles, needs_stats
from bct.losses.stats import load_old_stats
from bct.models.build import ROLE_KEYS, build_model, trained_role
from bct.models.loading import load_checkpoint, load_model_weights, load_trained_model
from bct.utils.comm import get_rank, get_world_size, is_dist, is_main_process
from bct.utils.errors import BadInputError, TrainingError
from bct.utils.fileio import file_digest, write_text_atomic
from bct.utils.logger import get_logger

__all__ = ["Trainer", "output_dir"]


def output_dir(cfg) -> str:
    """OUTPUT/<arch of the trained model>/<TAG>, as in the reference."""
    return os.path.join(cfg.OUTPUT, cfg[ROLE_KEYS[trained_role(cfg)]].ARCH, cfg.TAG)


# Offset of the new model's initialisation seed from the old model's.
_NEW_INIT_STREAM = 7919


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


class Trainer:
    """Builds everything from the config and runs epochs; rank 0 alone writes files."""

    def __init__(self, cfg, device: torch.device, resume: bool = False):
        self.cfg, self.device = cfg, device
        self.logger = get_logger()
        self.out_dir = output_dir(cfg)
        self.rank, self.world = get_rank(), get_world_size()
        seed_everything(cfg.SEED + self.rank, cfg.DETERMINISTIC)
        self.amp = bool(cfg.USE_AMP and device.type == "cuda")
        self.loader, self.sampler = build_train_loader(cfg, cfg.SEED + self.rank, device)
        self.iters_per_epoch = len(self.loader)
        if cfg.TRAIN.MAX_ITERS > 0:
            self.iters_per_epoch = min(self.iters_per_epoch, cfg.TRAIN.MAX_ITERS)
        self.total_iters = self.iters_per_epoch * cfg.TRAIN.EPOCHS

        # The old and the new model are separate runs: with equal SEEDs they would otherwise draw the
        # same random embedding head and start compatible by accident (measured on the synthetic
        # benchmark: the oracle's cross-test was 65% of the old self-test). Every new model (oracle
        # and compatible ones) draws the same head as the other new models, for a fair comparison.
        torch.manual_seed(cfg.SEED + self.rank + (_NEW_INIT_STREAM if trained_role(cfg) == "new" else 0))
        self.model = build_model(cfg, trained_role(cfg))
        self.old_model = None
        self.task = self.build_task()
        self.old_cache = self.build_old_cache()
        if cfg.MODEL.SYNC_BN and self.world > 1 and device.type != "cuda":
            self.logger.info("MODEL.SYNC_BN: SyncBatchNorm needs CUDA; CPU processes keep per-process BatchNorm")
        elif cfg.MODEL.SYNC_BN and self.world > 1:
            self.task = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.task)
            self.model = self.task.model
        self.task.to(device)
        if cfg.CHANNELS_LAST:
            self.task.to(memory_format=torch.channels_last)
            if self.old_model is not None:
                self.old_model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, self.task.parameters())
        self.scheduler = build_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.start_epoch, self.start_iter = 0, 0
        if resume:
            self.resume()
        self.ddp = self.task
        if self.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            # Every trainable parameter is in every batch's graph (the elastic boundary weights are
            # indexed by label, which gives a dense gradient with zeros), so DDP needs no search for
            # unused ones.
            self.ddp = DDP(self.task, device_ids=ids)
        self._stop_signal = None
        # The last training batch, which a checkpoint's weights must embed to finite values.
        self._probe = None
        self.hooks = []
        self.register_hooks(default_hooks())

    def register_hooks(self, hooks) -> None:
        """Add hooks (bct.engine.hooks), called in the order given, after those already registered."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    # -- what differs between trainers -------------------------------------------------------
    def build_task(self):
        cfg = self.cfg
        if cfg.TRAIN.TYPE == "base":
            return BaseTask(self.model, cfg.LOSS.LABEL_SMOOTHING)
        old_model, meta = load_trained_model(cfg, "old", device=self.device)
        if meta["emb_dim"] != cfg.MODEL.EMB_DIM:
            raise BadInputError(
                f"old model {cfg.OLD_MODEL.MODEL_PATH} embeds in {meta['emb_dim']} dimensions, the new model "
                f"in MODEL.EMB_DIM={cfg.MODEL.EMB_DIM}; old and new embeddings must have the same size"
            )
        for p in old_model.parameters():
            p.requires_grad_(False)
        self.old_model = old_model
        stats = None
        if needs_stats(cfg):
            stats = load_old_stats(cfg.COMP_LOSS.RADIUS_FILE, cfg.COMP_LOSS.ANGLE_FILE if needs_angles(cfg) else None,
                                   num_classes=cfg.OLD_MODEL.NUM_CLASSES, emb_dim=cfg.MODEL.EMB_DIM,
                                   device=self.device)
        terms = build_terms(cfg, old_classifier=old_model.classifier, stats=stats)
        return CompatTask(self.model, old_model, terms, cfg.LOSS.LABEL_SMOOTHING)

    def build_old_cache(self):
        """The store of old embeddings (bct.engine.old_cache) when the task runs the old model."""
        cfg = self.cfg
        if not (self.task.needs_old_features and cfg.TRAIN.CACHE_OLD_FEATURES):
            return None
        if cfg.TRAIN.AUGMENT:
            self.logger.info("TRAIN.CACHE_OLD_FEATURES: off, because TRAIN.AUGMENT changes the images every epoch; "
                             "the old model runs on every batch")
            return None
        n = len(self.sampler.dataset)
        size = OldFeatureCache.nbytes(n, cfg.MODEL.EMB_DIM)
        self.logger.info(f"TRAIN.CACHE_OLD_FEATURES: keeping the old embeddings of the {n} training images "
                         f"({size / 2 ** 20:.1f} MiB of host memory); the old model runs until each is kept")
        return OldFeatureCache(n, cfg.MODEL.EMB_DIM, self.device)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_dict(self, epoch: int) -> dict:
        from bct.data.transforms import IMAGENET_MEAN, IMAGENET_STD

        cfg = self.cfg
        meta = dict(self.model.meta)
        old_path = cfg.OLD_MODEL.MODEL_PATH if self.old_model is not None else ""
        meta["old_model_path"] = old_path
        meta["old_model_digest"] = file_digest(old_path) if old_path else ""
        meta["train_type"] = cfg.TRAIN.TYPE
        meta["comp_loss"] = cfg.COMP_LOSS.TYPE if cfg.TRAIN.TYPE != "base" else "none"
        meta["method"] = cfg.METHOD.NAME
        # What the model's input must be: squashed to input_size pixels, normalised per channel.
        meta["input_size"] = cfg.TRAIN.INPUT_SIZE
        meta["mean"], meta["std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
        return {
            "model": self.model.state_dict(),
            "extra": self.task.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "config": cfg_to_yaml(cfg),
            "meta": meta,
            "rng": rng_state(),
            "world_size": self.world,
        }

    def _check_finite_weights(self, where: str) -> None:
        """Stop, saving nothing, when a parameter or buffer about to be saved is not finite, or when the
        weights (finite but huge after a diverging update) turn the last training batch into
        non-finite embeddings. Every rank takes part, so all stop together."""
        problem = non_finite_entry(self.task.state_dict())
        if problem:
            problem = f"non-finite weights {where} ({problem})"
        elif self._probe is not None:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                emb = self.model(self._probe)
            self.model.train(was_training)
            if not bool(torch.isfinite(emb).all()):
                problem = f"the weights {where} turn the last training batch into non-finite embeddings"
        flag = torch.tensor([0.0 if problem else 1.0], device=self.device)
        if is_dist():
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() >= 1:
            return
        last = last_checkpoint(self.out_dir)
        resume = (f"the last checkpoint with finite weights is {last}: go on from it at a lower rate with --resume "
                  f"TRAIN.RESUME_WITH_NEW_LR True TRAIN.OPTIMIZER.BASE_LR <lower>" if last else
                  "no checkpoint of this run has been saved: start again with a lower TRAIN.OPTIMIZER.BASE_LR")
        raise TrainingError(f"{problem or f'non-finite weights {where} on another rank'}; nothing saved "
                            f"(no model_final.pth); {resume}, or enable TRAIN.CLIP_GRAD")

    def save(self, epoch: int, final: bool = False, iteration: int = 0) -> None:
        """Rank 0 writes ckpt_epoch_<epochs done>.pth (or ckpt_interrupted.pth mid-epoch) and points
        last_checkpoint at it; every file is written atomically, so the pointer always names a whole
        file, and only finite weights are written."""
        where = f"after epoch {epoch}" if iteration == 0 else f"at epoch {epoch + 1} iteration {iteration}"
        self._check_finite_weights(where)
        if not is_main_process():
            return
        name = f"ckpt_epoch_{epoch}.pth" if iteration == 0 else "ckpt_interrupted.pth"
        ckpt = self.checkpoint_dict(epoch)
        ckpt["iteration"] = iteration
        save_checkpoint(os.path.join(self.out_dir, name), ckpt)
        # The config goes with the checkpoints: a run that fails before its first save leaves the
        # config.yaml of the run whose checkpoints are in the folder.
        write_text_atomic(os.path.join(self.out_dir, CONFIG_NAME), ckpt["config"])
        write_text_atomic(os.path.join(self.out_dir, LAST_POINTER), name + "\n")
        if final:
            save_checkpoint(os.path.join(self.out_dir, "model_final.pth"), ckpt)
        keep = self.cfg.TRAIN.KEEP_LAST
        if keep > 0 and iteration == 0:
            for e in range(0, epoch - keep + 1):
                stale = os.path.join(self.out_dir, f"ckpt_epoch_{e}.pth")
                if os.path.exists(stale):
                    os.remove(stale)
        self.logger.info(f"saved {os.path.join(self.out_dir, name)}")

    def resume(self) -> None:
        path = last_checkpoint(self.out_dir)
        if not path:
            self.logger.info(f"--resume: no checkpoint in {self.out_dir} yet, starting from scratch")
            return
        if os.path.getsize(path) == 0:
            raise BadInputError(f"--resume: the last checkpoint {path} is empty (0 bytes); {self._earlier_advice()}")
        try:
            ckpt = load_checkpoint(path, "--resume")
        except BadInputError as e:
            raise BadInputError(f"{e}; {self._earlier_advice()}") from None
        check_resume_config(ckpt, path, self.cfg, log=self.logger.info)
        bad = non_finite_entry(ckpt["model"], ckpt.get("extra", {}))
        if bad:
            raise BadInputError(f"--resume: {path} holds non-finite weights ({bad}); {self._earlier_advice()}")
        load_model_weights(self.model, ckpt["model"], path)
        if isinstance(self.task, CompatTask):
            state = dict(ckpt.get("extra", {}), **{f"model.{k}": v for k, v in ckpt["model"].items()})
            missing, unexpected = self.task.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise BadInputError(f"--resume: {path} does not match this task: missing {missing[:3]}, "
                                    f"unexpected {unexpected[:3]}")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as e:
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise BadInputError(f"--resume: the optimiser or scheduler state in {path} does not fit this run "
                                f"({type(e).__name__}: {reason}); resume with the config the checkpoint was "
                                f"written with, or start a fresh run under another TAG") from None
        if self.cfg.TRAIN.RESUME_WITH_NEW_LR:
            self._apply_new_base_lr()
        self.start_epoch = int(ckpt["epoch"])
        self.start_iter = int(ckpt.get("iteration", 0))
        if ckpt.get("world_size", 1) == self.world:
            set_rng_state(ckpt["rng"])
        else:
            self.logger.warning(f"{path} was written by {ckpt.get('world_size')} processes, now {self.world}: "
                                f"random streams restart from the seed")
        self.logger.info(f"resumed from {path} at epoch {self.start_epoch + 1}, iteration {self.start_iter}")

    def _earlier_advice(self) -> str:
        return (f"point {LAST_POINTER} in {self.out_dir} at an earlier ckpt_epoch_<N>.pth (write its name in the "
                f"file), or start a fresh run")

    def _apply_new_base_lr(self) -> None:
        """TRAIN.RESUME_WITH_NEW_LR: the restored optimiser and schedule go on from the config's
        BASE_LR, with the schedule's factor of the step reached (momentum buffers are kept)."""
        base = self.cfg.TRAIN.OPTIMIZER.BASE_LR
        sched = self.scheduler
        sched.base_lrs = [base for _ in self.optimizer.param_groups]
        factor = sched.lr_lambdas[0](sched.last_epoch)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = base
            group["lr"] = base * factor
        sched._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.logger.info(f"TRAIN.RESUME_WITH_NEW_LR: going on with TRAIN.OPTIMIZER.BASE_LR {base:g} "
                         f"(learning rate now {base * factor:g})")

    # -- the loop ------------------------------------------------------------------------------
    def progress(self, epoch: int, it: int) -> Progress:
        """Where training stands, for terms with a schedule (AdvBCT's adversarial term)."""
        return Progress(epoch, self.cfg.TRAIN.EPOCHS, it, self.iters_per_epoch)

    def _install_signal_handlers(self) -> dict:
        """Catch SIGTERM / SIGINT for a clean stop; returns the handlers they replaced."""
        def handler(signum, frame):
            if self._stop_signal is not None:  # a second signal: stop now, without the checkpoint
                raise KeyboardInterrupt
            self._stop_signal = signum
        previous = {}
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread
                pass
        return previous

    def train(self) -> dict:
        # The handlers last as long as the training: a caller that goes on in the same process (a
        # test, a notebook, a tool that forks workers) gets its own handlers back.
        previous = self._install_signal_handlers()
        try:
            return self._train()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _train(self) -> dict:
        cfg = self.cfg
        params = [p for p in self.task.parameters() if p.requires_grad]
        history = {}
        self.logger.info(
            f"training {trained_role(cfg)} model ({cfg.TRAIN.TYPE}, comp loss {cfg.COMP_LOSS.TYPE if cfg.TRAIN.TYPE != 'base' else 'none'}) "
            f"for {cfg.TRAIN.EPOCHS} epochs x {self.iters_per_epoch} iterations on {self.world} process(es), device {self.device}, amp {self.amp}"
        )
        for epoch in range(self.start_epoch, cfg.TRAIN.EPOCHS):
            self.task.train()
            self.sampler.set_epoch(epoch)
            # Worker seeds depend on the epoch only, so a resumed epoch sees the same augmentations.
            self.loader.generator.manual_seed(cfg.SEED + self.rank + 1000003 * epoch)
            first = self.start_iter if epoch == self.start_epoch else 0
            self.sampler.skip = first * cfg.TRAIN.BATCH_SIZE
            t0, seen, skipped, steps = time.time(), 0, 0, 0
            sums = {}
            bar = _progress(self.iters_per_epoch, f"epoch {epoch + 1}/{cfg.TRAIN.EPOCHS}")
            it, stopped = first - 1, False
            for it, (images, labels, idx, n_bad) in enumerate(self.loader, start=first):
                if it >= self.iters_per_epoch:
                    break
                skipped += n_bad
                if not self._batch_usable(images):
                    # BatchNorm needs two samples; every rank skips together so no collective waits.
                    skipped += images.shape[0] if images.numel() else 0
                    continue
                out, stopped = self.step(images, labels, epoch, it, params, idx)
                seen += images.shape[0]
                steps += 1
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{out['loss']:.3f}")
                rate = seen * self.world / max(1e-9, time.time() - t0)
                for hook in self.hooks:
                    hook.after_step(epoch, it, out, rate)
                if stopped or it + 1 >= self.iters_per_epoch:
                    break
            if bar is not None:
                bar.close()
            if stopped:
                self.save(epoch, iteration=it + 1)
                self.logger.warning(f"stopped by a signal at epoch {epoch + 1} iteration {it + 1}; "
                                    f"checkpoint saved, continue with --resume")
                raise KeyboardInterrupt
            if steps == 0 and first < self.iters_per_epoch:
                raise BadInputError(
                    f"{cfg.TRAIN.LIST_FILE}: epoch {epoch + 1} took no optimiser step: no batch held two readable "
                    f"images ({skipped} skipped under TRAIN.SKIP_BAD_IMAGES); nothing was saved: fix or remove "
                    f"the unreadable images")
            # Averages over the optimiser steps taken (skipped batches and an early stop excluded).
            epoch_log = {k: v / max(1, steps) for k, v in sums.items()}
            epoch_log["images_per_s"] = seen * self.world / max(1e-9, time.time() - t0)
            epoch_log["epoch_time_s"] = time.time() - t0
            if skipped:
                self.logger.warning(f"epoch {epoch + 1}: skipped {skipped} unreadable images (TRAIN.SKIP_BAD_IMAGES)")
            epoch_log["skipped_images"] = skipped
            history[epoch + 1] = epoch_log
            for hook in self.hooks:  # validation, the log line, the checkpoint (bct.engine.hooks)
                hook.after_epoch(epoch + 1, epoch_log)
        for hook in self.hooks:
            hook.after_train()
        return history

    def step(self, images, labels, epoch: int, it: int, params, idx=None):
        """One optimiser step. Returns (log: the step's losses and logged values as floats, stop: whether
        a stop signal reached any rank, so the run saves and ends after this step)."""
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if cfg.CHANNELS_LAST:
            images = images.contiguous(memory_format=torch.channels_last)
        self._probe = images
        cache = self.old_cache if idx is not None else None
        feat_old = cache.lookup(idx) if cache is not None else None
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out, feat_old = self.ddp(images, labels, feat_old, self.progress(epoch, it))
        if cache is not None:
            cache.store(idx, feat_old)
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        stop = self._sync_flags(loss, out, epoch, it)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.TRAIN.CLIP_GRAD if cfg.TRAIN.CLIP_GRAD > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        log = {k: _scalar(v) for k, v in out.items()}
        log["loss"] = float(loss.detach())
        log["grad_norm"] = float(grad_norm)
        return log, stop

    def _batch_usable(self, images) -> bool:
        """At least two readable images on every rank (only SKIP_BAD_IMAGES can leave fewer)."""
        if not self.cfg.TRAIN.SKIP_BAD_IMAGES:
            return True
        ok = torch.tensor([1.0 if images.numel() and images.shape[0] >= 2 else 0.0], device=self.device)
        if is_dist():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def _sync_flags(self, loss, out, epoch, it) -> bool:
        """Agree on (loss finite, stop signal) across ranks; returns whether to stop after this step."""
        flags = torch.tensor([float(torch.isfinite(loss.detach()).item()),
                              0.0 if self._stop_signal is None else 1.0], device=loss.device)
        if is_dist():
            # Every rank stops together: one rank's NaN or signal must not leave the others waiting.
            flags[1] = -flags[1]
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
            flags[1] = -flags[1]
        if flags[0].item() < 1:
            terms = ", ".join(f"{k}={_scalar(v):.4g}" for k, v in out.items())
            raise TrainingError(
                f"non-finite loss at epoch {epoch + 1} iteration {it + 1} ({terms or 'on another rank'}); "
                f"{self._nan_advice()}"
            )
        return bool(flags[1].item() > 0)

    def _nan_advice(self) -> str:
        """What to do after a non-finite loss: checkpoints are only ever saved with finite weights, so
        the newest one is a sound start."""
        last = last_checkpoint(self.out_dir)
        if not last:
            return "nothing was saved yet: start again with a lower TRAIN.OPTIMIZER.BASE_LR, enable TRAIN.CLIP_GRAD, or check the data"
        return (f"lower the rate, enable TRAIN.CLIP_GRAD or check the data; the last checkpoint ({last}, finite "
                f"weights) goes on at a lower rate with --resume TRAIN.RESUME_WITH_NEW_LR True TRAIN.OPTIMIZER.BASE_LR <lower>")


def _scalar(v) -> float:
    """A logged value as a float, without autograd warnings for tensors that need grad."""
    return float(v.detach()) if torch.is_tensor(v) else float(v)


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    if not is_main_process():
        return None
    # disable=None: silent when the output is not a terminal (logs, CI).
    return tqdm(total=total, desc=desc, leave=False, disable=None, dynamic_ncols=True)
