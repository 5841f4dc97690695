#!/usr/bin/env bash
# Step 4: self-test and cross-test (new queries against the old gallery), docs/evaluation.md.
# Usage: bash scripts/test.sh landmark <roxford5k|rparis6k|gldv2> <root> [KEY VALUE ...]
# Model paths and architectures are set here as in the reference and can come from the environment.
# The paths may name bct checkpoints or the reference's own (e.g. the authors' released models), see docs/models.md.
set -euo pipefail
NEW_MODEL_PATH=${NEW_MODEL_PATH:-./output/resnet18/new_advbct/model_final.pth}
OLD_MODEL_PATH=${OLD_MODEL_PATH:-./output/resnet18/old_30class/model_final.pth}
NEW_MODEL_ARCH=${NEW_MODEL_ARCH:-resnet18}
OLD_MODEL_ARCH=${OLD_MODEL_ARCH:-resnet18}
CONFIG=${CONFIG:-configs/test_model.yml}
SAVE_DIR=${SAVE_DIR:-./output/eval}
if [ $# -lt 3 ]; then
  echo "usage: bash scripts/test.sh landmark <roxford5k|rparis6k|gldv2> <root> [KEY VALUE ...]" >&2
  exit 2
fi
DATASET_TYPE=$1; DATASET=$2; ROOT=$3; shift 3
source "$(dirname "$0")/launch.sh"
launch bct.tools.test --cfg "${CONFIG}" \
  EVAL.DATASET_TYPE "${DATASET_TYPE}" EVAL.DATASET "${DATASET}" EVAL.DATASET_NAME "${DATASET}" EVAL.ROOT "${ROOT}" \
  NEW_MODEL.ARCH "${NEW_MODEL_ARCH}" NEW_MODEL.MODEL_PATH "${NEW_MODEL_PATH}" \
  OLD_MODEL.ARCH "${OLD_MODEL_ARCH}" OLD_MODEL.MODEL_PATH "${OLD_MODEL_PATH}" \
  EVAL.SAVE_DIR "${SAVE_DIR}" "$@"
