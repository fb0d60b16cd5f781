#!/usr/bin/env bash
# Prepare .devkit/ (git-ignored) for a device script: wheels and sdists that the device image
# lacks (Python 3.12), a snapshot of the committed tree (without the weights, which travel in the
# tree itself), and the data of the run:
#   bash scripts/device/make_kit.sh pretrain   # MOSES + USPTO SMILES, for scripts/device/pretrain.sh
#   bash scripts/device/make_kit.sh retro      # root-aligned USPTO-50k + rooted test views (RDKit,
#                                              # runs/retro_rooted from `bartsmiles prepare-retro`), for retro.sh
#   bash scripts/device/make_kit.sh attribution  # .devkit-attr/ instead, for scripts/device/attribution.sh:
#       the wheels plus rdkit (without rdkit/Contrib and the type stubs) and captum, fairseq-fixed's sdist
#       cut to its Python packages and the two .pyx files, the first 3,000 MOSES test rows; no snapshot
#       (attribution.sh installs bartsmiles from the tree that travels)
# The tree and .devkit together must stay under the device's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${BARTSMILES_DATA:-../shared/data}"
if [[ "${1:-}" == attribution ]]; then
  # downloads are kept in .devkit/attr-dl (not carried); .devkit-attr/ is what the call carries
  DL=.devkit/attr-dl KIT=.devkit-attr
  grep -qx '/.devkit-attr/' .git/info/exclude 2>/dev/null || echo '/.devkit-attr/' >> .git/info/exclude
  rm -rf "$KIT" && mkdir -p "$DL" "$KIT/wheels" "$KIT/data"
  P=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
     --platform manylinux2014_x86_64 --platform any)
  python3 -m pip download -q --no-deps --only-binary=:all: "${P[@]}" -d "$DL" \
    hydra-core==1.3.2 omegaconf==2.3.0 bitarray==3.12.3 captum==0.9.0 rdkit==2026.9.1
  python3 -m pip download -q --no-deps --no-binary=:all: -d "$DL" antlr4-python3-runtime==4.9.3
  [[ -f "$DL/fairseq_fixed-0.12.3.1.tar.gz" ]] || cp .devkit/wheels/fairseq_fixed-0.12.3.1.tar.gz "$DL/" 2>/dev/null || \
    .venv/bin/python -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$DL" fairseq-fixed==0.12.3.1
  cp "$DL"/hydra_core-1.3.2-*.whl "$DL"/omegaconf-2.3.0-*.whl "$DL"/bitarray-3.12.3-cp312-*.whl "$DL"/captum-0.9.0-*.whl \
     "$DL"/antlr4-python3-runtime-4.9.3.tar.gz "$KIT/wheels/"
  python3 - "$DL" "$KIT/wheels" <<'PYEOF'
import base64, hashlib, io, sys, tarfile, zipfile
from pathlib import Path
dl, wheels = Path(sys.argv[1]), Path(sys.argv[2])
# rdkit: drop rdkit/Contrib (SA/NP score models, 6.5 MB packed) and rdkit-stubs, which nothing imports
src = dl / "rdkit-2026.9.1-cp312-cp312-manylinux_2_28_x86_64.whl"
dropped = ("rdkit/Contrib/", "rdkit-stubs/")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(wheels / src.name, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    for info in zin.infolist():
        if info.filename.startswith(dropped):
            continue
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = [l for l in data.decode().splitlines() if not l.startswith(dropped)]
            data = ("\n".join(lines) + "\n").encode()
        zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
# fairseq-fixed: only the fairseq/ and fairseq_cli/ Python packages (their .py, .pyx, .yaml, .txt, .json),
# without fairseq/examples; the C++/CUDA sources are never built (FAIRSEQ_BUILD=cython)
keep = (".py", ".pyx", ".pyi", ".yaml", ".txt", ".json")
with tarfile.open(dl / "fairseq_fixed-0.12.3.1.tar.gz") as tin, \
        tarfile.open(wheels / "fairseq_fixed-0.12.3.1.tar.gz", "w:gz", compresslevel=9) as tout:
    for m in tin.getmembers():
        parts = m.name.split("/")
        if not m.isfile() or len(parts) < 3 or parts[1] not in ("fairseq", "fairseq_cli") or parts[2] == "examples":
            continue
        if m.name.endswith(keep):
            tout.addfile(m, tin.extractfile(m))
PYEOF
  (zcat "$DATA/pretrain/moses/test.csv.gz" || true) | head -3001 | gzip -9 > "$KIT/data/moses_test_3000.csv.gz"
  ls -l "$KIT"/wheels "$KIT"/data
  du -sb "$KIT"
  exit 0
fi
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
  *) echo "usage: make_kit.sh pretrain|retro|attribution" >&2; exit 2 ;;
esac
git archive --format=tar.gz -o .devkit/bartsmiles-src.tar.gz HEAD -- . ':(exclude)pretrained/*.pt'
du -sh .devkit
