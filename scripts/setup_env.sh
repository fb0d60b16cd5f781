#!/usr/bin/env bash
# Build a working virtual environment for bartsmiles from nothing.
#
# Why a script and not a bare `pip install .`:
#   * torch must be pinned (an unpinned torch pulls a multi-GB CUDA build);
#   * fairseq-fixed must be compiled with --no-build-isolation against that torch;
#   * fairseq-fixed declares torchaudio, which cannot load here and breaks other imports,
#     so fairseq is installed with --no-deps and its real needs are listed by hand.
# Re-running is quick: a stamp holding the hash of the inputs skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.bartsmiles-setup"
HASH="$(cat setup.cfg pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
[[ -x "$PY" ]] || python3 -m venv "$VENV"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
echo "setup: [1/4] torch (CPU wheel), numpy<2 and build tools"
"${PIP[@]}" "torch==2.13.0" "numpy<2" "cython" "setuptools>=64" "wheel"
if ! "$PY" -c "import fairseq" 2>/dev/null; then
  echo "setup: [2/4] compiling fairseq-fixed==0.12.3.1 (takes a few minutes)"
  "${PIP[@]}" --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
else
  echo "setup: [2/4] fairseq already installed"
fi
echo "setup: [3/4] fairseq's own needs, without torchaudio"
echo "       (pip may print 'ERROR: ... fairseq-fixed requires torchaudio': expected, torchaudio is left out on purpose)"
"${PIP[@]}" "hydra-core==1.3.2" "omegaconf==2.3.0" bitarray regex sacrebleu cffi packaging
echo "setup: [4/4] bartsmiles (editable) and its needs"
# --no-deps for the project itself would skip its needs; instead we install the needs from
# setup.cfg, minus fairseq-fixed, whose torchaudio we refuse.
"$PY" - <<'PYEOF' > "$VENV/bartsmiles-requirements.txt"
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
extras = cfg["options.extras_require"]
for name in ("viz", "test", "export", "serve", "retro"):  # export, serve, retro: so that their tests run, not skip
    reqs += [r.strip() for r in extras[name].splitlines() if r.strip()]
print("\n".join(r for r in reqs if not r.startswith("fairseq")))
PYEOF
"${PIP[@]}" -r "$VENV/bartsmiles-requirements.txt"
"${PIP[@]}" --no-build-isolation --no-deps -e .
"$PY" -c "import torch, fairseq, rdkit, captum, bartsmiles; print('setup: ok, torch', torch.__version__, 'fairseq', fairseq.__version__, 'bartsmiles', bartsmiles.__version__)"
echo "$HASH" > "$STAMP"
