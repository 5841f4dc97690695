#!/usr/bin/env bash
# Step 2: old-class centres and radii (docs/method.md) from the old model over the old training list.
# Writes EXTRACT.SAVE_DIR/{radius,angle}.json, feats.npy, labels.npy (and run.json, their record).
# Extra arguments: the tool's flags (--reuse keeps statistics of the same old model, list and
# settings) and then KEY VALUE overrides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
bct_env CONFIG configs/extract_feat.yml   # configs/synthetic/extract_feat.yml for the synthetic benchmark
bct_env OLD_MODEL_PATH ""             # empty: the config's OLD_MODEL.MODEL_PATH
FLAGS=(); while [ $# -gt 0 ] && [[ "$1" == --* ]]; do FLAGS+=("$1"); shift; done
source "$(dirname "$0")/launch.sh"
launch bct.tools.extract_feat --cfg "${CONFIG}" ${FLAGS[@]+"${FLAGS[@]}"} \
  ${OLD_MODEL_PATH:+OLD_MODEL.MODEL_PATH "$OLD_MODEL_PATH"} "$@"
