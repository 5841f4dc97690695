#!/usr/bin/env bash
# The main job on the embedded synthetic landmark benchmark, start to finish:
#   synthetic data -> train old model -> old-class statistics -> train new model (AdvBCT)
#   -> self-test and cross-test on RParis/ROxford/GLDv2-format sets -> summary table.
# Finished steps are reused (and said so); FRESH=1 starts over. METHOD picks the new model's method
# (advbct, bct, lce, unibct, hot_refresh, oracle). Runs unchanged on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
METHOD=${METHOD:-advbct}
FRESH=${FRESH:-0}
CFG=configs/synthetic
OUT=output/synthetic
EVAL_DIR=${OUT}/eval/demo_${METHOD}
OLD=${OUT}/resnet18/old_30class/model_final.pth
NEW=${OUT}/resnet18/new_${METHOD}/model_final.pth
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
step() { echo; echo "==> [$1/6] $2 ($(( $(date +%s) - start ))s)"; }

step 1 "requirements"
if $PYTHON -c "import torch, torchvision, faiss, yacs, PIL, tqdm, tensorboard, matplotlib" 2>/dev/null; then
  echo "installed"
else
  $PYTHON -m pip install -q -r requirements.txt
fi
if [ "${FRESH}" = 1 ]; then
  echo "FRESH=1: removing ${OUT}"
  rm -rf "${OUT}"
fi

step 2 "synthetic benchmark (data/synthetic)"
$PYTHON -m bct.tools.make_synthetic --out data/synthetic

step 3 "old model: resnet18 from scratch on the 30% old classes"
if [ -f "${OLD}" ]; then echo "reusing ${OLD}"; else
  CONFIG=${CFG}/old_model.yml GPUS=${GPUS:-1} bash scripts/train_old.sh --resume; fi

step 4 "old-class centres and radii"
if [ -f "${OUT}/old_stats/class/radius.json" ] && [ "${OUT}/old_stats/class/radius.json" -nt "${OLD}" ]; then
  echo "reusing ${OUT}/old_stats/class/{radius,angle}.json"; else
  CONFIG=${CFG}/extract_feat.yml GPUS=${GPUS:-1} bash scripts/extract_feat.sh; fi

step 5 "new model: ${METHOD} on all classes"
if [ -f "${NEW}" ] && [ "${NEW}" -nt "${OLD}" ]; then echo "reusing ${NEW}"; else
  rm -rf "$(dirname "${NEW}")"
  METHOD=${METHOD} CONFIG_DIR=${CFG} GPUS=${GPUS:-1} bash scripts/train_new.sh; fi

step 6 "self-test and cross-test"
for ds in rparis6k roxford5k gldv2; do
  root=data/synthetic/ROxfordParis
  [ "$ds" = gldv2 ] && root=data/synthetic/GLDv2
  CONFIG=${CFG}/test_model.yml NEW_MODEL_PATH=${NEW} OLD_MODEL_PATH=${OLD} SAVE_DIR=${EVAL_DIR} GPUS=${GPUS:-1} \
    bash scripts/test.sh landmark "$ds" "$root"
done
echo
$PYTHON -m bct.tools.summarize "${EVAL_DIR}" --out "${EVAL_DIR}/summary.md"
echo "done in $(( $(date +%s) - start ))s; results in ${EVAL_DIR}/"
