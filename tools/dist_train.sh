#!/usr/bin/env bash
# Data-parallel training with torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# Works on CPU (gloo) and GPU (nccl). NNODES/NODE_RANK/MASTER_ADDR/PORT for several machines.
set -euo pipefail
CONFIG=$1
NPROCS=$2
shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROCS" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
