#!/usr/bin/env bash
# All-method comparison on the synthetic benchmark (or any config folder): old model, oracle and every
# method of bct/methods, evaluated on RParis/ROxford/GLDv2-format sets; writes results.md,
# results.json and PNG plots to output/compare/<folder>/. Extra arguments go to bct.tools.compare: its
# flags (list flags take one comma-separated value: --seeds 1,2,3, --methods advbct,bct; --fresh),
# then KEY VALUE overrides (e.g. --methods advbct TRAIN.EPOCHS 1). Finished models of the same settings
# and inputs are reused; a run of other settings in output/compare/<folder> is refused (--fresh or --out).
# It runs as ONE process (one GPU, or the CPU) and trains its own models under output/compare/.
# With several GPUs, train with train_old.sh / extract_feat.sh / train_new.sh (torchrun), test each
# model with test.sh and make the table with `python -m bct.tools.summarize --oracle ...` (README).
# METHODS=all adds the catalogue's newer methods (BT2, d-Simplex, ...) to the paper's (the default); METHODS=a,b
# names a list (the same as --methods a,b).
# GENERATIONS=3 trains chains of model generations instead (30% -> 60% -> 100% of the classes; AdvBCT,
# BCT and the oracle) and writes their compatibility matrices to output/compare/<folder>/generations/
# (docs/generations.md); FRACTIONS=0.3,0.5,1.0 chooses other nested splits.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
bct_env CONFIG_DIR configs/synthetic    # configs/synthetic/data_split, configs/synthetic/r50
bct_env GENERATIONS ""
bct_env FRACTIONS ""
bct_env METHODS ""
source "$(dirname "$0")/launch.sh"
if [ "${GPUS}" -gt 1 ] || [ "${NNODES}" -gt 1 ]; then
  echo "benchmark.sh runs as one process on one device; GPUS=${GPUS} NNODES=${NNODES} are not used" >&2
fi
CHAIN=()
if [ -n "${GENERATIONS}" ]; then
  if [ -z "${FRACTIONS}" ]; then
    # The synthetic old models train on 30%: generation t < N gets t x 30%, the last one everything.
    case "${GENERATIONS}" in
      2) FRACTIONS=0.3,1.0 ;;
      3) FRACTIONS=0.3,0.6,1.0 ;;
      4) FRACTIONS=0.3,0.6,0.9,1.0 ;;
      0|1) echo "error: GENERATIONS=${GENERATIONS}: a chain needs at least two generations (e.g. GENERATIONS=2)" >&2
           exit 2 ;;
      *) echo "error: GENERATIONS=${GENERATIONS}: set FRACTIONS (e.g. FRACTIONS=0.3,0.5,0.7,0.85,1.0)" >&2; exit 2 ;;
    esac
  fi
  CHAIN=(--generations "${GENERATIONS}" --fractions "${FRACTIONS}")
fi
if [[ "${CONFIG_DIR}" == *synthetic* ]]; then
  if [ ! -f data/synthetic/synthetic_meta.json ]; then
    $PYTHON -m bct.tools.make_synthetic --out data/synthetic ${FRACTIONS:+--fractions "${FRACTIONS}"}
  elif [ -n "${GENERATIONS}" ] && ! $PYTHON -c "import json, sys; m = json.load(open(sys.argv[1])); \
      sys.exit(m.get('fractions') != [float(f) for f in sys.argv[2].split(',')])" \
      data/synthetic/GLDv2/manifest.json "${FRACTIONS}"; then
    # The chain's nested lists are missing: add them (the other lists do not change).
    $PYTHON -m bct.tools.prepare_gldv2 --root data/synthetic/GLDv2 --fractions "${FRACTIONS}"
  fi
fi
$PYTHON -m bct.tools.compare --config-dir "${CONFIG_DIR}" ${METHODS:+--methods "${METHODS}"} "${CHAIN[@]}" "$@"
