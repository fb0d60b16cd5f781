#!/usr/bin/env bash
# The long CPU run of issue 12: the shipped model continued with denoising + descriptors.
#
#   bash benchmarks/long_pretraining.sh            # from the repository root, in the background:
#   nohup bash benchmarks/long_pretraining.sh > runs/pretrain_desc/stdout.log 2>&1 &
#
# Resumable across sessions: a rerun continues from runs/pretrain_desc/checkpoint_last.pt (the
# --init-from weights are used only when that file does not exist). Needs runs/data-bin from the
# README's preprocess command; the descriptor cache is built there on first use (32 min on 2 cores).
# OMP_NUM_THREADS=1 is faster while other jobs share the 2 cores; 2 when it runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/pretrain_desc
exec env OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} nice -n 3 .venv/bin/bartsmiles pretrain --data runs/data-bin \
  --save-dir runs/pretrain_desc --arch bartsmiles_small --cpu \
  --init-from pretrained --descriptor-loss --descriptor-weight 1.0 --lr 0.0003 --warmup-updates 100 \
  --max-tokens 8192 --num-workers 1 --seed 3 --max-update 100000 --log-interval 10 \
  --save-interval-updates 100 --keep-interval-updates -1 --validate-interval-updates 100 \
  -- --log-file runs/pretrain_desc/train.log
