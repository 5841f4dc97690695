"""Old-class statistics (docs/method.md): run the old model over the old training list and write
radius.json (centre + sorted inlier distances), angle.json (centre + sorted inlier angles, for LCE),
feats.npy and labels.npy into EXTRACT.SAVE_DIR, with the config.yaml that made them. The files are
written together, and only when the statistics are complete: a run that fails (or reads no image)
leaves the folder's earlier files as they were.

python -m bct.tools.extract_feat --cfg configs/extract_feat.yml KEY VALUE ...
"""
import json
import os

import numpy as np

from bct.config import cfg_to_yaml
from bct.data.datasets import build_image_dataset, loader_workers
from bct.data.lists import check_labels, read_image_list
from bct.engine.checkpoint import load_trained_model
from bct.evaluation.class_stats import class_statistics, statistics_json
from bct.evaluation.extract import extract_features
from bct.tools.common import default_parser, run, setup
from bct.utils.comm import is_main_process
from bct.utils.errors import BadInputError
from bct.utils.fileio import AtomicGroup

RADIUS_FILE, ANGLE_FILE = "radius.json", "angle.json"


def main(argv=None):
    args = default_parser(__doc__).parse_args(argv)
    cfg, device, logger = setup(args, lambda c: c.EXTRACT.SAVE_DIR)
    model, meta = load_trained_model(cfg, "old", device=device)
    paths, labels = read_image_list(cfg.TRAIN.FILE_DIR, cfg.TRAIN.ROOT)
    check_labels(labels, cfg.OLD_MODEL.NUM_CLASSES, cfg.TRAIN.FILE_DIR, key="OLD_MODEL.NUM_CLASSES")
    dataset, decoder = build_image_dataset(cfg, "eval", cfg.TRAIN.ROOT, paths, labels, size=cfg.TRAIN.INPUT_SIZE,
                                           skip_bad=cfg.EVAL.SKIP_BAD_IMAGES, list_name=cfg.TRAIN.FILE_DIR,
                                           device=device)
    logger.info(f"embedding {len(dataset)} images of {cfg.TRAIN.FILE_DIR} with {cfg.OLD_MODEL.MODEL_PATH}")
    workers = loader_workers(cfg.EVAL.NUM_WORKERS, "EVAL.NUM_WORKERS")
    feats, ok = extract_features(model, dataset, cfg.EVAL.BATCH_SIZE, workers, device,
                                 cfg.USE_AMP, desc="old-class features", batch_decoder=decoder)
    if not is_main_process():
        return None
    if not ok.any():
        raise BadInputError(f"{cfg.TRAIN.FILE_DIR}: none of its {len(ok)} images could be read (EVAL.SKIP_BAD_IMAGES); "
                            f"nothing written, the files in {cfg.EXTRACT.SAVE_DIR} are unchanged")
    if (~ok).any():
        logger.warning(f"{int((~ok).sum())} unreadable images left out of the statistics (EVAL.SKIP_BAD_IMAGES)")
    feats, labels = np.asarray(feats)[ok], labels[ok]
    if not np.isfinite(feats).all():
        raise BadInputError(f"{cfg.OLD_MODEL.MODEL_PATH}: the old model gives non-finite features (NaN or inf); "
                            f"it diverged: use an earlier checkpoint. Nothing written")
    classes, centers, radii, angles = class_statistics(feats, labels)
    out = cfg.EXTRACT.SAVE_DIR
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
    degenerate = sum(len(r) <= 1 for r in radii)
    summary = {"classes": len(classes), "images": int(len(labels)), "degenerate_classes": degenerate,
               "mean_r_max": float(np.mean([r[-1] for r in radii])), "files": [RADIUS_FILE, ANGLE_FILE]}
    logger.info(f"wrote {os.path.join(out, RADIUS_FILE)} and {ANGLE_FILE}: {len(classes)} classes, "
                f"{degenerate} with <= 1 inlier (skipped by the boundary losses), mean r_max {summary['mean_r_max']:.4f}")
    return summary


if __name__ == "__main__":
    run(main)
