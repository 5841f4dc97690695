# Sourced by the other scripts: `launch MODULE ARGS...` runs python -m MODULE on one process, or
# through torchrun when GPUS > 1 or NNODES > 1 (env:// rendezvous; multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${REPO_ROOT}/scripts/lib/env.sh"
export PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:$PYTHONPATH}"
bct_env PYTHON python3
if [ -z "${GPUS:-}" ]; then
  GPUS=$($PYTHON -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
fi
bct_env GPUS 0
bct_env NNODES 1
bct_env NODE_RANK 0
bct_env MASTER_ADDR 127.0.0.1
bct_env MASTER_PORT 29500

launch() {
  local module=$1; shift
  if [ "${GPUS}" -gt 1 ] || [ "${NNODES}" -gt 1 ]; then
    $PYTHON -m torch.distributed.run --nnodes "${NNODES}" --node_rank "${NODE_RANK}" \
      --nproc_per_node "${GPUS}" --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT}" \
      -m "${module}" "$@"
  else
    $PYTHON -m "${module}" "$@"
  fi
}
