#!/usr/bin/env bash
# The GPU checks that gpu_check.sh leaves out, in one call (about 5 minutes on an H200):
#   1. determinism: one small synthetic study run twice, with and without --deterministic,
#      and every recorded number compared between the two runs of each;
#   2. the notebook's protocol settled: `experiments.all --torch-parity --seeds auto` on
#      the JPEG copy (its results, no checkpoints, come back as parity_auto.tar.gz).
#   cp ../shared/data/cifar10-jpeg.tar.xz data/      # here, before the run
#   bash benchmarks/gpu_followup.sh                   # there; carry: ["data"]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu_followup}
DATA=${DATA:-data/cifar10-jpeg.tar.xz}
RUNS=${RUNS:-/tmp/jaxcnn_gpu_followup}
PARITY_LIMIT=${PARITY_LIMIT:-190}
export JAXCNN_CACHE=${JAXCNN_CACHE:-$RUNS/cache}
mkdir -p "$OUT" "$RUNS"
read -r -a SMALL <<< "${SMALL:---data synthetic --seeds 3 --epochs 2 --train-examples 4000 --no-progress}"
{
  start=$SECONDS
  for flag in "" --deterministic; do
    for run in a b; do
      # shellcheck disable=SC2086  # an empty flag is no word
      timeout -k 10 60 python3 -m experiments.regularization "${SMALL[@]}" $flag \
        --out "$RUNS/det${flag}/$run" > "$RUNS/det${flag}_$run.log" 2>&1 || echo "run $flag $run failed"
    done
    python3 - "$RUNS/det${flag}" "${flag:-default}" <<'EOF'
import json, sys
from pathlib import Path
root, label = Path(sys.argv[1]), sys.argv[2]
a, b = (json.loads((root / r / "regularization" / "results.json").read_text())["configs"]
        for r in "ab")
same = differ = 0
for name in a:
    for x, y in zip(a[name]["seeds"], b[name]["seeds"]):
        for key in ("test_accuracy", "test_loss"):
            same, differ = (same + 1, differ) if x[key] == y[key] else (same, differ + 1)
        for key, curve in x["history"].items():
            same, differ = ((same + 1, differ) if curve == y["history"][key]
                            else (same, differ + 1))
print(f"determinism ({label}): {same} recorded numbers and curves equal, {differ} differ "
      "between two runs of one command")
EOF
  done
  echo "== determinism: $((SECONDS - start)) s"
  start=$SECONDS
  timeout -s INT -k 20 "$PARITY_LIMIT" python3 -m experiments.all --torch-parity --data "$DATA" \
    --seeds auto --epochs 2 --out "$RUNS/parity" --no-progress
  echo "== torch parity, --seeds auto: exit $? after $((SECONDS - start)) s"
  tar -czf "$OUT/parity_auto.tar.gz" -C "$RUNS/parity" --exclude=checkpoints --exclude=params \
    --exclude=tb --exclude=.jaxcnn.lock . && ls -l "$OUT/parity_auto.tar.gz"
} 2>&1 | tee "$OUT/gpu_followup.log"
