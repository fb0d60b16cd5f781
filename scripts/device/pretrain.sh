#!/usr/bin/env bash
# Pretrain the shipped model on a lent GPU in one call (see shared/DEVICE.md).
#
#   bash scripts/device/pretrain.sh TOTAL_BUDGET_SECONDS
#
# Steps: install the carried wheels + build fairseq-fixed against the machine's torch, install
# bartsmiles, binarize the carried corpus with all cores, train bartsmiles_small until the budget
# (minus an export margin) is spent, then write the fp16 weights (no optimizer state) and the
# logs to $OUT.  It stops at the first failing step.
#
# Rehearse on a CPU machine with the venv already built:
#   SKIP_DEPS=1 PYTHON=$PWD/.venv/bin/python ARCH=bartsmiles_tiny DEVICE_FLAGS="--cpu" \
#     MAX_TOKENS=4096 TRAIN_LIMIT=20000 OUT=/tmp/devout bash scripts/device/pretrain.sh 120
set -euo pipefail
BUDGET="${1:-540}"
T0=$(date +%s)
REPO="$(pwd)"
source "$REPO/scripts/device/setup.sh"
DICT="$REPO/pretrained/dict.txt"
ARCH="${ARCH:-bartsmiles_small}"
DEVICE_FLAGS="${DEVICE_FLAGS:---fp16}"
MAX_TOKENS="${MAX_TOKENS:-65536}"
LR="${LR:-0.001}"
WORKERS="${WORKERS:-$(nproc)}"
TRAIN_LIMIT="${TRAIN_LIMIT:-0}"      # 0: whole corpus; else the first N SMILES (rehearsals)
EXPORT_MARGIN="${EXPORT_MARGIN:-70}"

log "binarizing the corpus with $WORKERS workers"
TRAIN_FILES=("$KIT/data/moses_train.csv.gz" "$KIT/data/uspto50k_train.smi")
if [[ "$TRAIN_LIMIT" != "0" ]]; then
  (zcat "$KIT/data/moses_train.csv.gz" || true) | head -n "$((TRAIN_LIMIT + 1))" | tail -n +2 > "$WORK/train_head.smi"
  TRAIN_FILES=("$WORK/train_head.smi")
fi
"${BARTSMILES[@]}" preprocess --train "${TRAIN_FILES[@]}" --valid "$KIT/data/moses_valid.smi" \
  --vocab "$DICT" --dest "$WORK/data-bin" --workers "$WORKERS" > "$OUT/preprocess.json"
cat "$OUT/preprocess.json"

SPENT=$(elapsed)
TRAIN_SECONDS=$(( BUDGET - SPENT - EXPORT_MARGIN ))
if (( TRAIN_SECONDS < 30 )); then
  log "only ${TRAIN_SECONDS}s left for training: stopping"; exit 3
fi
HOURS=$("$PYTHON" -c "print(round($TRAIN_SECONDS / 3600, 5))")
log "training $ARCH for ${TRAIN_SECONDS}s (--stop-time-hours $HOURS)"
"${BARTSMILES[@]}" pretrain --data "$WORK/data-bin" --save-dir "$WORK/ckpt" --arch "$ARCH" \
  --max-update 1000000 --stop-time-hours "$HOURS" --lr "$LR" --warmup-updates "${WARMUP:-500}" \
  --max-tokens "$MAX_TOKENS" --num-workers "$(( WORKERS > 12 ? 12 : WORKERS ))" --seed 1 \
  --log-interval 50 --save-interval-updates 1000000 --validate-interval-updates 500 \
  --log-file "$OUT/train.log" -- $DEVICE_FLAGS > "$OUT/stdout.log" 2>&1 &
TRAIN_PID=$!
# Session 1 lost its model here: after "done training", Python 3.12 hung in DataLoader worker
# teardown ("AssertionError: can only test a child process") and never returned.  So we wait for
# fairseq's own end-of-training line (or a hard deadline) and then stop the process ourselves.
DEADLINE=$(( $(date +%s) + TRAIN_SECONDS + 120 ))
while kill -0 "$TRAIN_PID" 2>/dev/null; do
  if grep -q "done training in" "$OUT/stdout.log" 2>/dev/null; then sleep 5; break; fi
  if (( $(date +%s) > DEADLINE )); then log "training overran its deadline: stopping it"; break; fi
  sleep 2
done
kill -9 "$TRAIN_PID" 2>/dev/null || true
wait "$TRAIN_PID" 2>/dev/null || true
grep -v "'_name'" "$OUT/stdout.log" | tail -5
[[ -f "$WORK/ckpt/checkpoint_last.pt" ]] || { log "no checkpoint was written"; grep -v "'_name'" "$OUT/stdout.log" | tail -40; exit 4; }

log "exporting"
"$PYTHON" - "$WORK/ckpt/checkpoint_last.pt" "$OUT/model_fp16.pt" <<'PYEOF'
import argparse, sys, torch
src, dst = sys.argv[1], sys.argv[2]
with torch.serialization.safe_globals([argparse.Namespace]):
    state = torch.load(src, map_location="cpu", weights_only=True)
keep = {k: state[k] for k in ("cfg", "args", "optimizer_history") if k in state}
keep["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model"].items()}
keep["extra_state"] = {k: v for k, v in state.get("extra_state", {}).items() if k in ("epoch", "num_updates", "train_iterator", "previous_training_time")}
n = sum(v.numel() for v in state["model"].values())
print("parameters (incl. buffers):", n, "num_updates:", state.get("optimizer_history", [{}])[-1].get("num_updates"))
torch.save(keep, dst)
PYEOF
ls -la "$OUT"
log "done"
