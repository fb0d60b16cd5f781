#!/usr/bin/env bash
# How fast the attribution methods run on a lent GPU, and whether its scores agree with the CPU's,
# in one call:
#
#   bash scripts/device/attribution.sh BUDGET_SECONDS      # e.g. 400: every step is cut to fit it
#
# Kit: `bash scripts/device/make_kit.sh attribution` builds .devkit-attr/ (git-ignored, ~27 MB: the
# wheels the image lacks -- rdkit without Contrib, captum, hydra-core, omegaconf, antlr4, bitarray --,
# fairseq-fixed's sdist cut to its Python packages, the first 3,000 MOSES test rows).  The call
# carries [".devkit-attr"]; the tree travels without pretrained/retro/model.pt (move it out first:
# tree ~25.5 MB + kit ~26.6 MB, under the 64 MiB).  bartsmiles is installed from the tree as it
# travelled (uncommitted edits included), pretrained/model.pt is the fine-tuning start.
#
# Steps 2-6 each run under `timeout`, cut to the budget left, and write into $OUT when they end
# (6 files come back, 7 if the call is cut while a JSON is being rewritten; steps.log has all output):
#   1. install (~45 s, no timeout: it is sourced): scripts/device/setup.sh with FAIRSEQ_BUILD=cython
#   2. speed_cuda/attribution_speed.json: benchmarks/attribution_speed.py --device cuda on N_MOL (1,000)
#      MOSES molecules: gradient_x_input(_bf16), edit_occlusion(_fp32, _full_decoder), edit_gradient(_fp32), ecfp_rf
#   3. agreement.json: scripts/device/attribution_device.py agreement, N_AGREE (100) molecules, the
#      speed run's checkpoint: CPU fp32 against the GPU in fp32, default precision and bf16
#   4. speed_cuda_slow/attribution_speed.json: mask_occlusion on N_MOL, ig and shapley on N_SLOW (50)
#      molecules (a second benchmark run, its own 1-epoch fine-tune: the benchmark writes its JSON at
#      the end only, so the slower methods cannot cost the numbers of step 2)
#   5. batch_sweep.json: edit_occlusion and gradient_x_input at larger batch sizes on the GPU
#   6. speed_cpu16/attribution_speed.json: the same machine's CPU, 16 torch threads, N_CPU (200)
#      molecules, edit_occlusion, edit_gradient, gradient_x_input, ecfp_rf
#
# Rehearse on a CPU machine with the venv already built (no installs, tiny sizes; FAIRSEQ_BUILD=cython
# also works there and builds the carried, cut fairseq with the venv's Cython):
#   SKIP_DEPS=1 FAIRSEQ_BUILD=none PYTHON=$PWD/.venv/bin/python DEVICE=cpu N_MOL=30 N_SLOW=4 N_AGREE=10 \
#     N_SWEEP=20 N_CPU=20 N_TRAIN=40 CPU_THREADS=2 CAP_SCALE=4 OUT=/tmp/devout_attr \
#     nice bash scripts/device/attribution.sh 1800
set -euo pipefail
BUDGET="${1:-400}"
T0=$(date +%s)
REPO="$(pwd)"
OUT="${OUT:-/tmp/devout_attr}"
WORK="${WORK:-/tmp/bartsmiles-attr}"
ATTR_KIT="${ATTR_KIT:-$REPO/.devkit-attr}"
DEVICE="${DEVICE:-cuda}"
N_MOL="${N_MOL:-1000}" N_SLOW="${N_SLOW:-50}" N_AGREE="${N_AGREE:-100}" N_SWEEP="${N_SWEEP:-500}"
N_CPU="${N_CPU:-200}" CPU_THREADS="${CPU_THREADS:-16}" N_TRAIN="${N_TRAIN:-400}"
CAP_SCALE="${CAP_SCALE:-1}"  # multiplies each step's cap (a slow rehearsal machine)
SITE="${SITE:-$WORK/site}"
RESERVE=25  # seconds kept for the summary at the end (a step's timeout may overrun by its 10 s -k)
export FAIRSEQ_BUILD="${FAIRSEQ_BUILD:-cython}"
rm -rf "$WORK" && mkdir -p "$OUT" "$WORK/kit"

# setup.sh's kit: the carried wheels, and the tree that travelled as its "snapshot" (without weights)
KIT="$WORK/kit"
ln -s "$ATTR_KIT/wheels" "$KIT/wheels"
tar czf "$KIT/bartsmiles-src.tar.gz" -C "$REPO" --exclude=__pycache__ --exclude='pretrained/*.pt' \
  --exclude=pretrained/retro bartsmiles tasks attribution pretrained setup.cfg pyproject.toml README.md
source "$REPO/scripts/device/setup.sh"   # logs the machine, installs; leaves us in $WORK
log "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB"
"$PYTHON" -c "import rdkit, captum, torch; print('rdkit', rdkit.__version__, 'captum', captum.__version__, 'cpu capability', torch.backends.cpu.get_cpu_capability())" 2>&1 | tee -a "$OUT/steps.log"
log "installed in $(elapsed)s"
set +e

SUMMARY=()
left() { echo $(( BUDGET - $(elapsed) )); }
# step NAME MAX_SECONDS COMMAND...: COMMAND under `timeout`, cut to the budget left; output into steps.log
step() {
  local name=$1 secs=$(( $2 * CAP_SCALE )); shift 2
  local room=$(( $(left) - RESERVE ))
  (( secs > room )) && secs=$room
  if (( secs < 20 )); then log "SKIP $name: $(left)s left"; SUMMARY+=("$name=skipped"); return 1; fi
  log "START $name (timeout ${secs}s)"
  timeout -k 10 "$secs" "$@" 2>&1 | grep --line-buffered -v -e tensorboardX -e '^$' | tee -a "$OUT/steps.log"
  local rc=${PIPESTATUS[0]}
  log "END $name rc=$rc"
  SUMMARY+=("$name=rc$rc")
  return "$rc"
}
checkpoint() {  # the first fine-tuned checkpoint a speed run left
  local d
  for d in speed_cuda speed_cuda_slow speed_cpu16; do
    [[ -f "$WORK/$d/run/checkpoint_best.pt" ]] && { echo "$WORK/$d/run/checkpoint_best.pt"; return 0; }
  done
  return 1
}
MOSES="$ATTR_KIT/data/moses_test_3000.csv.gz"
SPEED=("$PYTHON" "$REPO/benchmarks/attribution_speed.py" --moses "$MOSES" --pretrained "$REPO/pretrained" --n-train "$N_TRAIN")
DRIVER=("$PYTHON" "$REPO/scripts/device/attribution_device.py")
agree() {
  local ckpt
  ckpt=$(checkpoint) || { log "no checkpoint yet for the agreement check"; return 1; }
  step agreement 90 "${DRIVER[@]}" agreement --checkpoint "$ckpt" --moses "$MOSES" --n "$N_AGREE" \
    --device "$DEVICE" --threads "$CPU_THREADS" --json "$OUT/agreement.json"
  return 0
}

step speed_cuda 120 "${SPEED[@]}" --device "$DEVICE" --n-molecules "$N_MOL" \
  --runs gradient_x_input,gradient_x_input_bf16,edit_occlusion,edit_occlusion_fp32,edit_occlusion_full_decoder,edit_gradient,edit_gradient_fp32,ecfp_rf \
  --work-dir "$WORK/speed_cuda" --out "$OUT/speed_cuda"
agree; AGREED=$?
step speed_cuda_slow 120 "${SPEED[@]}" --device "$DEVICE" --n-molecules "$N_MOL" --n-slow "$N_SLOW" \
  --runs mask_occlusion,ig,shapley --work-dir "$WORK/speed_cuda_slow" --out "$OUT/speed_cuda_slow"
(( AGREED == 0 )) || { agree; AGREED=$?; }
if CKPT=$(checkpoint); then
  step batch_sweep 80 "${DRIVER[@]}" sweep --checkpoint "$CKPT" --moses "$MOSES" --n "$N_SWEEP" --device "$DEVICE" \
    --sizes "edit_occlusion:256,1024/32768,4096/131072;gradient_x_input:256,1024/32768" --json "$OUT/batch_sweep.json"
fi
OMP_NUM_THREADS="$CPU_THREADS" step speed_cpu16 120 "${SPEED[@]}" --device cpu --n-molecules "$N_CPU" \
  --runs gradient_x_input,edit_occlusion,edit_gradient,ecfp_rf --work-dir "$WORK/speed_cpu16" --out "$OUT/speed_cpu16"
(( AGREED == 0 )) || agree

rm -f "$OUT"/*.tmp
timeout 10 "$PYTHON" - "$OUT" <<'PYEOF' 2>&1 | tee -a "$OUT/steps.log"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for f in sorted(out.glob("speed_*/attribution_speed.json")):
    r = json.loads(f.read_text())
    print(f.parent.name, r["environment"], ", ".join(f"{k} {v['molecules_per_second']}/s" for k, v in r["runs"].items()))
if (out / "agreement.json").is_file():
    for m, e in json.loads((out / "agreement.json").read_text())["methods"].items():
        print("agreement", m, e.get("error", ""), "; ".join(
            f"{k}: max {v['max_abs_diff_rel']:.2g} mean {v['mean_abs_diff_rel']:.2g} rho {v['spearman_mean']}"
            for k, v in e["vs_cpu_fp32"].items()))
if (out / "batch_sweep.json").is_file():
    print("sweep", "; ".join(f"{r['method']}@{r.get('batch_size')}: {r.get('molecules_per_second', r.get('error'))}/s"
                             for r in json.loads((out / "batch_sweep.json").read_text())["runs"]))
PYEOF
find "$OUT" -type f | sort | tee -a "$OUT/steps.log"
log "SUMMARY ${SUMMARY[*]} in $(elapsed)s of ${BUDGET}s"
