#!/usr/bin/env bash
# PARITY.md's commands in one call: jaxcnn --torch-parity (the three studies, seeds 0-2,
# 2 epochs, the JPEG copy) and the seed's torch loop for the seven distinct torch settings
# (run side by side: each is one small model, far from filling a GPU). Writes under $OUT:
# parity.tar.gz (jaxcnn's results.json files and the torch JSONs) and parity_check.log;
# `python -m benchmarks.parity_table` turns them into PARITY.md's table.
#   cp ../shared/data/cifar10-jpeg.tar.xz data/      # here, before the run
#   bash benchmarks/parity_check.sh                   # there; carry: ["data"]
# DEVICE=cpu runs it on the CPU (about 2 hours on 2 cores: the torch runs then share them).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-gpu}
OUT=${OUT:-runs/parity_check}
DATA=${DATA:-data/cifar10-jpeg.tar.xz}
RUNS=${RUNS:-/tmp/jaxcnn_parity_check}
LIMIT=${LIMIT:-240}
export JAXCNN_CACHE=${JAXCNN_CACHE:-$RUNS/cache}
mkdir -p "$OUT" "$RUNS/torch"
SEEDS=(0 1 2)
read -r -a EXTRA <<< "${EXTRA:-}"   # e.g. EXTRA="--train-examples 200" for a rehearsal
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  start=$SECONDS
  timeout -s INT -k 20 "$LIMIT" python3 -m experiments.all --torch-parity --data "$DATA" \
    --seeds "${#SEEDS[@]}" --epochs 2 ${EXTRA[@]+"${EXTRA[@]}"} --out "$RUNS/jaxcnn" --no-progress
  echo "== jaxcnn --torch-parity: exit $? after $((SECONDS - start)) s"
  start=$SECONDS
  declare -A TORCH=([default]="" [xavier]="--init xavier" [kaiming]="--init kaiming"
                    [l2]="--weight-decay 0.003" [dropout]="--dropout"
                    [exponential]="--scheduler exponential" [cyclic]="--scheduler cyclic")
  for name in "${!TORCH[@]}"; do
    # shellcheck disable=SC2086  # the flags are words
    timeout -k 20 "$LIMIT" python3 -m benchmarks.torch_reference --data "$DATA" ${TORCH[$name]} \
      --seeds "${SEEDS[@]}" --epochs 2 ${EXTRA[@]+"${EXTRA[@]}"} --device "$DEVICE" --threads 2 \
      --json "$RUNS/torch/$name.json" > "$RUNS/torch/$name.log" 2>&1 &
  done
  wait
  echo "== torch loop, seven settings side by side: $((SECONDS - start)) s"
  tail -n 3 "$RUNS"/torch/*.log
  tar -czf "$OUT/parity.tar.gz" -C "$RUNS" torch \
    $(cd "$RUNS" && ls jaxcnn/*/results.json 2>/dev/null) && ls -l "$OUT/parity.tar.gz"
} 2>&1 | tee "$OUT/parity_check.log"
