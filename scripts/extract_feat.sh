#!/usr/bin/env bash
# Step 2: old-class centres and radii (docs/method.md) from the old model over the old training list.
# Writes EXTRACT.SAVE_DIR/{radius,angle}.json, feats.npy, labels.npy.
set -euo pipefail
CONFIG=${CONFIG:-configs/extract_feat.yml}   # configs/synthetic/extract_feat.yml for the synthetic benchmark
OLD_MODEL_PATH=${OLD_MODEL_PATH:-}           # empty: the config's OLD_MODEL.MODEL_PATH
source "$(dirname "$0")/launch.sh"
launch bct.tools.extract_feat --cfg "${CONFIG}" ${OLD_MODEL_PATH:+OLD_MODEL.MODEL_PATH "$OLD_MODEL_PATH"} "$@"
