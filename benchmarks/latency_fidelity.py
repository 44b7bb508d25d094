"""Does ``measure_latency`` agree with ``torch.utils.benchmark``, like for like? (target: medians within +-3%)

For each model (timm, ``pretrained=False``, batch 1, CPU, 1 thread by default) and each allocator regime,
fresh processes time the same model and input with ``bench.measure_latency`` (A) and with
``torch.utils.benchmark.Timer(stmt="model(x)").blocked_autorange`` under ``torch.inference_mode()`` (B,
the same work: ``measure_latency`` runs ``model(x)`` under inference mode too), in interleaved rounds:

- regime ``system``: nothing touches ``malloc``; A is ``measure_latency(..., allocator="system")``, the
  API's default. This is what every peer tool and a user's own process see.
- regime ``steady``: the process sets glibc's ``malloc`` to the steady regime at its start
  (``bench.metrics._malloc.apply_process_regime``), so A and B both run under it; A is
  ``measure_latency(..., allocator="steady")``, which is how ``aigc-bench run`` times.
- order: A then B in each round in one process, B then A in another, so that neither tool benefits
  from going second (issue 11: the old script only ever ran the Timer first, and so never saw that a
  measurement left the process slower for whatever ran after it).

Each side's result is the median of its per-round medians; the ratio is A / B (also shown: the median
of the per-round ratios). A line passes when the ratio is within ``--tolerance`` (3%) of 1. Timing
needs a quiet machine: run it alone (the load average is printed), never next to other work.

    python benchmarks/latency_fidelity.py [--models resnet50 deit_small_patch16_224 efficientnet_b0]
                                          [--rounds 3] [--min-run-time 1.0] [--threads 1] [--device cpu|cuda] [--quick]

Exit status: 0 when every line passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["resnet50", "deit_small_patch16_224", "efficientnet_b0"]
REGIMES = ("system", "steady")
ORDERS = ("AB", "BA")  # A = bench.measure_latency, B = torch.utils.benchmark.Timer


def child(
    model_name: str, regime: str, order: str, rounds: int, min_run_time: float, threads: int, device: str = "cpu"
) -> dict[str, Any]:
    """One fresh process: set the regime first, then time A and B in interleaved rounds; returns medians in ms."""
    sys.path.insert(0, str(ROOT))  # runnable from a source checkout without installing the package
    from bench.metrics._malloc import apply_process_regime

    process_malloc = apply_process_regime(regime)  # before anything is built: both tools run under it
    import timm
    import torch
    from torch.utils.benchmark import Timer

    from bench.metrics.latency import measure_latency

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False).eval().to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    # On CUDA the Timer synchronises before each reading (torch.utils.benchmark does so whenever CUDA is
    # available); measure_latency times with CUDA events between synchronisations.
    timer = Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    last: dict[str, Any] = {}

    def ours() -> float:
        m = measure_latency(model, x, min_run_time_s=min_run_time, warmup_s=0.5, allocator=regime, threads=threads,
                            device=device)  # fmt: skip
        last.update(malloc=m.malloc, n=m.n, number_per_sample=m.number_per_sample, warmup_iters=m.warmup_iters)
        return m.median_ms

    def theirs() -> float:
        with torch.inference_mode():
            return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3

    sides = {"A": ours, "B": theirs}
    results: dict[str, list[float]] = {"A": [], "B": []}
    for _ in range(rounds):
        for side in order:
            results[side].append(sides[side]())
    return {"model": model_name, "regime": regime, "order": order, "A": results["A"], "B": results["B"],
            "process_malloc": process_malloc, "load": os.getloadavg(), **last}  # fmt: skip


def run_child(args: argparse.Namespace, model: str, regime: str, order: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", model, regime, order, "--rounds", str(args.rounds),
           "--min-run-time", str(args.min_run_time), "--threads", str(args.threads), "--device", args.device]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{model} {regime} {order}: the child process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS, help=f"timm model names (default: {' '.join(MODELS)})")
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES, help="allocator regimes")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per process (default 3)")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default 1.0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both tools time (default cpu)")
    ap.add_argument("--tolerance", type=float, default=0.03, help="pass when |A/B - 1| <= this (default 0.03)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke check: 1 round of 0.3 s per process (the ratios are not verdict-grade)")  # fmt: skip
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "REGIME", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.min_run_time = 1, 0.3
    if args.child:
        print(json.dumps(child(*args.child, args.rounds, args.min_run_time, args.threads, args.device)))
        return 0

    import timm
    import torch

    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {args.threads}, cpus {os.cpu_count()}, "
          f"load average {_load()}")  # fmt: skip
    print(f"batch 1, {args.device}; per process {args.rounds} interleaved rounds x {args.min_run_time} s per measurement; "
          f"A = bench.measure_latency, B = torch.utils.benchmark.Timer under inference_mode; pass: |A/B - 1| <= "
          f"{args.tolerance:.0%}{' (--quick: a smoke check, not a verdict)' if args.quick else ''}")  # fmt: skip
    print(f"\n{'model':<24} {'regime':<7} {'order':<5} {'A ms':>8} {'B ms':>8} {'A/B':>6} {'paired':>7}  verdict  "
          f"(A's malloc; load)")  # fmt: skip
    failed = 0
    for model in args.models:
        for regime in args.regimes:
            for order in ORDERS:
                r = run_child(args, model, regime, order)
                a, b = statistics.median(r["A"]), statistics.median(r["B"])
                paired = statistics.median(x / y for x, y in zip(r["A"], r["B"], strict=True))
                ok = abs(a / b - 1) <= args.tolerance
                failed += not ok
                print(f"{model:<24} {regime:<7} {order:<5} {a:8.2f} {b:8.2f} {a / b:6.3f} {paired:7.3f}  "
                      f"{'PASS' if ok else 'FAIL':<7}  ({r['malloc']}; {r['load'][0]:.2f})", flush=True)  # fmt: skip
    print(f"\n{'all within' if not failed else f'{failed} outside'} +-{args.tolerance:.0%}; load average {_load()}")
    return 1 if failed else 0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
