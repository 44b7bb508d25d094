#!/usr/bin/env bash
# One-shot GPU check, sized for a 15-minute device lease (about 7 minutes of commands on an H200).
# Seen on an H200 (2026-11-30): the CUDA tests take ~40 s with -n 4; a CUDA cell of `run` takes ~14 s (process
# start, CUDA init, counting, the speed reference), so the runs below are cut to a few families; the fast CPU
# suite with -n 15 takes ~150 s and prints each result (-v), so failure names survive a kill.
#
#   bash scripts/gpu-check.sh [OUT_DIR] [STEP...]     steps: env tests runs modes report fidelity suite (default: all)
#
# 1. tests     the CUDA-marked tests (latency/memory on the GPU, the counter on real CUDA kernels for
#              every suite model in fp32/bf16 and the three grad modes, side effects on CUDA flags/RNG/stream)
# 2. runs      a quick CUDA run of each suite (cv in fp32 and bf16; seq), one with --allocator system,
#              each writing its reports (validity verdicts, malloc regime footers) -- then `compare` of the
#              two regimes (must refuse to judge across regimes: exit 2 or an environment note)
# 2b. modes    every execution on CUDA (compile-max, reduce-overhead too), --repeat 2, the ad-hoc --model mode,
#              the pretraining suite's quick profile
# 3. fidelity  benchmarks/latency_fidelity.py on CUDA: bench.measure_latency vs torch.utils.benchmark
# 4. suite     the fast CPU test suite with a GPU visible (finds tests that assume there is none)
#
# Everything is printed and also written under OUT_DIR (gpu-check.log, results.tar.gz). Each step has its
# own time limit, so one hang cannot eat the lease. Packages the device image lacks (fvcore, mnist1d...)
# can be put in ./.devsite (pure-Python copies), which goes first on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-check}}
shift || true
steps=${*:-env tests runs modes report fidelity suite}
mkdir -p "$out"
log="$out/gpu-check.log"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH="$PWD/.devsite:$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
declare -A verdict=()

step() {  # step NAME LIMIT_S CMD...: run, time and record one step
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  verdict[$name]="rc=$rc $((SECONDS - t0))s"
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$log"
}

has() { [[ " $steps " == *" $1 "* ]]; }

if has env; then
  step env 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv
    $py -c 'import sys, torch, timm; print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda,
    \"available\", torch.cuda.is_available(), \"bf16\", torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    \"timm\", timm.__version__); import fvcore, mnist1d, bench; print(\"bench from\", bench.__file__)'
    $py -m bench.cli env"
fi
if has tests; then
  xdist=()
  $py -c "import xdist" 2>/dev/null && xdist=(-n 4)
  step cuda-tests 180 $py -m pytest -q -p no:cacheprovider -m cuda "${xdist[@]}" tests/
  # issue 16: the CUDA peak and efficiency, printed (-s) so the measured figures land in the log
  step cuda-efficiency 90 $py -m pytest -q -s -p no:cacheprovider -m cuda tests/cuda/test_cuda_efficiency.py
fi
if has runs; then
  r="$work/results"
  step run-cv 150 $py -m bench.cli run cv-backbones --profile quick --device cuda --dtype fp32,bf16 \
    --family resnet,vit,convnext,cait,t2t --out "$r"
  step run-seq 120 $py -m bench.cli run seq-backbones --profile quick --device cuda --tier 100k --dtype fp32,bf16 \
    --family lstm,gru,transformer --out "$r"
  step run-system 60 $py -m bench.cli run cv-backbones --profile quick --device cuda --family resnet,vit \
    --allocator system --out "$work/system"
  # issue 15: the warm (pre-started, SIGSTOPped) worker must pick up CUDA like a freshly spawned one
  step run-spawn 60 env AIGC_BENCH_WORKER_START=spawn $py -m bench.cli run cv-backbones --profile quick --device cuda \
    --family resnet,vit --out "$work/spawn"
  step compare-start 30 bash -c "$py -m bench.cli compare \$(ls $r/cv-backbones/*.json | head -1) \
    \$(ls $work/spawn/cv-backbones/*.json | head -1); echo compare exit \$?"
  step compare-regimes 60 bash -c "$py -m bench.cli compare \$(ls $r/cv-backbones/*.json | head -1) \
    \$(ls $work/system/cv-backbones/*.json | head -1); echo compare exit \$?"
fi
if has modes; then
  # issue 14: every execution on CUDA (compile-max and reduce-overhead are CUDA-only), tiny models, batch 8
  step executions 240 $py -m bench.cli run cv-backbones --profile executions --device cuda --family resnet,vit \
    --batch-size 8 --execution eager,compile,compile-max,reduce-overhead,channels_last,autocast,compile+channels_last \
    --out "$work/executions"
  # issue 19: latency in 2 fresh processes per cell on CUDA; issue 20: the ad-hoc mode on CUDA
  step repeat 90 $py -m bench.cli run cv-backbones --profile quick --device cuda --family resnet --repeat 2 \
    --out "$work/repeat"
  step adhoc 90 $py -m bench.cli run --model timm:resnet18 --model timm:vit_tiny_patch16_224 --profile quick \
    --device cuda --out "$work/adhoc"
  # issue 18: the pretraining suite's quick profile on CUDA (skipped where the suite does not exist yet)
  step pretraining 180 bash -c "$py -m bench.cli list 2>/dev/null | grep -q pretraining && \
    $py -m bench.cli run pretraining --profile quick --device cuda --out $work/pretraining || echo no pretraining suite"
fi
if has report; then
  step report 60 bash -c "for f in $work/results/reports/*/*.md; do echo \"--- \$f\"; cat \"\$f\"; done"
fi
if has fidelity; then
  step fidelity 120 $py benchmarks/latency_fidelity.py --device cuda --regimes system steady --rounds 2 \
    --min-run-time 0.5 --models resnet50 deit_small_patch16_224 efficientnet_b0
fi
if has suite; then
  xdist=()
  $py -c "import xdist" 2>/dev/null && xdist=(-n 15)
  # -v to a file: each test's outcome is written as it finishes, so a kill at the limit still names the failures
  step fast-suite 170 bash -c "$py -m pytest -v -p no:cacheprovider -m 'not slow and not cuda' ${xdist[*]} \
    --maxfail=20 tests/ > $out/fast-suite.log 2>&1"
  grep -E " FAILED | ERROR |[0-9]+ (passed|failed)" "$out/fast-suite.log" | tail -60 | tee -a "$log"
fi
tar -czf "$out/results.tar.gz" -C "$work" . 2>/dev/null
echo "=== summary" | tee -a "$log"
status=0
for name in "${!verdict[@]}"; do
  echo "$name: ${verdict[$name]}" | tee -a "$log"
  [[ ${verdict[$name]} == rc=0* ]] || status=1
done
echo "gpu-check exit status: $status" | tee -a "$log"
exit $status
