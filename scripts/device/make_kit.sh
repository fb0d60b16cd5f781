#!/usr/bin/env bash
# Prepare .devkit/ (git-ignored) for a device script: wheels and sdists that the device image
# lacks (Python 3.12), a snapshot of the committed tree (without the weights, which travel in the
# tree itself), and the data of the run:
#   bash scripts/device/make_kit.sh pretrain   # MOSES + USPTO SMILES, for scripts/device/pretrain.sh
#   bash scripts/device/make_kit.sh retro      # root-aligned USPTO-50k + rooted test views (RDKit,
#                                              # runs/retro_rooted from `bartsmiles prepare-retro`), for retro.sh
# The tree and .devkit together must stay under the device's 64 MiB.
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
case "${1:-pretrain}" in
  pretrain)
    cp "$DATA/pretrain/moses/train.csv.gz" .devkit/data/moses_train.csv.gz
    cp "$DATA/uspto50k/liu2017_split/retrosynthesis-train.smi" .devkit/data/uspto50k_train.smi
    (zcat "$DATA/pretrain/moses/test.csv.gz" || true) | tail -n +2 | head -10000 > .devkit/data/moses_valid.smi
    rm -rf .devkit/retro ;;
  retro)
    rm -rf .devkit/data
    .venv/bin/python scripts/device/retro_kit.py prepare ;;
  *) echo "usage: make_kit.sh pretrain|retro" >&2; exit 2 ;;
esac
git archive --format=tar.gz -o .devkit/bartsmiles-src.tar.gz HEAD -- . ':(exclude)pretrained/*.pt'
du -sh .devkit
