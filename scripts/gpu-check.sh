#!/usr/bin/env bash
# One-shot GPU check: CUDA-marked tests, then a quick cv-backbones run on CUDA.
# Usage: bash scripts/gpu-check.sh [OUT_DIR]   (prints everything; writes results under OUT_DIR)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
PY
status=0
python -m pytest -q -m cuda tests/ 2>&1 | tee "$out/cuda-tests.log" || status=1
python -m bench.cli run cv-backbones --profile quick --device cuda --out "$out/results" --no-report 2>&1 | tee "$out/run.log" || status=1
python -m bench.cli run seq-backbones --profile quick --device cuda --out "$out/results" --no-report 2>&1 | tee "$out/run-seq.log" || status=1
echo "gpu-check exit status: $status"
exit $status
