#!/usr/bin/env bash
# Equal-compute comparison of the pretraining objectives on a CPU proxy (issue 12, point 3).
#
# Same architecture (bartsmiles_mini: 3+3 layers, d=128), same data order (seed 1), same batches
# (8192-token budget), same schedule, from scratch; one run per objective. Checkpoints every
# 100 updates are kept, and the value curve scores those at 100, 200 and 400 updates (0.8M, 1.6M, 3.2M tokens).
# Resumable: rerun the script and each run continues from its checkpoint_last.pt.
#
#   BARTSMILES_DATA=../shared/data nice -n 5 bash benchmarks/objective_comparison.sh runs/data-bin runs/objective
set -euo pipefail
DATA=${1:-runs/data-bin}
OUT=${2:-runs/objective}
UPDATES=${UPDATES:-400}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(--data "$DATA" --arch bartsmiles_mini --cpu --num-workers 1 --max-tokens 8192 --max-update "$UPDATES"
        --lr 0.001 --warmup-updates 100 --seed 1 --log-interval 20 --save-interval-updates 100
        --keep-interval-updates -1 --validate-interval-updates 100)
run() {  # name, extra flags...
  local name=$1; shift
  mkdir -p "$OUT/$name"
  bartsmiles pretrain "${common[@]}" --save-dir "$OUT/$name" "$@" -- --log-file "$OUT/$name/train.log" \
    > "$OUT/$name/stdout.log" 2>&1
}
if [ "${ONLY:-}" != "descriptors" ]; then run denoising; fi
if [ "${ONLY:-}" != "denoising" ]; then run descriptors --descriptor-loss --descriptor-weight 1.0; fi
