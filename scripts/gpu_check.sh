#!/usr/bin/env bash
# One short check of the CUDA paths on one GPU (a few minutes): generates a small synthetic JPEG set
# for 224 px input, runs base (old-model style) and AdvBCT / baseline training steps on CUDA in fp32,
# AMP and AMP + channels_last, then times data loading, extraction and faiss vs torch search.
# Writes speed_cuda.json into $OUT when set, else output/benchmarks/. See docs/benchmarks.md.
#   bash scripts/gpu_check.sh [extra benchmark_speed flags, e.g. --batch 64]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/env.sh"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
bct_env PYTHON python3
bct_env OUT output/benchmarks
REPORT_DIR=${OUT}
bct_env DATA_DIR ""
bct_env GPU_CHECK_TIMEOUT 280
bct_env WORKERS 8
if [[ -z "${DATA_DIR}" ]]; then
    SCRATCH=$(mktemp -d)
    trap 'rm -rf "$SCRATCH"' EXIT
    DATA_DIR=$SCRATCH/bench_images
fi

if ! $PYTHON -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: gpu_check.sh needs a CUDA device and none is visible to torch" >&2
    exit 1
fi
$PYTHON -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

mkdir -p "$REPORT_DIR"
# The timeout keeps the check under five minutes; finished sections are already in the JSON.
timeout "${GPU_CHECK_TIMEOUT}" $PYTHON benchmarks/speed.py \
    --device cuda --data "$DATA_DIR" --images 1024 --size 224 --batch 128 \
    --iters 15 --warmup 5 --repeats 3 --workers "${WORKERS}" \
    --modes fp32 amp amp_cl --gallery 100000 --queries 1000 --topk 100 \
    --out "$REPORT_DIR/speed_cuda.json" "$@"
