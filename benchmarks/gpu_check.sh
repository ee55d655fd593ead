#!/usr/bin/env bash
# One prepared command for a lent GPU machine (or, with DEVICE=cpu QUICK=1, a short
# rehearsal on the CPU). Runs, in this order, writing everything under $OUT:
#   1. the convolutions compared under vmap (jaxcnn, S = 1 and 64 members),
#   2. the throughput table: the study program (every distinct configuration x S seeds in
#      one program) against torch_reference and torch_tuned (loop and torch.func vmap up to
#      S = 64),
#   3. the whole study's wall time (three studies, 5 seeds x 2 epochs, compile included)
#      against the torch reference's measured cost,
#   4. a 2-epoch real-data accuracy check (regularization, 8 seeds).
# Needs only what that machine has (jax, flax, optax, chex, orbax, torch, matplotlib, numpy,
# scipy, pillow, tqdm) and the data copy carried in data/ (a git-ignored folder):
#   cp ../shared/data/cifar10-jpeg.tar.xz data/      # here, before the run
#   bash benchmarks/gpu_check.sh                      # there; carry: ["data"]
# Each step has its own time limit, so one slow step cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${DEVICE:-gpu}
OUT=${OUT:-runs/gpu_check}
DATA=${DATA:-data/cifar10-jpeg.tar.xz}
export JAXCNN_CACHE=${JAXCNN_CACHE:-$OUT/cache}
mkdir -p "$OUT"
if [[ "${QUICK:-0}" == 1 ]]; then
  CONV_SEEDS=(1 2); SEEDS=(1); STEPS=8; REPEATS=1; TT_MAX=2
  STUDY=(--seeds 2 --epochs 1 --train-examples 640); ACC=(--seeds 2 --epochs 1 --train-examples 2000)
  CONV_LIMIT=900; THR_LIMIT=900; TT64_LIMIT=900; STUDY_LIMIT=1800; ACC_LIMIT=900
else
  CONV_SEEDS=(1 64); SEEDS=(1 8); STEPS=150; REPEATS=3; TT_MAX=64
  STUDY=(--seeds 5 --epochs 2); ACC=(--seeds 8 --epochs 2)
  # Step caps: 110 + 80 + 50 + 150 + 80 = 470 s, inside the 8 minutes of one device call
  # (a step that hits its cap loses only its own output).
  CONV_LIMIT=110; THR_LIMIT=80; TT64_LIMIT=50; STUDY_LIMIT=150; ACC_LIMIT=80
fi
step() {  # step NAME SECONDS COMMAND...: run with a time limit, note the outcome
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s"
}
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  step "1. convolutions under vmap" "$CONV_LIMIT" python3 -m benchmarks.throughput --device "$DEVICE" \
    --seeds "${CONV_SEEDS[@]}" --steps "$STEPS" --repeats "$REPEATS" --strategies vmap \
    --conv-impls patches winograd xla --skip torch_reference torch_tuned \
    --json "$OUT/conv.json" --markdown "$OUT/conv.md"
  step "2. throughput: study program vs torch" "$THR_LIMIT" python3 -m benchmarks.throughput \
    --device "$DEVICE" --seeds "${SEEDS[@]}" --steps "$STEPS" --repeats "$REPEATS" \
    --strategies study --torch-tuned-max-seeds "$TT_MAX" \
    --json "$OUT/throughput.json" --markdown "$OUT/throughput.md" --png "$OUT/throughput.png"
  if [[ "${QUICK:-0}" != 1 ]]; then  # torch_tuned at the study program's member count
    step "2b. torch_tuned at 64 models" "$TT64_LIMIT" python3 -m benchmarks.throughput \
      --device "$DEVICE" --seeds 64 --steps 50 --repeats 1 --skip torch_reference jaxcnn \
      --torch-tuned-max-seeds 64 --json "$OUT/torch_tuned_64.json"
  fi
  step "3. study time" "$STUDY_LIMIT" python3 -m benchmarks.study_time --device "$DEVICE" \
    --data "$DATA" "${STUDY[@]}" --out "$OUT/study" --json "$OUT/study_time.json"
  step "4. real-data accuracy, 2 epochs" "$ACC_LIMIT" python3 -m experiments.regularization \
    --data "$DATA" "${ACC[@]}" --out "$OUT/accuracy" --no-progress --fresh
  cp "$OUT/accuracy/regularization/results.json" "$OUT/accuracy_results.json" 2>/dev/null
} 2>&1 | tee "$OUT/gpu_check.log"
