#!/usr/bin/env bash
# Fine-tune the shipped pretrained model for retrosynthesis on a lent GPU, in one call (issue 13).
#
#   bash scripts/device/retro.sh TOTAL_BUDGET_SECONDS
#
# Needs .devkit/ from `bash scripts/device/make_kit.sh retro` (wheels, the root-aligned USPTO-50k
# pairs of `bartsmiles prepare-retro`, the rooted views of the test products, a snapshot of the
# committed tree).  Steps: install (scripts/device/setup.sh), then scripts/device/retro_device.py:
# train with fairseq until the training share of the budget is spent, exporting the fp16 model to
# $OUT every ~90 s, then beam-search the test views until the budget ends, writing the raw beams
# to $OUT as it goes.  No RDKit on the device: scoring happens back here with
#   python scripts/device/retro_kit.py score DEVICE_OUT
#
# Rehearse on a CPU machine with the venv already built (tiny model, a few hundred pairs):
#   SKIP_DEPS=1 FAIRSEQ_BUILD=none PYTHON=$PWD/.venv/bin/python PRETRAINED= ARCH=bartsmiles_tiny PRECISION=fp32 \
#     MAX_TOKENS=2048 TRAIN_LIMIT=300 TEST_LIMIT=20 OUT=/tmp/devout bash scripts/device/retro.sh 150
set -euo pipefail
BUDGET="${1:-600}"
T0=$(date +%s)
REPO="$(pwd)"
source "$REPO/scripts/device/setup.sh"

LEFT=$(( BUDGET - $(elapsed) ))
log "training and generation in the ${LEFT}s left"
"$PYTHON" "$REPO/scripts/device/retro_device.py" --kit "$KIT/retro" --pretrained "${PRETRAINED-$REPO/pretrained/model.pt}" \
  --out "$OUT" --work "$WORK" --seconds "$LEFT" --arch "${ARCH:-}" --precision "${PRECISION:-fp16}" \
  --max-tokens "${MAX_TOKENS:-32768}" --lr "${LR:-0.0003}" --train-share "${TRAIN_SHARE:-0.72}" \
  --train-limit "${TRAIN_LIMIT:-0}" --test-limit "${TEST_LIMIT:-0}" 2>&1 | tee -a "$OUT/steps.log"
ls -la "$OUT"
log "done"
