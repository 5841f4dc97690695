#!/usr/bin/env bash
# All-method comparison on the synthetic benchmark (or any config folder): old model, oracle, BCT, LCE,
# UniBCT, Hot-refresh and AdvBCT, evaluated on RParis/ROxford/GLDv2-format sets; writes results.md,
# results.json and PNG plots to output/compare/<folder>/. Extra arguments go to bct.tools.compare
# (e.g. --seeds 1 2 3, --fresh, --methods advbct bct) and then KEY VALUE overrides.
# It runs as ONE process (one GPU, or the CPU) and trains its own models under output/compare/.
# With several GPUs, train with train_old.sh / extract_feat.sh / train_new.sh (torchrun), test each
# model with test.sh and make the table with `python -m bct.tools.summarize --oracle ...` (README).
set -euo pipefail
CONFIG_DIR=${CONFIG_DIR:-configs/synthetic}    # configs/synthetic/data_split, configs/synthetic/r50
source "$(dirname "$0")/launch.sh"
if [ "${GPUS}" -gt 1 ] || [ "${NNODES}" -gt 1 ]; then
  echo "benchmark.sh runs as one process on one device; GPUS=${GPUS} NNODES=${NNODES} are not used" >&2
fi
if [ ! -f data/synthetic/synthetic_meta.json ] && [[ "${CONFIG_DIR}" == *synthetic* ]]; then
  $PYTHON -m bct.tools.make_synthetic --out data/synthetic
fi
$PYTHON -m bct.tools.compare --config-dir "${CONFIG_DIR}" "$@"
