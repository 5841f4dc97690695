#!/usr/bin/env bash
# Step 3: train a new model with a compatibility method (docs/method.md).
# METHOD: advbct (default), bct, lce, unibct, hot_refresh, oracle (any method of the catalogue).
# CONFIG_DIR selects the setting: configs (GLDv2 class split), configs/data_split, configs/r50,
# configs/synthetic (and its data_split, r50). Extra arguments are the tool's flags (--resume, --reuse),
# then KEY VALUE overrides.
# PRETRAINED=False (no ImageNet weights): the new model starts from START: old (default: the backbone of
# the old model, OLD_MODEL.MODEL_PATH, published once under OUTPUT/<arch>/start/) or random.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
bct_env METHOD advbct
bct_env CONFIG_DIR configs            # configs/synthetic for the synthetic benchmark
bct_env CONFIG "${CONFIG_DIR}/new_${METHOD}.yml"
bct_env PRETRAINED True
bct_env START ""
FLAGS=(); while [ $# -gt 0 ] && [[ "$1" == --* ]]; do FLAGS+=("$1"); shift; done
source "$(dirname "$0")/launch.sh"
bct_start "old random" "the train scripts"
START_ARGS=()
if [ "${OFFLINE}" = 1 ] && [ "${START}" = old ]; then
  START_FILE=$($PYTHON -m bct.tools.pretrain --old-start --cfg "${CONFIG}" "$@" | tail -n 1)
  START_ARGS=(OLD_MODEL.PRETRAINED False NEW_MODEL.PRETRAINED True NEW_MODEL.PRETRAINED_PATH "${START_FILE}")
  echo "new model from the old model's backbone ${START_FILE} (PRETRAINED=False START=old)"
elif [ "${OFFLINE}" = 1 ]; then
  START_ARGS=(OLD_MODEL.PRETRAINED False NEW_MODEL.PRETRAINED False)
  echo "new model from random weights (PRETRAINED=False START=random)"
fi
launch bct.tools.train --cfg "${CONFIG}" ${FLAGS[@]+"${FLAGS[@]}"} ${START_ARGS[@]+"${START_ARGS[@]}"} "$@"
