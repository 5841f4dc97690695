"""What the training loop (bct/engine/trainer.py) calls around its steps and epochs, apart from the
optimisation itself: the log lines and TensorBoard scalars, validation and checkpoints, one hook each,
called in order on every rank (only rank 0 writes files). The loop owns the data, the steps and the
epoch's averages; a hook reads the trainer it is registered with and may add to the epoch's log.
"""
import os

from bct.utils.comm import is_main_process

__all__ = ["HookBase", "Metrics", "Validation", "Checkpointer", "default_hooks"]


class HookBase:
    """The points of the loop a hook can act at; ``trainer`` is set when the hook is registered."""

    trainer = None

    def after_step(self, epoch: int, it: int, log: dict, rate: float) -> None:
        """After optimiser step ``it`` (0-based) of ``epoch`` (0-based); ``rate``: images per second so far."""

    def after_epoch(self, done: int, epoch_log: dict) -> None:
        """After ``done`` epochs; ``epoch_log`` is the epoch's entry of the history (a hook may add to it)."""

    def after_train(self) -> None:
        """After the last epoch (not after an error or a stop)."""


class Metrics(HookBase):
    """A log line every PRINT_FREQ steps and at the end of each epoch, the same values as TensorBoard
    scalars (train/*, epoch/*) under <run>/tb when tensorboard is installed (rank 0)."""

    def __init__(self):
        self.tb = None

    def _tb(self):
        if self.tb is None and is_main_process():
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(self.trainer.out_dir, "tb"))
            except ImportError:
                self.tb = False
        return self.tb or None

    def after_step(self, epoch, it, log, rate):
        t = self.trainer
        if not ((it + 1) % t.cfg.PRINT_FREQ == 0 or it + 1 == t.iters_per_epoch):
            return
        lr = t.optimizer.param_groups[0]["lr"]
        terms = " ".join(f"{k} {v:.4f}" for k, v in log.items())
        t.logger.info(f"epoch {epoch + 1} iter {it + 1}/{t.iters_per_epoch} lr {lr:.5f} {terms} {rate:.1f} img/s")
        tb = self._tb()
        if tb:
            step = epoch * t.iters_per_epoch + it
            for k, v in log.items():
                tb.add_scalar(f"train/{k}", v, step)
            tb.add_scalar("train/lr", lr, step)

    def after_epoch(self, done, epoch_log):
        self.trainer.logger.info(
            f"epoch {done} done in {epoch_log['epoch_time_s']:.1f}s ({epoch_log['images_per_s']:.1f} img/s): " +
            " ".join(f"{k} {v:.4f}" for k, v in epoch_log.items() if k not in ("epoch_time_s", "images_per_s")))
        tb = self._tb()
        if tb:
            for k, v in epoch_log.items():
                tb.add_scalar(f"epoch/{k}", v, done)
            tb.flush()

    def after_train(self):
        if self.tb:
            self.tb.close()


class Validation(HookBase):
    """Medium mAP of the trained model on VAL (and its cross-test against the old model) every
    TRAIN.VAL_FREQ epochs and after the last one, on every rank; added to the epoch's log."""

    def after_epoch(self, done, epoch_log):
        cfg = self.trainer.cfg
        if cfg.TRAIN.VAL_FREQ > 0 and cfg.VAL.DATASET and (done % cfg.TRAIN.VAL_FREQ == 0 or done == cfg.TRAIN.EPOCHS):
            epoch_log.update(self.validate())

    def validate(self) -> dict:
        from bct.evaluation import sets

        t = self.trainer
        t.model.eval()
        bset = sets.build_set(t.cfg.VAL.DATASET, t.cfg.VAL.ROOT, t.cfg, family="revisited")
        res = sets.evaluate_models(t.cfg, bset, t.model, t.old_model, t.device, with_old_self=False,
                                   backfill=False, digests=None, use_cache=False)
        t.model.train()
        out = {"val_self_mAP_M": res["self"]["medium"]["map"] * 100}
        if "cross" in res:
            out["val_cross_mAP_M"] = res["cross"]["medium"]["map"] * 100
        return out


class Checkpointer(HookBase):
    """A checkpoint every TRAIN.SAVE_FREQ epochs and after the last one (then model_final.pth too);
    a run resumed with every epoch done only gets its missing model_final.pth."""

    def after_epoch(self, done, epoch_log):
        t = self.trainer
        if done % t.cfg.TRAIN.SAVE_FREQ == 0 or done == t.cfg.TRAIN.EPOCHS:
            t.save(done, final=done == t.cfg.TRAIN.EPOCHS)

    def after_train(self):
        t = self.trainer
        epochs = t.cfg.TRAIN.EPOCHS
        if t.start_epoch >= epochs:
            t.logger.info(f"nothing to do: {t.out_dir} already holds {epochs} epochs")
            if is_main_process() and not os.path.exists(os.path.join(t.out_dir, "model_final.pth")):
                t.save(epochs, final=True)


def default_hooks() -> list:
    """Validation first (its numbers join the epoch's log line), then the log, then the checkpoint."""
    return [Validation(), Metrics(), Checkpointer()]
