"""A shared pretrained start: train a classification model on a pretraining list and publish its
backbone as a weight file that `*.PRETRAINED_PATH` loads exactly like ImageNet weights (the synthetic
benchmark's counterpart of ImageNet pretraining).

The start is keyed by its own training settings and the pretraining list's digest (its record, also
the run's folder name OUTPUT/<arch>/pretrain_<key>/). The published file gets a JSON sidecar
(FILE.json) with the key and the settings; a file published under another key is never written over.
"""
import os
import time

from bct.config.loader import cfg_to_yaml
from bct.pipeline import records
from bct.pipeline.configs import derive
from bct.utils.errors import BadInputError, rerun_hint
from bct.utils.fileio import write_json_atomic
from bct.utils.logger import get_logger


def start_record(cfg) -> dict:
    return records.training_record(cfg)


def published_record(path: str):
    """The record beside a published weight file (None when absent or unreadable)."""
    return records.read_record(os.path.dirname(os.path.abspath(path)), os.path.basename(path) + ".json")


def keyed_path(path: str, key: str) -> str:
    """The start's own file beside ``path`` for a key other than the one ``path`` holds."""
    stem, ext = os.path.splitext(path)
    return f"{stem}-{key}{ext}"


def pretrained_start(cfg, out: str, keyed: bool = False) -> str:
    """Train (or reuse, or resume) the pretraining run of the frozen config ``cfg`` and publish its
    backbone at ``out`` (with ``keyed``: at keyed_path(out, key), the start's own file); returns the
    path published. A file that holds a start of another key is refused with one line.
    """
    from bct.pipeline.train import train_run

    if cfg.TRAIN.TYPE != "base":
        raise BadInputError(f"a pretraining run needs TRAIN.TYPE base, not {cfg.TRAIN.TYPE!r}")
    lst = cfg.TRAIN.LIST_FILE
    if not os.path.isfile(lst):
        raise BadInputError(f"pretraining list {lst} (TRAIN.LIST_FILE) does not exist; make the synthetic benchmark "
                            "first (python -m bct.tools.make_synthetic --out data/synthetic)")
    record = start_record(cfg)
    records.refuse_missing(record)
    key = record["key"][:12]
    out = keyed_path(out, key) if keyed else out
    if os.path.isdir(out):
        raise BadInputError(f"--out {out} is a folder; give the weight file to publish")
    if os.path.isfile(out):
        held = published_record(out)
        if held is not None and held.get("key") == record["key"]:
            get_logger().info(f"[pretrain] reusing {out} (key {key})")
            return out
        records.check_same(out, "a pretrained start", held, record,
                           rerun_hint(f"publish this one elsewhere with --out, or delete {out} (every config naming it "
                                      "would then load the new start)"))
    run = train_run(derive(cfg, {"TAG": f"pretrain_{key}"}), resume=True, reuse=True, name="pretrain")
    start = time.time()
    _publish_backbone(run.path, out, "pretraining checkpoint")
    write_json_atomic(out + ".json", dict(record, source=run.path, config=cfg_to_yaml(cfg),
                                          seconds=round(run.seconds + time.time() - start, 1)), indent=1)
    get_logger().info(f"[pretrain] published the backbone of {run.path} at {out} (key {key})")
    return out


def _publish_backbone(checkpoint: str, out: str, what: str) -> None:
    """Write the backbone weights of a trained checkpoint at ``out`` (whole or not at all)."""
    import torch

    from bct.models.loading import load_checkpoint
    from bct.utils.fileio import atomic_path

    state = load_checkpoint(checkpoint, what)["model"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise BadInputError(f"{checkpoint} holds no backbone weights ({what})")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(backbone, tmp)


def model_start(model: str, out: str) -> str:
    """Publish the backbone of the trained model ``model`` at ``out`` as a start that
    ``*.PRETRAINED_PATH`` loads (scripts/own.sh's new model starting from its old model). Keyed by the
    model's digest: the same model again reuses ``out``; ``out`` holding another's start is refused."""
    record = records.make_record({"start": "backbone of a trained model"}, {"MODEL": model})
    records.refuse_missing(record)
    if os.path.isfile(out):
        held = published_record(out)
        if held is not None and held.get("key") == record["key"]:
            get_logger().info(f"[start] reusing {out} (the backbone of {model})")
            return out
        records.check_same(out, "a start", held, record, rerun_hint(f"give another --out, or delete {out}"))
    _publish_backbone(model, out, "trained model")
    write_json_atomic(out + ".json", dict(record, source=model), indent=1)
    get_logger().info(f"[start] published the backbone of {model} at {out}")
    return out


def old_model_start_path(cfg) -> tuple:
    """(old checkpoint, start file) for a new model that starts from its old model's backbone
    (scripts/train_new.sh with PRETRAINED=False, START=old): the old model is OLD_MODEL.MODEL_PATH; the
    start is OUTPUT/<arch>/start/old_backbone_<digest>.pth, named by the old model's digest so that
    another old model never meets this one's file."""
    from bct.utils.fileio import file_digest

    old = cfg.OLD_MODEL.MODEL_PATH
    advice = "train it first (bash scripts/train_old.sh) or start the new model from random weights with START=random"
    if not old:
        raise BadInputError(f"PRETRAINED=False START=old starts the new model from the old model, but the config "
                            f"names none (OLD_MODEL.MODEL_PATH is empty); {advice}")
    if not os.path.isfile(old):
        raise BadInputError(f"PRETRAINED=False START=old starts the new model from the old model "
                            f"OLD_MODEL.MODEL_PATH {old}, which does not exist; {advice}")
    if cfg.OLD_MODEL.ARCH != cfg.NEW_MODEL.ARCH:
        raise BadInputError(f"PRETRAINED=False START=old needs one backbone for both models (OLD_MODEL.ARCH "
                            f"{cfg.OLD_MODEL.ARCH}, NEW_MODEL.ARCH {cfg.NEW_MODEL.ARCH}); use START=random")
    name = f"old_backbone_{file_digest(old)[:12]}.pth"
    return old, os.path.join(cfg.OUTPUT, cfg.NEW_MODEL.ARCH, "start", name)
