#!/usr/bin/env bash
# The GPU proof, run on the GPU machine from the repository root with that machine's own python3
# (torch, transformers, peft, onnx, onnxruntime; none of this project's packages, no index):
#   make gpu-wheels        # here, once: the wheels that machine lacks -> build/gpu-wheels (checked to fit one call)
#   bash scripts/gpu-check.sh [OUT] [--quick] [gpu_check options]   # there, carrying build/gpu-wheels
# This project's packages come from this tree (PYTHONPATH); the carried wheels are unpacked into
# GPU_SITE (no dependency resolution, nothing downloaded). The Python side prints its plan (which
# phases will run, which cannot and why) before any work. Hard limit: 8 minutes (--quick: 4).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=artifacts/gpu-check
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT=$1; shift; fi  # an optional first argument that is not an option
PY=${GPU_PYTHON:-python3}
WHEELS=${GPU_WHEELS:-build/gpu-wheels}
SITE=${GPU_SITE:-build/gpu-site}
LIMIT_S=480  # the GPU run's budget; GPU_CHECK_LIMIT_S overrides it (timing the phases on a CPU)
for arg in "$@"; do [ "$arg" = "--quick" ] && LIMIT_S=240; done
LIMIT_S=${GPU_CHECK_LIMIT_S:-$LIMIT_S}
started=$(date +%s)
"$PY" -c 'import sys; print("gpu-check: python", sys.version.split()[0], sys.executable)'
# One wheel at a time: a wheel this machine refuses (platform, Python) only disables the phases
# that need it, which the plan then names.
for wheel in "$WHEELS"/*.whl; do
    [ -e "$wheel" ] || continue
    "$PY" -m pip install --quiet --no-deps --no-index --no-compile --target "$SITE" "$wheel" \
        || echo "gpu-check: could not install $(basename "$wheel") here"
done
echo "gpu-check: carried wheels unpacked in $(( $(date +%s) - started )) s"
export PYTHONPATH="contract:client:serving:export:jobs:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
"$PY" -c "import torch; print('gpu-check: torch', torch.__version__, 'cuda', torch.cuda.is_available())"
left=$(( LIMIT_S - ($(date +%s) - started) ))
if [ "$left" -lt 30 ]; then echo "gpu-check: only ${left} s of the ${LIMIT_S} s limit left after unpacking; nothing run" >&2; exit 2; fi
exec timeout "$left" "$PY" -m opencc_cm_jobs.gpu_check --out "$OUT" "$@"
