#!/usr/bin/env bash
# The GPU proof (issue 10), run on the GPU machine from the repository root:
#   make gpu-wheels     # here, once: the small wheels the GPU machine lacks -> build/gpu-wheels (~63 MiB)
#   make gpu-check      # there (carry build/gpu-wheels): JSON + markdown under artifacts/gpu-check
# Uses the machine's own python3 (torch, transformers, peft); the carried wheels are unpacked into
# build/gpu-site (no dependency resolution, nothing downloaded). Hard limit 8 minutes.
set -euo pipefail
OUT=${1:-artifacts/gpu-check}
shift || true
PY=${GPU_PYTHON:-python3}
SITE=build/gpu-site
# One wheel at a time: a wheel this machine refuses (platform, Python) only disables the phases
# that need it, which then say so in the report.
for wheel in build/gpu-wheels/*.whl; do
    [ -e "$wheel" ] || continue
    "$PY" -m pip install --quiet --no-deps --no-index --target "$SITE" "$wheel" \
        || echo "gpu-check: could not install $(basename "$wheel") here"
done
export PYTHONPATH="client:serving:export:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec timeout 480 "$PY" -m opencc_cm_export.gpu_check --out "$OUT" "$@"
