#!/usr/bin/env bash
# Step 3: train a new model with a compatibility method (docs/method.md).
# METHOD: advbct (default), bct, lce, unibct, hot_refresh, oracle.
# CONFIG_DIR selects the setting: configs (GLDv2 class split), configs/data_split, configs/r50,
# configs/synthetic (and its data_split, r50); extra arguments are KEY VALUE overrides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
bct_env METHOD advbct
bct_env CONFIG_DIR configs            # configs/synthetic for the synthetic benchmark
bct_env CONFIG "${CONFIG_DIR}/new_${METHOD}.yml"
source "$(dirname "$0")/launch.sh"
launch bct.tools.train --cfg "${CONFIG}" "$@"
