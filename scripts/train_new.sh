#!/usr/bin/env bash
# Step 3: train a new model with a compatibility method (SPEC.md §5).
# METHOD: advbct (default), bct, lce, unibct, hot_refresh, oracle.
# SPLIT selects the config folder: "" (GLDv2 class split), data_split/, r50/, synthetic/.
set -euo pipefail
METHOD=${METHOD:-advbct}
CONFIG_DIR=${CONFIG_DIR:-configs}            # configs/synthetic for the synthetic benchmark
CONFIG=${CONFIG:-${CONFIG_DIR}/new_${METHOD}.yml}
source "$(dirname "$0")/launch.sh"
launch bct.tools.train --cfg "${CONFIG}" "$@"
