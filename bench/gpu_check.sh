#!/usr/bin/env bash
# The GPU measurements for docs/benchmarks.md, as one prepared run on a lent H100 (see
# docs/benchmarks.md for how the data and the pydantic/tomli-w wheels get there). Writes JSON
# and logs under $OUT (or bench/results). Takes about 6-8 minutes.
set -euo pipefail
DATA_ROOT=${1:-/root/cifar10}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
# 1. airbench94 five times: accuracy and airbench-style time (CUDA events), plus wall time
python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast --fast-repeat 5 --out "$OUT" 2>&1 | tee "$OUT/airbench.log"
# 2. the strategy matrix: cuda / dataparallel / ddp x tutorial / resnet18 x fp32 / bf16
python3 bench/strategies.py --data-root "$DATA_ROOT" --tutorial-epochs 2 --resnet-epochs 5 --out "$OUT" 2>&1 | tee "$OUT/strategies.log"
