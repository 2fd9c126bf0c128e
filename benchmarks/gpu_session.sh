#!/usr/bin/env bash
# Every GPU measurement issue 19 asks for, in one call on a lent device machine (its device time is
# a few minutes in all, so nothing here is tried piecemeal):
#   bin/gpu-wheels            # here, first: the wheels the machine's image lacks, into .whl/
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=560)
# Writes to $OUT (at most 8 files come back): the GPU's identity, Music Flamingo and WavLM at real
# size (gpu.json + flamingo.log), the dashboard's GPU panel with two workers holding memory
# (gpu_panel.svg + panel.log) and the AudioBox micro-batch table (audiobox.log). Each step has its
# own time limit so that one that hangs leaves the others their time.
# GPU_SESSION_ARGS="--tiny --device cpu --dtype float32 ..." checks the script on a CPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
SITE=${SITE:-/tmp/site}
PY=${PY:-python3}
if [[ -d .whl ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "gpu_session: the carried wheels did not install" >&2; exit 1; }
fi
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore TZ=UTC

step() {  # step SECONDS LOG command...: one measurement, its output kept whatever happens
  local limit=$1 log=$2; shift 2
  echo "== $* (limit ${limit} s)" | tee "$OUT/$log"
  local began=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
  echo "== rc ${PIPESTATUS[0]} in $((SECONDS - began)) s" | tee -a "$OUT/$log"
}

{ nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'transformers', transformers.__version__)"; } | tee "$OUT/machine.txt"

# shellcheck disable=SC2086
step 330 flamingo.log "$PY" -m benchmarks.gpu_flamingo_batch --json "$OUT/gpu.json" ${GPU_SESSION_ARGS:-}
step 60 panel.log "$PY" -m benchmarks.gpu_panel --out "$OUT/gpu_panel.svg" ${GPU_PANEL_ARGS:-}
# shellcheck disable=SC2086
step 120 audiobox.log "$PY" -m benchmarks.audiobox ${AUDIOBOX_ARGS:---device cuda --bf16 --tracks 40 --min-seconds 30 --max-seconds 120}
