#!/usr/bin/env bash
# The GPU measurements for docs/benchmarks.md, as one prepared run on a lent H100 (see
# docs/benchmarks.md for how the data and the wheels get there). Writes logs and JSON under $OUT
# (or bench/results); each part has its own time limit, and a failing part does not stop the rest.
#   bash bench/gpu_check.sh [DATA_ROOT]      (about 8 minutes)
set -uo pipefail
DATA_ROOT=${1:-/root/cifar10}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
  nproc
} 2>&1 | tee "$OUT/gpu.txt"
# 1. airbench94, five seeds: accuracy, airbench-style time (CUDA events) and end-to-end wall time
timeout 160 python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast --fast-repeat 5 --out "$OUT" 2>&1 \
  | tee "$OUT/airbench.log"
# 2. the same with torch.compile (its compilation is warm-up: outside the timed region, inside wall time)
timeout 100 python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast --fast-repeat 2 --fast-args=--compile \
  --out "$OUT/compile" 2>&1 | tee "$OUT/airbench-compile.log"
# 3. the strategy matrix: cuda / dataparallel / ddp x resnet18 / tutorial x fp32 / bf16
timeout 220 python3 bench/strategies.py --data-root "$DATA_ROOT" --tutorial-epochs 2 --resnet-epochs 3 --timeout 60 \
  --out "$OUT" 2>&1 | tee "$OUT/strategies.log"
