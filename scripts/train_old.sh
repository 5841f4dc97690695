#!/usr/bin/env bash
# Step 1: train the old model (docs/method.md). Edit these or set them in the environment; extra
# arguments are the tool's flags (--resume, --reuse) and then KEY VALUE config overrides, e.g.
# `bash scripts/train_old.sh --reuse TRAIN.EPOCHS 10`. A folder holding a run of other settings is refused.
# PRETRAINED=False (no ImageNet weights): the old model starts from random weights, and train_new.sh's
# new model from this old model's backbone (START=old, its default) or from random weights (START=random).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
bct_env CONFIG configs/old_model.yml   # configs/synthetic/old_model.yml for the synthetic benchmark
bct_env TAG ""                         # empty: the config's TAG
bct_env PRETRAINED True
bct_env START ""
FLAGS=(); while [ $# -gt 0 ] && [[ "$1" == --* ]]; do FLAGS+=("$1"); shift; done
bct_start "old random" "the train scripts"
START_ARGS=(); if [ "${OFFLINE}" = 1 ]; then START_ARGS=(OLD_MODEL.PRETRAINED False); fi
source "$(dirname "$0")/launch.sh"
launch bct.tools.train --cfg "${CONFIG}" ${FLAGS[@]+"${FLAGS[@]}"} ${TAG:+TAG "$TAG"} ${START_ARGS[@]+"${START_ARGS[@]}"} "$@"
