#!/usr/bin/env bash
# The GPU measurements for docs/benchmarks.md, as one prepared run on a lent H100 (see
# docs/benchmarks.md for how the data and the wheels get there). Writes one log, the JSON of each
# part and a summary under $OUT (or bench/results): at most 8 files come back from a lent call, so
# the parts share gpu_check.log. Each part has its own time limit, and a failing part does not
# stop the rest.
#   bash bench/gpu_check.sh [DATA_ROOT [PART ...]]
# Parts: startup (bench/startup.py: where the seconds before a run's first line go, ~1 min),
# graphs-check (one epoch of airbench94_muon with --deterministic, without and with --cuda-graphs:
# the same weights? ~40 s),
# muon (airbench94_muon eager, 5 seeds, ~1.5 min), muon-graphs (eager with --cuda-graphs: each
# step's forward and backward replayed as CUDA graphs, 5 seeds, ~1.5 min), muon-graphs-more (the
# same, seeds 5-14, for the accuracy: ~2.5 min), muon-compile (with --compile: the recipe's
# reduce-overhead mode, CUDA graphs; 5 seeds, ~2 min with a cold first compile),
# muon-compile-default (--compile in PyTorch's default mode, 5 seeds, ~2 min), muon-stem32 (the
# whitening layer in fp32, 5 seeds, ~1.5 min), muon-nofreeze (the whitening bias's gradient
# computed to the end, 5 seeds, ~1.5 min), muon-fp16 (fp16 autocast, 5 seeds, ~1.5 min),
# muon-threads1 (compiled in the default mode, inductor without its worker pool, 3 seeds, ~1 min), parts
# (bench/airbench_parts.py: whitening error and a frozen-bias step on the GPU, ~20 s), airbench
# (airbench94, 5 seeds, ~2 min), compile (airbench94 with --compile, 3 seeds, ~2 min), resnet18
# and tutorial (the strategy matrix, ~3 and ~6 min), tutorial-graphs (the tutorial recipe on the
# GPU, 5,000 steps of batch 4 with and without --cuda-graphs, ~30 s), profile (bench/profile_run.py:
# one eager airbench94_muon run's slowest imports and its functions by time, ~40 s). One command
# may run 10 minutes on the lent machine: the default is startup, graphs-check, muon, muon-graphs
# and profile (~6 min; limits add up to 8);
# run the others in further calls.
set -uo pipefail
DATA_ROOT=${1:-/root/cifar10}
shift || true
PARTS=${*:-startup graphs-check muon muon-graphs profile}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
wants() { [[ " $PARTS " == *" $1 "* ]]; }
KNOWN="startup graphs-check muon muon-graphs muon-graphs-more muon-compile muon-compile-default muon-stem32 muon-nofreeze muon-fp16 muon-threads1 parts airbench compile resnet18 tutorial tutorial-graphs profile"
for part in $PARTS; do  # a misspelt part would be skipped without a word, and its minutes lost
  [[ " $KNOWN " == *" $part "* ]] || { echo "gpu_check.sh: unknown part '$part'; the parts: $KNOWN" >&2; exit 2; }
done
# say when a part's time limit stopped it (its finished runs are kept in its JSON: bench.py
# rewrites the file after each run, and stops its run in flight on the limit's SIGTERM)
limited() {  # PART LIMIT_S COMMAND...
  local part=$1 limit=$2
  shift 2
  echo "== part $part (limit $limit s) ==" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local status=${PIPESTATUS[0]}
  ((status == 124)) && echo "gpu_check.sh: part $part stopped at its limit of $limit s; its finished runs are kept" | tee -a "$LOG"
  return 0
}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
  nproc
} 2>&1 | tee -a "$LOG"
# where the ~8.5 s before a run's first line went on the H100 (2.6-2.9 s on the 2-core CPU then)
wants startup && limited startup 90 python3 bench/startup.py --repeat 2 --out "$OUT/startup"
# --cuda-graphs must train as eager does: one deterministic epoch each way (the whitening bias's
# gradient computed to the end in both, as graphs do), then every weight compared
graphs_check() {
  for graphs in --no-cuda-graphs --cuda-graphs; do
    python3 -m blitz run --recipe airbench94_muon --data-root "$DATA_ROOT" --epochs 1 --deterministic \
      --optimizer-arg freeze_whiten_bias=false --out "/tmp/blitz-graphs-check-$$$graphs" "$graphs" | grep -E "^(Warm-up|epoch|Warning)"
  done
  python3 bench/same_weights.py "/tmp/blitz-graphs-check-$$--no-cuda-graphs" "/tmp/blitz-graphs-check-$$--cuda-graphs"
}
wants graphs-check && limited graphs-check 80 bash -c "$(declare -f graphs_check); DATA_ROOT='$DATA_ROOT'; graphs_check"
# airbench94_muon (the newer record's methods), five seeds: eager, eager with CUDA graphs, then
# compiled as the recipe compiles (reduce-overhead: CUDA graphs of the compiled model), then in
# PyTorch's default mode, which on the H100 trained no faster than eager
muon() {  # NAME LIMIT_S EXTRA_ARGS
  limited "$1" "$2" python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast --fast-repeat 5 \
    --fast-recipe airbench94_muon --fast-args="$3" --out "$OUT/$1"
}
# (~75 s for five runs eager, ~130 s compiled with a cold first compile)
wants muon && muon muon 110 ""
# (the summary's last column counts the runs that captured graphs: a failed capture only warns)
wants muon-graphs && muon muon-graphs 110 "--cuda-graphs"
# the accuracy question needs more seeds than 0-4: ten more (5-14) with --cuda-graphs, ~2.5 min
wants muon-graphs-more && limited muon-graphs-more 200 python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast \
  --fast-repeat 10 --first-seed 5 --fast-recipe airbench94_muon --fast-args="--cuda-graphs" --out "$OUT/muon-graphs-more"
wants muon-compile && muon muon-compile 200 "--compile"
wants muon-compile-default && muon muon-compile-default 170 "--compile --compile-mode default"
# the whitening layer in fp32 (bf16 costs its faint directions a few percent)
wants muon-stem32 && muon muon-stem32 110 "--model-arg whiten_in_fp32=true"
# the whitening layer's bf16 error and a step with the whitening bias frozen, on the GPU (~20 s)
wants parts && limited parts 60 python3 bench/airbench_parts.py --data-root "$DATA_ROOT" --rounds 20
# the whitening bias's gradient to the end, as before it was frozen: what the freezing saves
wants muon-nofreeze && muon muon-nofreeze 120 "--optimizer-arg freeze_whiten_bias=false"
# the same seeds in fp16 autocast with a gradient scaler: fp16's 11 significand bits, as the
# reference's fp16 network, against bf16's 8
wants muon-fp16 && muon muon-fp16 120 "--precision 16-mixed"
# compiled (PyTorch's default mode, as measured in the twelfth session) without inductor's
# compile-worker pool (started on GPUs, waited for at exit): wall time
wants muon-threads1 && TORCHINDUCTOR_COMPILE_THREADS=1 limited muon-threads1 140 python3 bench/bench.py \
  --data-root "$DATA_ROOT" --only blitz-fast --fast-repeat 3 --fast-recipe airbench94_muon \
  --fast-args="--compile --compile-mode default" --out "$OUT/muon-threads1"
# airbench94, five seeds: accuracy, airbench-style time (CUDA events) and end-to-end wall time
wants airbench && limited airbench 160 python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast \
  --fast-repeat 5 --out "$OUT"
# the same with torch.compile (compilation is warm-up: outside the timed region, inside wall time)
wants compile && limited airbench-compile 150 python3 bench/bench.py --data-root "$DATA_ROOT" --only blitz-fast \
  --fast-repeat 3 --fast-args=--compile --out "$OUT/compile"
# the strategy matrix: cuda / dataparallel / ddp x workload x fp32 / bf16
wants resnet18 && limited strategies-resnet18 220 python3 bench/strategies.py --data-root "$DATA_ROOT" \
  --workloads resnet18 --resnet-epochs 3 --timeout 60 --out "$OUT"
# batch 4 on a GPU is launch-bound, ~1 minute a run: images/s from six runs alone cut at 28 s
# (each reports the steps it logged), accuracy from the six run to the end at once
wants tutorial && limited strategies-tutorial-speed 230 python3 bench/strategies.py --data-root "$DATA_ROOT" \
  --workloads tutorial --tutorial-epochs 2 --timeout 28 --out "$OUT/tutorial-speed"
wants tutorial && limited strategies-tutorial-accuracy 200 python3 bench/strategies.py --data-root "$DATA_ROOT" \
  --workloads tutorial --tutorial-epochs 2 --timeout 150 --jobs 6 --out "$OUT/tutorial-accuracy"
# batch 4 waits on kernel launches most of all: the same 5,000 steps eager, then replayed as
# CUDA graphs (images/s in each epoch line)
tutorial_steps() {  # EXTRA_ARGS
  python3 -m blitz run --recipe tutorial --strategy cuda --data-root "$DATA_ROOT" --epochs 1 --limit-steps 5000 \
    --out "/tmp/blitz-tutorial-graphs-$RANDOM" "$@"
}
wants tutorial-graphs && limited tutorial-graphs 90 bash -c "$(declare -f tutorial_steps); DATA_ROOT='$DATA_ROOT'; \
  tutorial_steps; tutorial_steps --cuda-graphs"
# where an eager run's ~14.6 s of wall time go (2.2 s of it training): imports, CUDA start,
# data, warm-up, report, function by function
wants profile && limited profile 90 python3 bench/profile_run.py --top 45 -- run --recipe airbench94_muon \
  --data-root "$DATA_ROOT" --out "/tmp/blitz-profile-$$"
# one table of the airbench94_muon parts that ran, for docs/benchmarks.md
ran=()
for part in muon muon-graphs muon-graphs-more muon-compile muon-compile-default muon-stem32 muon-nofreeze muon-fp16 muon-threads1; do
  wants "$part" && ls "$OUT/$part"/bench-*.json >/dev/null 2>&1 && ran+=("$OUT/$part")
done
((${#ran[@]})) && python3 bench/summarize.py "${ran[@]}" 2>&1 | tee "$OUT/summary.md"
exit 0
