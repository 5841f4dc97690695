#!/usr/bin/env bash
# Your own labelled images end to end (docs/own_images.md):
#   prepare the lists -> old model -> old-class statistics -> new model (METHOD) -> self/cross-test table.
# Usage: bash scripts/own.sh <folder per class | CSV of path,label[,split]> [name] [KEY VALUE ...]
# Everything goes to output/own/<name>/ (name: the folder's or the CSV's name without extension):
# lists/ (the preparation, its retrieval set in lists/eval), resnet18/old and resnet18/new_<method> (the
# models), old_stats/ (class statistics), eval/new_<method>/ (results and summary.md).
# Environment:
#   METHOD=advbct        new model's method (bct/methods: oracle, bct, lce, unibct, hot_refresh, advbct)
#   GPUS=0               0: on the CPU (default); N >= 1: on N GPUs (torchrun when N > 1)
#   FRESH=1              remove output/own/<name> first and start over
#   PREPARE_ARGS="..."   flags of python -m bct.tools.prepare_images, e.g. "--split data --check-decode"
#   WEIGHTS=<file>       local backbone weights instead of ImageNet (OLD_MODEL/NEW_MODEL.PRETRAINED_PATH)
#   PRETRAINED=False     no ImageNet weights: the models start from START (below)
#   START=old            with PRETRAINED=False: old (default: the old model from random weights, the new
#                        model from the old model's backbone), pretext (both from a start trained on the
#                        collection's images without their labels) or random (both from random weights)
#   ARCH=resnet18        backbone of both models (any torchvision classification model)
# KEY VALUE arguments override the small CPU settings of configs/own in every step, e.g. TRAIN.EPOCHS 20;
# the keys this script sets itself (OUTPUT, the lists, the models, ...) are refused with the knob to use.
# A finished step is reused when its settings and inputs are the same; with others it is refused
# (one line): change the name, or FRESH=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
usage="usage: bash scripts/own.sh <folder per class | CSV of path,label[,split]> [name] [KEY VALUE ...]"
if [ $# -lt 1 ]; then echo "${usage}" >&2; exit 2; fi
SRC_ARG=$1; shift
if [ ! -e "${SRC_ARG}" ]; then
  echo "error: ${SRC_ARG} does not exist; give a folder per class (<root>/<class>/<image>) or a CSV of path,label" >&2
  exit 2
fi
if [ -d "${SRC_ARG}" ]; then SRC=$(cd "${SRC_ARG}" && pwd)
else SRC="$(cd "$(dirname "${SRC_ARG}")" && pwd)/$(basename "${SRC_ARG}")"; fi
bct_env WEIGHTS ""
if [ -n "${WEIGHTS}" ]; then
  WEIGHTS="$(cd "$(dirname "${WEIGHTS}")" && pwd)/$(basename "${WEIGHTS}")"
fi
# Overrides come in KEY VALUE pairs, so an odd number of remaining arguments starts with the name.
if (( $# % 2 )); then NAME=$1; shift
else NAME=$(basename "${SRC}"); NAME=${NAME%.*}; NAME=$(printf '%s' "${NAME}" | tr -c 'A-Za-z0-9_+-' '_'); fi
if ! [[ "${NAME}" =~ ^[A-Za-z0-9][A-Za-z0-9_+-]*$ ]]; then
  echo "error: name '${NAME}' must be letters, digits, '_', '+' or '-' (it names the set in the table); ${usage}" >&2
  exit 2
fi
# Keys this script sets in every step: an override would send one step to another folder, list or model
# than the next reads (one run, one folder), so it is refused with the knob that does it.
for (( i = 1; i < $#; i += 2 )); do
  key=${!i}
  case "${key}" in
    OUTPUT|EVAL.CACHE_DIR|EVAL.SAVE_DIR|EXTRACT.SAVE_DIR|TAG) knob="the name argument (output/own/<name>)";;
    TRAIN.ROOT|TRAIN.LIST_FILE|OLD_MODEL.NUM_CLASSES|NEW_MODEL.NUM_CLASSES) knob="the collection and PREPARE_ARGS";;
    OLD_MODEL.MODEL_PATH|COMP_LOSS.RADIUS_FILE|COMP_LOSS.ANGLE_FILE) knob="the name argument (each run trains its own old model)";;
    OLD_MODEL.ARCH|NEW_MODEL.ARCH) knob="ARCH=";;
    OLD_MODEL.PRETRAINED|NEW_MODEL.PRETRAINED|OLD_MODEL.PRETRAINED_PATH|NEW_MODEL.PRETRAINED_PATH) knob="PRETRAINED=, START= or WEIGHTS=";;
    DEVICE) knob="GPUS=";;
    *) continue;;
  esac
  echo "error: ${key} is set by scripts/own.sh in every step; use ${knob} instead (${usage#usage: })" >&2
  exit 2
done
cd "$(dirname "$0")/.."
bct_env PYTHON python3
bct_env METHOD advbct
bct_env FRESH 0
bct_env ARCH resnet18
bct_env PRETRAINED True
bct_env PREPARE_ARGS ""
bct_env START ""
bct_start "old pretext random" "scripts/own.sh"
# A refused step's advice names this command's knobs, not the inner tool's flags.
export BCT_RERUN_HINT="give another name (bash scripts/own.sh ${SRC_ARG} <other name> ...) or start over with FRESH=1 (removes output/own/${NAME})"
CFG=configs/own
OUT=output/own/${NAME}
LISTS=${OUT}/lists
STATS=${OUT}/old_stats
OLD=${OUT}/${ARCH}/old/model_final.pth
NEW=${OUT}/${ARCH}/new_${METHOD}/model_final.pth
EVAL_DIR=${OUT}/eval/new_${METHOD}
bct_env GPUS 0
export GPUS
if [ "${GPUS}" = 0 ]; then DEVICE=cpu; else DEVICE=cuda; fi
source scripts/launch.sh
start=$(date +%s)
step() { echo; echo "==> [$1/6] $2 ($(( $(date +%s) - start ))s)"; }

if [ "${FRESH}" = 1 ]; then echo "FRESH=1: removing ${OUT}"; rm -rf "${OUT}"; fi

step 1 "prepare ${SRC} -> ${LISTS}"
# shellcheck disable=SC2086  # PREPARE_ARGS is a list of flags
$PYTHON -m bct.tools.prepare_images --src "${SRC}" --out "${LISTS}" ${PREPARE_ARGS}
# The image root, the class counts, and a batch size the old-model list can fill on every process
# (configs/own's TRAIN.BATCH_SIZE, lowered for a small collection; a TRAIN.BATCH_SIZE argument wins).
{ read -r ROOT; read -r NUM_OLD; read -r NUM_NEW; read -r BATCH; } < <($PYTHON -c "import json, sys, yaml
m = json.load(open(sys.argv[1]))
batch = yaml.safe_load(open(sys.argv[2]))['TRAIN']['BATCH_SIZE']
fit = m['counts']['old_images'] // max(1, int(sys.argv[3]))
if fit < batch:
    n = m['counts']['old_images']
    print(f'note: TRAIN.BATCH_SIZE {fit} (not {batch}): the old-model list has {n} images', file=sys.stderr)
t = m['train']
print(t['root']); print(t['old_num_classes']); print(t['new_num_classes']); print(min(batch, fit))
" "${LISTS}/manifest.json" "${CFG}/Base-own.yml" "${GPUS}")

step 2 "starting weights of ${ARCH}"
# OLD_START / NEW_START: each model's start; NEW_FROM_OLD=1: the new model starts from the old model.
NEW_FROM_OLD=0
if [ "${OFFLINE}" = 1 ]; then
  OLD_START=(OLD_MODEL.PRETRAINED False)
  case "${START}" in
    random) NEW_START=(NEW_MODEL.PRETRAINED False); echo "random weights (PRETRAINED=False START=random)";;
    old) NEW_FROM_OLD=1; NEW_START=(NEW_MODEL.PRETRAINED True NEW_MODEL.PRETRAINED_PATH "${OUT}/${ARCH}/start/old_backbone.pth")
         echo "old model from random weights, new model from the old model's backbone (PRETRAINED=False START=old)";;
    pretext)
      PRETEXT=${OUT}/${ARCH}/start/pretext.pth
      PRETEXT_LIST=${OUT}/${ARCH}/start/pretext_list.txt
      mkdir -p "${OUT}/${ARCH}/start"
      # Every training image its own class (labels dropped), made from train_full.txt.
      $PYTHON -c "import os, sys
rows = open(sys.argv[1], encoding='utf-8').read().splitlines()
text = ''.join(f\"{r.split(' ', 1)[0]} {i}\\n\" for i, r in enumerate(rows))
if not os.path.isfile(sys.argv[2]) or open(sys.argv[2], encoding='utf-8').read() != text:
    open(sys.argv[2] + '.tmp', 'w', encoding='utf-8').write(text)
    os.replace(sys.argv[2] + '.tmp', sys.argv[2])" "${LISTS}/train_full.txt" "${PRETEXT_LIST}"
      NUM_PRETEXT=$(wc -l < "${PRETEXT_LIST}")
      echo "both models from a start trained on the ${NUM_PRETEXT} training images without labels (PRETRAINED=False START=pretext)"
      launch bct.tools.pretrain --cfg ${CFG}/pretext.yml --out "${PRETEXT}" OUTPUT "${OUT}" DEVICE "${DEVICE}" \
        TRAIN.ROOT "${ROOT}" TRAIN.BATCH_SIZE "${BATCH}" OLD_MODEL.ARCH "${ARCH}" NEW_MODEL.ARCH "${ARCH}" \
        TRAIN.LIST_FILE "${PRETEXT_LIST}" OLD_MODEL.NUM_CLASSES "${NUM_PRETEXT}" "$@"
      OLD_START=(OLD_MODEL.PRETRAINED True OLD_MODEL.PRETRAINED_PATH "${PRETEXT}")
      NEW_START=(NEW_MODEL.PRETRAINED True NEW_MODEL.PRETRAINED_PATH "${PRETEXT}");;
  esac
elif [ -n "${WEIGHTS}" ]; then
  OLD_START=(OLD_MODEL.PRETRAINED_PATH "${WEIGHTS}"); NEW_START=(NEW_MODEL.PRETRAINED_PATH "${WEIGHTS}")
  echo "local weights ${WEIGHTS}"
else
  OLD_START=(); NEW_START=()
  $PYTHON - "${ARCH}" <<'EOF'
import os, sys
import torch, torchvision
arch = sys.argv[1]
hint = ("give a local weight file with WEIGHTS=<file> (it sets OLD_MODEL.PRETRAINED_PATH and "
        "NEW_MODEL.PRETRAINED_PATH) or start from random weights with PRETRAINED=False")
def refuse(line):
    print(f"error: {line}", file=sys.stderr)
    sys.exit(2)
try:
    weights = torchvision.models.get_model_weights(arch).DEFAULT
except Exception:
    refuse(f"torchvision has no ImageNet weights for ARCH={arch}; {hint}")
path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
if not os.path.isfile(path):
    try:
        weights.get_state_dict(progress=False)
    except Exception as e:
        refuse(f"ImageNet weights of {arch} are not in the torchvision cache and could not be downloaded "
               f"({type(e).__name__}): put {weights.url} at {path}, or {hint}")
print(f"ImageNet weights of {arch}: {path}")
EOF
fi
COMMON=(OUTPUT "${OUT}" DEVICE "${DEVICE}" TRAIN.ROOT "${ROOT}" TRAIN.BATCH_SIZE "${BATCH}"
        OLD_MODEL.ARCH "${ARCH}" NEW_MODEL.ARCH "${ARCH}" OLD_MODEL.NUM_CLASSES "${NUM_OLD}" EVAL.CACHE_DIR "${OUT}/feature_cache")

# --reuse: a finished step of the same settings and input digests is kept; one of other settings in the
# same folder is refused (bct.pipeline records), never written over.
step 3 "old model: ${ARCH} on ${LISTS}/train_old.txt (${NUM_OLD} classes)"
launch bct.tools.train --cfg ${CFG}/old_model.yml --reuse "${COMMON[@]}" "${OLD_START[@]}" \
  TRAIN.LIST_FILE "${LISTS}/train_old.txt" "$@"

step 4 "old-class centres and radii -> ${STATS}"
launch bct.tools.extract_feat --cfg ${CFG}/extract_feat.yml --model "${OLD}" --out "${STATS}" --reuse \
  "${COMMON[@]}" TRAIN.LIST_FILE "${LISTS}/train_old.txt" "$@"

step 5 "new model: ${METHOD}, ${ARCH} on ${LISTS}/train_full.txt (${NUM_NEW} classes)"
if [ "${NEW_FROM_OLD}" = 1 ]; then launch bct.tools.pretrain --from-model "${OLD}" --out "${NEW_START[3]}"; fi
launch bct.tools.train --cfg ${CFG}/new_${METHOD}.yml --reuse "${COMMON[@]}" "${OLD_START[@]}" "${NEW_START[@]}" \
  TRAIN.LIST_FILE "${LISTS}/train_full.txt" NEW_MODEL.NUM_CLASSES "${NUM_NEW}" OLD_MODEL.MODEL_PATH "${OLD}" \
  COMP_LOSS.RADIUS_FILE "${STATS}/radius.json" COMP_LOSS.ANGLE_FILE "${STATS}/angle.json" "$@"

step 6 "self-test and cross-test on ${NAME} (${LISTS}/eval)"
launch bct.tools.test --cfg ${CFG}/test_model.yml --model "${NEW}" --old-model "${OLD}" \
  --datasets "${NAME}=${LISTS}/eval" --out "${EVAL_DIR}" --summary "${COMMON[@]}" "$@"
# When the criterion fails: what to try, in one or two lines.
$PYTHON -c "import json, sys
from bct.pipeline.results import criterion_advice, read_result
h = read_result(sys.argv[1])['headline']
s = json.load(open(sys.argv[2]))['settings']
for line in criterion_advice(h['old_self'], h['self'], h['cross'], s['split'], s['held'], sys.argv[3]):
    print('BCT criterion not met:', line)" "${EVAL_DIR}/${NAME}.json" "${LISTS}/manifest.json" "${START}"
echo "done in $(( $(date +%s) - start ))s; results in ${EVAL_DIR}/"
PAGE=$($PYTHON -m bct.tools.report "${EVAL_DIR}" --out "${OUT}/report/new_${METHOD}")
echo "report page (query by query; open it in a browser): ${PAGE}"
