#!/usr/bin/env bash
# One prepared command for a lent GPU machine (or, with DEVICE=cpu QUICK=1, a short
# rehearsal on the CPU). Runs, in this order, writing everything under $OUT:
#   1. the throughput table (jaxcnn S = 1..64 x seed batchings, torch_reference, torch_tuned),
#   2. the whole study's wall time (10 configurations x 5 seeds x 2 epochs) against the
#      torch reference's measured cost,
#   3. a 2-epoch real-data accuracy check (regularization, 8 seeds).
# Needs only what that machine has (jax, flax, optax, chex, orbax, torch, matplotlib, numpy,
# scipy, pillow, tqdm) and the data copy carried in data/ (a git-ignored folder):
#   cp ../shared/data/cifar10-jpeg.tar.xz data/      # here, before the run
#   bash benchmarks/gpu_check.sh                      # there; carry: ["data"]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${DEVICE:-gpu}
OUT=${OUT:-runs/gpu_check}
DATA=${DATA:-data/cifar10-jpeg.tar.xz}
export JAXCNN_CACHE=${JAXCNN_CACHE:-$OUT/cache}
mkdir -p "$OUT"
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=(1 2); STEPS=8; REPEATS=1; STUDY=(--seeds 2 --epochs 1 --train-examples 640)
  ACC=(--seeds 2 --epochs 1 --train-examples 2000); TT_MAX=2
else
  SEEDS=(1 2 4 8 16 32 64); STEPS=150; REPEATS=3; STUDY=(--seeds 5 --epochs 2)
  ACC=(--seeds 8 --epochs 2); TT_MAX=16
fi
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  echo "== 1. throughput"
  python3 -m benchmarks.throughput --device "$DEVICE" --seeds "${SEEDS[@]}" --steps "$STEPS" \
    --repeats "$REPEATS" --torch-tuned-max-seeds "$TT_MAX" --conv-impls xla winograd \
    --json "$OUT/throughput.json" \
    --markdown "$OUT/throughput.md" --png "$OUT/throughput.png"
  echo "== 2. study time"
  python3 -m benchmarks.study_time --device "$DEVICE" --data "$DATA" "${STUDY[@]}" \
    --out "$OUT/study" --json "$OUT/study_time.json"
  echo "== 3. real-data accuracy, 2 epochs"
  python3 -m experiments.regularization --data "$DATA" "${ACC[@]}" --out "$OUT/accuracy" \
    --no-progress --fresh
  cp "$OUT/accuracy/regularization/results.json" "$OUT/accuracy_results.json"
} 2>&1 | tee "$OUT/gpu_check.log"
