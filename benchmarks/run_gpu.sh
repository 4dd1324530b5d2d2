#!/usr/bin/env bash
# For whoever has a CUDA GPU: the CUDA-marked tests and the GPU benchmarks, in under eight minutes.
#
#     bash benchmarks/run_gpu.sh            (from anywhere; uses .venv/bin/python, or $PYTHON)
#
# Runs, each under its own time limit so the whole stays below eight minutes (issue 15):
#   1. pytest -m cuda                     tests/test_cuda.py and the CUDA-marked unit tests
#   2. bench_loss.py --device cuda        AdaKD loss vs plain KD: time and peak memory, bf16 and fp32
#   3. bench_hidden_loss.py --device cuda the loss from hidden states vs logits (and TRL's, when installed), bf16
#   4. bench_step.py --set device=cuda    step time ratios ce / KD / AdaKD (logits and hidden states), demo shapes
#   5. bench_probes.py --device cuda      probe overhead at the default probe interval
#   6. bench_explorer.py --device cuda    token-explorer latency
#   7. bench_trl.py --set device=cuda     the project's loop vs TRL's DistillationTrainer, quick preset, bf16
# and prints what it ran, how long each part took and its exit code. Paste the output into
# benchmarks/README.md (the table says which machine each figure came from).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
STARTED=$(date +%s)
SUMMARY=()

BUDGET=470  # seconds for everything: each part's limit is cut to what is left of it

run() {  # run LIMIT_SECONDS COMMAND...: one part, bounded, with its time and exit code recorded
    local limit=$1
    shift
    local left=$(( BUDGET - ($(date +%s) - STARTED) ))
    if [ "$left" -lt 10 ]; then
        echo "=== skipped (time budget spent): $*"
        SUMMARY+=("skipped          $*")
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== [$(date +%H:%M:%S)] $* (limit ${limit}s)"
    local start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    local took=$(( $(date +%s) - start ))
    [ $rc -eq 124 ] && echo "=== timed out after ${limit}s"
    SUMMARY+=("$(printf 'exit %3d  %4ds  %s' "$rc" "$took" "$*")")
}

echo "=== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || { echo "nvidia-smi not found: this script needs a CUDA GPU"; exit 1; }
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0)) if torch.cuda.is_available() else sys.exit('torch sees no CUDA device')" \
    || exit 1
# the default teacher is converted once into the cache (about 20 s) before anything is timed
run 60 "$PY" -m adakd.models.assets

run 100 "$PY" -m pytest -m cuda -q -p no:randomly tests/
run 45 "$PY" benchmarks/bench_loss.py --device cuda --repeats 20
run 45 "$PY" benchmarks/bench_loss.py --device cuda --repeats 10 --dtype float32
run 90 "$PY" benchmarks/bench_hidden_loss.py --device cuda --repeats 10 --dtype bfloat16
run 60 "$PY" benchmarks/bench_step.py --iters 10 --warmup 3 --set device=cuda
run 45 "$PY" benchmarks/bench_probes.py --device cuda --repeats 5
run 45 "$PY" benchmarks/bench_explorer.py --device cuda --repeats 5
run 60 "$PY" benchmarks/bench_trl.py --steps 12 --rounds 2 --set device=cuda dtype=auto

echo
echo "=== what ran (total $(( $(date +%s) - STARTED ))s)"
printf '%s\n' "${SUMMARY[@]}"
