#!/usr/bin/env bash
# Step 4: self-test and cross-test (new queries against the old gallery), docs/evaluation.md.
# Usage: bash scripts/test.sh landmark <roxford5k|rparis6k|gldv2> <root> [KEY VALUE ...]
#        bash scripts/test.sh own <name> <path> [KEY VALUE ...]
# "landmark" evaluates a built-in set at <root>; "own" a user's own retrieval set at <path> under the
# name <name> (its format: docs/evaluation.md); the result goes to SAVE_DIR/<name>.json.
# Model paths and architectures are set here as in the reference and can come from the environment
# (OLD_MODEL_PATH empty: self-test only). The paths may name bct checkpoints or the reference's own
# (e.g. the authors' released models), see docs/models.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
usage="usage: bash scripts/test.sh landmark <roxford5k|rparis6k|gldv2> <root> [KEY VALUE ...]
       bash scripts/test.sh own <name> <path> [KEY VALUE ...]"
if [ $# -lt 3 ] || { [ "$1" != landmark ] && [ "$1" != own ]; }; then
  echo "$usage" >&2
  exit 2
fi
NAME=$2; ROOT=$3; shift 3
bct_env NEW_MODEL_PATH ./output/resnet18/new_advbct/model_final.pth
bct_env OLD_MODEL_PATH ./output/resnet18/old_30class/model_final.pth keep-empty
bct_env NEW_MODEL_ARCH resnet18
bct_env OLD_MODEL_ARCH resnet18
bct_env CONFIG configs/test_model.yml
bct_env SAVE_DIR ./output/eval
source "$(dirname "$0")/launch.sh"
launch bct.tools.test --cfg "${CONFIG}" --model "${NEW_MODEL_PATH}" ${OLD_MODEL_PATH:+--old-model "${OLD_MODEL_PATH}"} \
  --datasets "${NAME}=${ROOT}" --out "${SAVE_DIR}" \
  NEW_MODEL.ARCH "${NEW_MODEL_ARCH}" OLD_MODEL.ARCH "${OLD_MODEL_ARCH}" "$@"
