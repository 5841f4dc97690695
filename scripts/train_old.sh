#!/usr/bin/env bash
# Step 1: train the old model (docs/method.md). Edit these or set them in the environment; extra
# arguments are KEY VALUE config overrides, e.g. `bash scripts/train_old.sh TRAIN.EPOCHS 10`.
set -euo pipefail
CONFIG=${CONFIG:-configs/old_model.yml}   # configs/synthetic/old_model.yml for the synthetic benchmark
TAG=${TAG:-}                              # empty: the config's TAG
source "$(dirname "$0")/launch.sh"
launch bct.tools.train --cfg "${CONFIG}" ${TAG:+TAG "$TAG"} "$@"
