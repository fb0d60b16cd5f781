#!/usr/bin/env bash
# Prepare .devkit/ (git-ignored) for scripts/device/pretrain.sh: wheels and sdists that the
# device image lacks (Python 3.12), the pretraining corpus, and a snapshot of the committed tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${BARTSMILES_DATA:-../shared/data}"
mkdir -p .devkit/wheels .devkit/data
P=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
   --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: "${P[@]}" -d .devkit/wheels \
  hydra-core==1.3.2 omegaconf==2.3.0 bitarray
python3 -m pip download -q --no-deps --no-binary=:all: -d .devkit/wheels antlr4-python3-runtime==4.9.3
# pip builds fairseq-fixed's metadata even to download it: use the venv, which has torch, numpy and cython
[[ -f .devkit/wheels/fairseq_fixed-0.12.3.1.tar.gz ]] || \
  .venv/bin/python -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .devkit/wheels fairseq-fixed==0.12.3.1  # needs `make setup` first
cp "$DATA/pretrain/moses/train.csv.gz" .devkit/data/moses_train.csv.gz
cp "$DATA/uspto50k/liu2017_split/retrosynthesis-train.smi" .devkit/data/uspto50k_train.smi
(zcat "$DATA/pretrain/moses/test.csv.gz" || true) | tail -n +2 | head -10000 > .devkit/data/moses_valid.smi
git archive --format=tar.gz -o .devkit/bartsmiles-src.tar.gz HEAD
du -sh .devkit
