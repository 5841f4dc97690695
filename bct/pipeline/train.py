"""Train one run (the old model, the oracle, a compatible new model or a pretraining run) from a config
object, with the reuse check of bct.pipeline.records and a log file that lasts as long as the run.

The run's folder is OUTPUT/<arch>/<TAG> (bct.engine.trainer.output_dir). A folder that holds a
finished model of the same key is reused; one of another key (or with no record) is refused; an
interrupted run of the same key resumes when asked. The folder is held by one process at a time
(bct.engine.lock).
"""
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from bct.pipeline import records
from bct.utils.comm import is_main_process
from bct.utils.errors import BadInputError, rerun_hint
from bct.utils.logger import get_logger, log_file

FINAL = "model_final.pth"


@dataclass
class RunResult:
    """path: the final checkpoint; seconds: training time (of the run that made it, when reused)."""

    path: str
    folder: str
    seconds: float
    reused: bool = False
    resumed: bool = False
    history: dict = field(default_factory=dict)


def apply_threads(cfg) -> None:
    if cfg.NUM_THREADS > 0:
        import torch
        torch.set_num_threads(cfg.NUM_THREADS)


def _hint(folder: str) -> str:
    return rerun_hint(f"train into another OUTPUT or TAG, or delete {folder} to train it again")


def train_run(cfg, resume: bool = False, reuse: bool = False, name: str = "", device=None) -> RunResult:
    """Train the run of the frozen config ``cfg`` into its folder; returns where the model is.

    A folder that already holds a run (finished or interrupted) of another key, or with no record, is
    refused. With ``reuse`` a finished run of the same key is reused (its seconds are those of its
    training). ``resume`` continues an interrupted run; without ``reuse`` it may also take a finished
    run on to more epochs, and the trainer then checks the settings that its saved state depends on
    (other settings may change; the input files may not). Otherwise a run of the same key starts over.
    ``name`` prefixes the log lines.
    """
    from bct.engine.distributed import init_distributed
    from bct.engine.lock import OutputLock
    from bct.engine.checkpoint import LAST_POINTER
    from bct.engine.trainer import Trainer, output_dir
    from bct.losses.registry import term_names

    term_names(cfg)  # an unknown term name is refused before the run's folder is touched
    folder = output_dir(cfg)
    final = os.path.join(folder, FINAL)
    if resume and cfg.TRAIN.RESUME_WITH_NEW_LR and not (os.path.isfile(final)
                                                        or os.path.isfile(os.path.join(folder, LAST_POINTER))):
        raise BadInputError(f"--new-lr (TRAIN.RESUME_WITH_NEW_LR): {folder} holds no run to continue from; train it "
                            f"first, or start a fresh run at that rate with TRAIN.OPTIMIZER.BASE_LR instead")
    label = f"[{name}] " if name else ""
    with ExitStack() as hold:
        lock = hold.enter_context(OutputLock(folder)) if is_main_process() else None
        record = records.training_record(cfg)
        stored = records.read_record(folder)
        finished = os.path.isfile(final)
        started = finished or os.path.isfile(os.path.join(folder, LAST_POINTER))
        refusal = None  # a folder this run may not write into, reported once the inputs are checked
        try:
            if record["key"] is None:
                pass  # a missing input file: the trainer names it before anything is written
            elif started and resume and not reuse:
                records.check_inputs(folder, stored, record, _hint(folder))
            elif started:
                what = "a trained model" if finished else "checkpoints of an interrupted run"
                records.check_same(folder, what, stored, record, _hint(folder))
                if finished and reuse:
                    seconds = float(stored.get("seconds", float("nan")))
                    get_logger().info(f"{label}reusing {final} (same settings and inputs, key {record['key']}; "
                                      f"trained in {seconds:.0f}s)")
                    return RunResult(final, folder, seconds, reused=True)
        except BadInputError as e:
            refusal = e
        apply_threads(cfg)
        device = device or init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
        resumed = bool(resume and started)
        if refusal is not None:
            # A bad input is the first thing to fix: the trainer checks them all (writing nothing).
            Trainer(cfg, device, resume=resumed)
            raise refusal
        logger = hold.enter_context(log_file(folder))
        if lock is not None and lock.stale_note():
            logger.info(lock.stale_note())
        logger.info(f"{label}training into {folder} (key {record['key']})" + (" (resuming)" if resumed else ""))
        start = time.time()
        trainer = Trainer(cfg, device, resume=resumed)  # a refused resume leaves the record as it was
        records.refuse_missing(record)
        wrote = is_main_process() and (stored is None or stored.get("key") != record["key"])
        if wrote:
            records.write_record(folder, record)
        try:
            history = trainer.train()
        except BaseException:
            # A run that failed before its first checkpoint leaves no record of a run that is not there.
            if wrote and not started and not os.path.isfile(os.path.join(folder, LAST_POINTER)):
                os.remove(os.path.join(folder, records.RUN_RECORD))
            raise
        seconds = time.time() - start
        if is_main_process():
            records.write_record(folder, record, seconds=round(seconds, 3))
        logger.info(f"{label}finished: {final} ({seconds:.0f}s)")
    return RunResult(final, folder, seconds, resumed=resumed, history=history)
