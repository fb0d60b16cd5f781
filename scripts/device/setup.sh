# Sourced by the device scripts (pretrain.sh, retro.sh): report the machine, install the carried
# wheels, build fairseq-fixed against the machine's torch, and install bartsmiles from the kit's
# snapshot of the committed tree.  Expects REPO and T0 (the start, in seconds); KIT, SITE, OUT,
# WORK and PYTHON may be set by the caller.  Defines `log`; leaves the shell in $WORK with
# BARTSMILES=(python -m bartsmiles.cli) set.
KIT="${KIT:-$REPO/.devkit}"
SITE="${SITE:-/tmp/site}"
OUT="${OUT:-/tmp/devout}"
WORK="${WORK:-/tmp/bartsmiles-work}"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT" "$WORK"
elapsed() { echo $(( $(date +%s) - T0 )); }
log() { echo "[device +$(elapsed)s] $*" | tee -a "$OUT/steps.log"; }

log "machine: $(uname -m), $(nproc) cores"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$OUT/steps.log" || true
"$PYTHON" -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/steps.log"

mkdir -p "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
PIP=("$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$SITE")
if [[ -z "${SKIP_DEPS:-}" ]]; then
  log "installing carried wheels"
  "${PIP[@]}" "$KIT"/wheels/*.whl
  "${PIP[@]}" --no-build-isolation "$KIT"/wheels/antlr4-python3-runtime-*.tar.gz
fi
if [[ "${FAIRSEQ_BUILD:-full}" == "full" ]]; then
  log "building fairseq-fixed against torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
  env -u CUDA_HOME MAX_JOBS="$(nproc)" "${PIP[@]}" --no-build-isolation "$KIT"/wheels/fairseq_fixed-*.tar.gz
elif [[ "${FAIRSEQ_BUILD}" == "cython" ]]; then
  # Only the two Cython modules our path needs (batching, token blocks): ~15 s instead of the
  # ~155 s of the full build, whose C++ torch extensions (libbase, libnat, ...) we never call.
  log "building fairseq-fixed's Cython modules only"
  rm -rf "$WORK/fsrc" && mkdir -p "$WORK/fsrc" && tar xzf "$KIT"/wheels/fairseq_fixed-*.tar.gz -C "$WORK/fsrc"
  FSRC=$(echo "$WORK"/fsrc/fairseq_fixed-*)
  (cd "$FSRC" && "$PYTHON" - <<'PYEOF'
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

exts = [Extension(f"fairseq.data.{name}", [f"fairseq/data/{name}.pyx"], language="c++",
                  include_dirs=[numpy.get_include()], extra_compile_args=["-std=c++11", "-O3"])
        for name in ("data_utils_fast", "token_block_utils_fast")]
setup(name="fairseq-cython", ext_modules=cythonize(exts, language_level=3, quiet=True),
      script_args=["-q", "build_ext", "--inplace", "-j", "4"])
PYEOF
  )
  cp -r "$FSRC/fairseq" "$FSRC/fairseq_cli" "$SITE/"
fi
# bartsmiles itself comes from a snapshot of the committed tree (scripts/device/make_kit.sh), so
# edits in progress in the working tree cannot break the run.
log "installing bartsmiles from $KIT/bartsmiles-src.tar.gz"
rm -rf "$WORK/src" && mkdir -p "$WORK/src" && tar xzf "$KIT/bartsmiles-src.tar.gz" -C "$WORK/src"
"${PIP[@]}" --no-build-isolation "$WORK/src"
# run from the work folder: from the repo root, `python -m` would import the unmapped source tree
cd "$WORK"
BARTSMILES=("$PYTHON" -m bartsmiles.cli)
"$PYTHON" -c "import fairseq, bartsmiles.tasks; print('fairseq', fairseq.__version__, fairseq.__file__, 'plugin', bartsmiles.tasks.__file__)" 2>&1 | grep -v tensorboardX | tee -a "$OUT/steps.log"

