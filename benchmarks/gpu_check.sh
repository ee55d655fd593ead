#!/usr/bin/env bash
# One prepared command for a lent GPU machine (or, with DEVICE=cpu QUICK=1, a short
# rehearsal on the CPU). Runs, in this order, writing everything under $OUT:
#   0. the data decoded once into the cache (so step 1 times training, as the README does);
#   1. the main job as the README's quick start runs it (three studies, 5 seeds x 2
#      epochs, and the report), timed as a whole process;
#   2. the same command with `--seeds auto` on the same --out: it keeps the 5 finished
#      seeds as its first round and adds rounds until every comparison is decided or
#      the budget (--max-seeds, default 30) is spent; its results (no checkpoints) come
#      back as results.tar.gz;
#   3. the throughput table: the study program (every distinct configuration x S seeds
#      in one program) against torch_reference and torch_tuned;
#   4. the convolutions compared under vmap (S = 64 members).
# Needs only what that machine has (jax, flax, optax, chex, orbax, torch, matplotlib,
# numpy, scipy, pillow, tqdm) and the data copy carried in data/ (a git-ignored folder):
#   cp ../shared/data/cifar10-jpeg.tar.xz data/      # here, before the run
#   bash benchmarks/gpu_check.sh                      # there; carry: ["data"]
# Each step has its own time limit (SIGINT first, so a study saves what finished), so
# one slow step cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-gpu}
OUT=${OUT:-runs/gpu_check}
DATA=${DATA:-data/cifar10-jpeg.tar.xz}
RUNS=${RUNS:-/tmp/jaxcnn_gpu_check}   # the studies' --out (checkpoints stay there)
export JAXCNN_CACHE=${JAXCNN_CACHE:-$RUNS/cache}
mkdir -p "$OUT" "$RUNS"
if [[ "${QUICK:-0}" == 1 ]]; then
  SIZE=(--epochs 1 --train-examples 300 --val-size 100 --max-seeds 6 --first-round 2
        --round-size 2)
  FIXED=(--seeds 2); SEEDS=(1); STEPS=4; REPEATS=1; TT_MAX=1; CONV_SEEDS=(2)
  MAIN_LIMIT=900; AUTO_LIMIT=900; THR_LIMIT=600; CONV_LIMIT=600
else
  SIZE=(--epochs 2); FIXED=(--seeds 5); SEEDS=(1 8); STEPS=100; REPEATS=3; TT_MAX=8
  CONV_SEEDS=(64)
  # Step caps: 60 + 110 + 240 + 75 + 45 = 530 s, inside the 8 minutes of one device call.
  MAIN_LIMIT=110; AUTO_LIMIT=240; THR_LIMIT=75; CONV_LIMIT=45
fi
step() {  # step NAME SECONDS COMMAND...: run with a time limit, note the outcome
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout -s INT -k 20 "$limit" "$@"; local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s"
}
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())"
  step "0. decode the data once (cached for the steps below)" 60 python3 -c "import sys, time
from jaxcnn.data import load_dataset
t = time.perf_counter(); ds = load_dataset(sys.argv[1], show_progress=False)
print('decoded', ds.train_images.shape, ds.test_images.shape, f'in {time.perf_counter() - t:.1f} s')" "$DATA"
  step "1. main job: 5 seeds x 2 epochs" "$MAIN_LIMIT" python3 -m experiments.all \
    --data "$DATA" "${FIXED[@]}" "${SIZE[@]}" --out "$RUNS/study" --no-progress
  step "2. main job with --seeds auto" "$AUTO_LIMIT" python3 -m experiments.all \
    --data "$DATA" --seeds auto "${SIZE[@]}" --out "$RUNS/study" --no-progress
  tar -czf "$OUT/results.tar.gz" -C "$RUNS/study" --exclude=checkpoints --exclude=params --exclude=tb \
    --exclude=.jaxcnn.lock . && ls -l "$OUT/results.tar.gz"
  step "3. throughput: study program vs torch" "$THR_LIMIT" python3 -m benchmarks.throughput \
    --device "$DEVICE" --seeds "${SEEDS[@]}" --steps "$STEPS" --repeats "$REPEATS" \
    --strategies study --torch-tuned-max-seeds "$TT_MAX" \
    --json "$OUT/throughput.json" --markdown "$OUT/throughput.md" --png "$OUT/throughput.png"
  step "4. convolutions under vmap" "$CONV_LIMIT" python3 -m benchmarks.throughput \
    --device "$DEVICE" --seeds "${CONV_SEEDS[@]}" --steps "$STEPS" --repeats 2 \
    --strategies vmap --conv-impls patches winograd xla --skip torch_reference torch_tuned \
    --json "$OUT/conv.json" --markdown "$OUT/conv.md"
} 2>&1 | tee "$OUT/gpu_check.log"
