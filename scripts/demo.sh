#!/usr/bin/env bash
# The main job on the embedded synthetic landmark benchmark, start to finish:
#   synthetic data -> shared pretrained start -> old model -> old-class statistics
#   -> new model (AdvBCT) -> self-test and cross-test on RParis/ROxford/GLDv2-format sets -> table.
# Finished steps are reused (and said so) when they were made with the same settings and input files:
# each step's tool checks the record kept beside its outputs (run.json: settings and file digests, never
# file times). A folder holding a run of other settings (say a short model trained there by another
# command) is refused with one line and left as it is; FRESH=1 removes the demo's models, statistics and
# results and starts over. METHOD picks the new model's method (advbct, bct, lce, unibct, hot_refresh,
# oracle). Runs unchanged on a GPU machine.
# The demo trains with the benchmark's settings (configs/synthetic): every model starts from the same
# pretrained backbone, and old and new models train the same number of epochs; 6 here, where the
# benchmark trains 12 (its budget is 25 minutes, the demo's 5). LONG=1 trains the benchmark's 12.
# The pretrained start is cached by its settings: FRESH=1 retrains the models, not the start (delete
# output/synthetic/pretrained/ for that).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
cd "$(dirname "$0")/.."
bct_env PYTHON python3
bct_env METHOD advbct
bct_env FRESH 0
CFG=configs/synthetic
OUT=output/synthetic
PRETRAINED=${OUT}/pretrained/resnet18_pool.pth   # OLD_MODEL/NEW_MODEL.PRETRAINED_PATH of the configs
bct_env LONG 0
if [ "${LONG}" = 1 ]; then
  RECIPE=(); SUFFIX=_e12; EPOCHS=12
else
  RECIPE=(TRAIN.EPOCHS 6 TRAIN.LR_SCHEDULER.MILESTONES "[4, 5]"); SUFFIX=""; EPOCHS=6
fi
OLD_TAG=old_30class${SUFFIX}; NEW_TAG=new_${METHOD}${SUFFIX}
EVAL_DIR=${OUT}/eval/${NEW_TAG}
OLD=${OUT}/resnet18/${OLD_TAG}/model_final.pth
NEW=${OUT}/resnet18/${NEW_TAG}/model_final.pth
STATS=${OUT}/old_stats/${OLD_TAG}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
# With PYTHONDONTWRITEBYTECODE set (and torch installed without byte-compiling, as below), every one of
# the demo's five Python processes would compile torch's modules again (about 3.5 s each on 2 cores):
# keep the compiled modules under output/pycache instead of beside the sources. PYCACHE=0 opts out.
bct_env PYCACHE 1
if [ -n "${PYTHONDONTWRITEBYTECODE:-}" ] && [ "${PYCACHE}" != 0 ]; then
  unset PYTHONDONTWRITEBYTECODE
  export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-$(pwd)/output/pycache}
fi
bct_env GPUS 1
export GPUS
start=$(date +%s)
step() { echo; echo "==> [$1/7] $2 ($(( $(date +%s) - start ))s)"; }

step 1 "requirements"
# find_spec looks the packages up without importing them (importing all of them takes ~10 s).
PIP_PID=""
if $PYTHON -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('torch', 'torchvision', 'faiss', 'yacs', 'yaml', 'PIL', 'tqdm', 'tensorboard', 'matplotlib')))" 2>/dev/null; then
  echo "installed"
else
  # Data generation needs only the light packages: install those first, then torch and the rest
  # (several GB) in the background while the benchmark is drawn. --no-compile skips byte-compiling
  # every file of torch at install time (about half of the install); Python compiles what it imports.
  $PYTHON -m pip install -q $(grep -iE '^(numpy|pillow|pyyaml|yacs|tqdm)\b' requirements.txt)
  mkdir -p "${OUT}"
  $PYTHON -m pip install -q --no-compile -r requirements.txt > "${OUT}/pip_install.log" 2>&1 &
  PIP_PID=$!
  echo "installing requirements.txt in the background (log: ${OUT}/pip_install.log)"
fi
if [ "${FRESH}" = 1 ]; then
  echo "FRESH=1: removing the demo's models, statistics and results"
  rm -rf "$(dirname "${OLD}")" "$(dirname "${NEW}")" "${STATS}" "${EVAL_DIR}"
fi

step 2 "synthetic benchmark (data/synthetic)"
$PYTHON -m bct.tools.make_synthetic --out data/synthetic
if [ -n "${PIP_PID}" ]; then
  echo "waiting for the requirements to finish installing"
  wait "${PIP_PID}" || { echo "error: pip install -r requirements.txt failed; see ${OUT}/pip_install.log" >&2
                         tail -5 "${OUT}/pip_install.log" >&2; exit 1; }
fi

step 3 "shared pretrained start: resnet18 on the pretraining pool (cached by its settings)"
$PYTHON -m bct.tools.pretrain --cfg ${CFG}/pretrain.yml --out "${PRETRAINED}"

step 4 "old model: resnet18 from the shared start on the 30% old classes, ${EPOCHS} epochs"
CONFIG=${CFG}/old_model.yml bash scripts/train_old.sh --reuse TAG "${OLD_TAG}" "${RECIPE[@]}"

step 5 "old-class centres and radii"
CONFIG=${CFG}/extract_feat.yml bash scripts/extract_feat.sh --reuse OLD_MODEL.MODEL_PATH "${OLD}" \
  EXTRACT.SAVE_DIR "${STATS}"

step 6 "new model: ${METHOD} from the shared start on all classes, ${EPOCHS} epochs as the old model"
METHOD=${METHOD} CONFIG_DIR=${CFG} bash scripts/train_new.sh --reuse TAG "${NEW_TAG}" \
  OLD_MODEL.MODEL_PATH "${OLD}" COMP_LOSS.RADIUS_FILE "${STATS}/radius.json" COMP_LOSS.ANGLE_FILE "${STATS}/angle.json" \
  "${RECIPE[@]}"

step 7 "self-test and cross-test on RParis, ROxford and the GLDv2-format set (one process)"
# scripts/test.sh evaluates one set per call; the demo loads the models once for all three.
(source scripts/launch.sh
 launch bct.tools.test --cfg ${CFG}/test_model.yml --model "${NEW}" --old-model "${OLD}" \
   --datasets rparis6k,roxford5k,gldv2 --out "${EVAL_DIR}" --summary)
echo "done in $(( $(date +%s) - start ))s; results in ${EVAL_DIR}/"
# The report page: query by query, what the old model, the new model and the cross-test retrieve.
PAGE=$($PYTHON -m bct.tools.report "${EVAL_DIR}" --out "${OUT}/report/${NEW_TAG}")
echo "report page (open it in a browser): ${PAGE}"
