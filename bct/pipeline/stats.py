"""Old-class statistics (docs/method.md): run the old model over the old training list and write
radius.json (centre + sorted inlier distances), angle.json (centre + sorted inlier angles, for LCE),
feats.npy, labels.npy, config.yaml and the step's record (run.json) into EXTRACT.SAVE_DIR, together
and only when the statistics are complete: a run that fails leaves the folder's earlier files as they
were. The record keys them by the old model's and the list's digests and the settings that shape the
features; a folder holding statistics of another key is refused, never written over.
"""
import json
import os

import numpy as np

from bct.pipeline import records
from bct.utils import keys
from bct.utils.comm import is_main_process
from bct.utils.errors import BadInputError, rerun_hint
from bct.utils.fileio import AtomicGroup
from bct.utils.logger import get_logger, log_file

RADIUS_FILE, ANGLE_FILE = "radius.json", "angle.json"
# The settings that shape the old model's features of the list (besides the two input files).
_SHAPING = ("OLD_MODEL.ARCH", "OLD_MODEL.NUM_CLASSES", "MODEL.EMB_DIM", "TRAIN.ROOT", "TRAIN.INPUT_SIZE",
            "EVAL.SKIP_BAD_IMAGES", "EVAL.RESIZE", "USE_AMP", "DEVICE", "DATA.EVAL_FAST_DECODE",
            "DATA.EVAL_DECODE_DEVICE")


def stats_record(cfg) -> dict:
    settings = {k: keys.get(cfg, k) for k in _SHAPING if keys.has(cfg, k)}
    return records.make_record(settings, {"OLD_MODEL.MODEL_PATH": cfg.OLD_MODEL.MODEL_PATH,
                                          "TRAIN.LIST_FILE": cfg.TRAIN.LIST_FILE})


def class_stats(cfg, reuse: bool = False, device=None) -> dict:
    """Write the statistics of ``cfg`` into EXTRACT.SAVE_DIR (see the module docstring); with ``reuse``
    statistics of the same key already there are kept. Returns a summary (None on ranks > 0)."""
    out = cfg.EXTRACT.SAVE_DIR
    record = stats_record(cfg)
    refusal = None
    if record["key"] is not None and os.path.isfile(os.path.join(out, RADIUS_FILE)):
        try:
            records.check_same(out, "statistics", records.read_record(out), record,
                               rerun_hint("give another EXTRACT.SAVE_DIR or delete that folder"))
        except BadInputError as e:
            refusal = e  # reported once the inputs are checked: a bad input is the first thing to fix
        if refusal is None and reuse:
            get_logger().info(f"[statistics] reusing {os.path.join(out, RADIUS_FILE)} (key {record['key']})")
            return {"reused": True, "folder": out}
    if refusal is not None:
        return _extract(cfg, out, record, get_logger(), device, refusal)
    with log_file(out) as logger:
        return _extract(cfg, out, record, logger, device)


def _extract(cfg, out, record, logger, device, refusal=None):
    from bct.config.loader import cfg_to_yaml
    from bct.data.datasets import build_image_dataset, loader_workers
    from bct.data.lists import check_labels, read_image_list
    from bct.models.loading import load_trained_model
    from bct.engine.distributed import init_distributed
    from bct.evaluation.class_stats import class_statistics, statistics_json
    from bct.evaluation.extract import extract_features
    from bct.pipeline.train import apply_threads

    apply_threads(cfg)
    device = device or init_distributed(cfg.DEVICE, cfg.DIST_BACKEND)
    list_file = cfg.TRAIN.LIST_FILE
    paths, labels = read_image_list(list_file, cfg.TRAIN.ROOT)
    check_labels(labels, cfg.OLD_MODEL.NUM_CLASSES, list_file, key="OLD_MODEL.NUM_CLASSES")
    model, _ = load_trained_model(cfg, "old", device=device)
    dataset, decoder = build_image_dataset(cfg, "eval", cfg.TRAIN.ROOT, paths, labels, size=cfg.TRAIN.INPUT_SIZE,
                                           skip_bad=cfg.EVAL.SKIP_BAD_IMAGES, list_name=list_file, device=device)
    logger.info(f"embedding {len(dataset)} images of {list_file} with {cfg.OLD_MODEL.MODEL_PATH}")
    workers = loader_workers(cfg.EVAL.NUM_WORKERS, "EVAL.NUM_WORKERS")
    feats, ok = extract_features(model, dataset, cfg.EVAL.BATCH_SIZE, workers, device,
                                 cfg.USE_AMP, desc="old-class features", batch_decoder=decoder)
    if not is_main_process():
        return None
    if not ok.any():
        raise BadInputError(f"{list_file}: none of its {len(ok)} images could be read (EVAL.SKIP_BAD_IMAGES); "
                            f"nothing written, the files in {out} are unchanged")
    if (~ok).any():
        logger.warning(f"{int((~ok).sum())} unreadable images left out of the statistics (EVAL.SKIP_BAD_IMAGES)")
    feats, labels = np.asarray(feats)[ok], labels[ok]
    if not np.isfinite(feats).all():
        raise BadInputError(f"{cfg.OLD_MODEL.MODEL_PATH}: the old model gives non-finite features (NaN or inf); "
                            f"it diverged: use an earlier checkpoint. Nothing written")
    classes, centers, radii, angles = class_statistics(feats, labels)
    if refusal is not None:
        raise refusal
    with AtomicGroup() as group:
        for name, stats in ((RADIUS_FILE, statistics_json(classes, centers, radii)),
                            (ANGLE_FILE, statistics_json(classes, centers, angles))):
            with open(group.tmp(os.path.join(out, name)), "w") as f:
                json.dump(stats, f)
        for name, arr in (("feats.npy", feats.astype(np.float32)), ("labels.npy", labels)):
            with open(group.tmp(os.path.join(out, name)), "wb") as f:
                np.save(f, arr)
        with open(group.tmp(os.path.join(out, "config.yaml")), "w") as f:
            f.write(cfg_to_yaml(cfg))
        with open(group.tmp(os.path.join(out, records.RUN_RECORD)), "w") as f:
            json.dump(record, f, indent=1)
    degenerate = sum(len(r) <= 1 for r in radii)
    summary = {"classes": len(classes), "images": int(len(labels)), "degenerate_classes": degenerate,
               "mean_r_max": float(np.mean([r[-1] for r in radii])), "files": [RADIUS_FILE, ANGLE_FILE],
               "reused": False, "folder": out}
    logger.info(f"wrote {os.path.join(out, RADIUS_FILE)} and {ANGLE_FILE}: {len(classes)} classes, "
                f"{degenerate} with <= 1 inlier (skipped by the boundary losses), mean r_max {summary['mean_r_max']:.4f}")
    return summary
