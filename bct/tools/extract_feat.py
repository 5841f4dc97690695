"""Old-class statistics (SPEC.md §4): run the old model over the old training list and write
radius.json (centre + sorted inlier distances), angle.json (centre + sorted inlier angles, for LCE),
feats.npy and labels.npy into EXTRACT.SAVE_DIR.

python -m bct.tools.extract_feat --cfg configs/extract_feat.yml KEY VALUE ...
"""
import os

import numpy as np

from bct.data.datasets import build_image_dataset
from bct.data.lists import check_labels, read_image_list
from bct.engine.checkpoint import load_trained_model
from bct.evaluation.class_stats import class_statistics, statistics_json
from bct.evaluation.extract import extract_features
from bct.tools.common import default_parser, run, setup
from bct.utils.comm import is_main_process
from bct.utils.fileio import atomic_path, write_json_atomic

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
    feats, ok = extract_features(model, dataset, cfg.EVAL.BATCH_SIZE, cfg.EVAL.NUM_WORKERS, device,
                                 cfg.USE_AMP, desc="old-class features", batch_decoder=decoder)
    if not is_main_process():
        return None
    if (~ok).any():
        logger.warning(f"{int((~ok).sum())} unreadable images left out of the statistics (EVAL.SKIP_BAD_IMAGES)")
    feats, labels = np.asarray(feats)[ok], labels[ok]
    classes, centers, radii, angles = class_statistics(feats, labels)
    out = cfg.EXTRACT.SAVE_DIR
    write_json_atomic(os.path.join(out, RADIUS_FILE), statistics_json(classes, centers, radii))
    write_json_atomic(os.path.join(out, ANGLE_FILE), statistics_json(classes, centers, angles))
    for name, arr in (("feats.npy", feats.astype(np.float32)), ("labels.npy", labels)):
        with atomic_path(os.path.join(out, name)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
    degenerate = sum(len(r) <= 1 for r in radii)
    summary = {"classes": len(classes), "images": int(len(labels)), "degenerate_classes": degenerate,
               "mean_r_max": float(np.mean([r[-1] for r in radii])), "files": [RADIUS_FILE, ANGLE_FILE]}
    logger.info(f"wrote {os.path.join(out, RADIUS_FILE)} and {ANGLE_FILE}: {len(classes)} classes, "
                f"{degenerate} with <= 1 inlier (skipped by the boundary losses), mean r_max {summary['mean_r_max']:.4f}")
    return summary


if __name__ == "__main__":
    run(main)
