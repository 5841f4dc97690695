#!/usr/bin/env bash
# All-method comparison on the synthetic benchmark (or any config folder): old model, oracle, BCT, LCE,
# UniBCT, Hot-refresh and AdvBCT, evaluated on RParis/ROxford/GLDv2-format sets; writes results.md,
# results.json and PNG plots to output/compare/<folder>/. Extra arguments go to bct.tools.compare
# (e.g. --seeds 1 2 3, --fresh, --methods advbct bct) and then KEY VALUE overrides.
set -euo pipefail
CONFIG_DIR=${CONFIG_DIR:-configs/synthetic}    # configs/synthetic/data_split, configs/synthetic/r50
source "$(dirname "$0")/launch.sh"
if [ ! -f data/synthetic/synthetic_meta.json ] && [[ "${CONFIG_DIR}" == *synthetic* ]]; then
  $PYTHON -m bct.tools.make_synthetic --out data/synthetic
fi
$PYTHON -m bct.tools.compare --config-dir "${CONFIG_DIR}" "$@"
