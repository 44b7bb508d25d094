"""Does ``measure_latency`` agree with ``torch.utils.benchmark``? (target: medians within +-3%)

For each model (timm, ``pretrained=False``, batch 1, CPU) the same model and input are timed in one
process by ``bench.metrics.latency.measure_latency`` (A) and by
``torch.utils.benchmark.Timer(stmt="model(x)").blocked_autorange`` (B), interleaved A, B, A, B, ...
so slow drift of the machine (thermal, other load) hits both alike. Each side's result is the median
of its per-round medians; the ratio is A / B (also shown: the median of the per-round ratios, which
cancels drift better still).

``measure_latency`` times ``model(x)`` under ``torch.inference_mode()``. ``Timer`` runs its
statement under whatever autograd mode the calling thread is in, so the reference B is run inside
``torch.inference_mode()`` too -- the same work. For context the Timer is also run under
``torch.no_grad()`` and with autograd on (what a bare ``model(x)`` costs), which shows what the
choice of mode is worth.

    python benchmarks/latency_fidelity.py [--models resnet50 deit_small_patch16_224] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch.utils.benchmark import Timer

# Runnable from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.metrics.latency import LatencyMeasurement, measure_latency  # noqa: E402

REFERENCES: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "Timer/inference_mode": torch.inference_mode,
    "Timer/no_grad": torch.no_grad,
    "Timer/grad": contextlib.nullcontext,
}


def timer_median_ms(
    model: torch.nn.Module,
    x: torch.Tensor,
    grad_mode: Callable[[], contextlib.AbstractContextManager],
    min_run_time: float,
) -> float:
    """Median ms of ``model(x)`` by ``Timer.blocked_autorange`` under the given autograd mode."""
    timer = Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
    with grad_mode():
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "deit_small_patch16_224"])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {_load()}"
    )
    print(f"batch 1, CPU, {args.rounds} interleaved rounds x {args.min_run_time} s per measurement")

    # Every measurement is a zero-argument function returning a median in ms; "ours" is first.
    for name in args.models:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
        x = torch.randn(1, 3, 224, 224)
        last: list[LatencyMeasurement] = []

        def ours(model: torch.nn.Module = model, x: torch.Tensor = x, last: list = last) -> float:
            last[:] = [measure_latency(model, x, min_run_time_s=args.min_run_time, warmup_s=0.5)]
            return last[0].median_ms

        sides: dict[str, Callable[[], float]] = {"measure_latency": ours}
        for label, mode in REFERENCES.items():
            sides[label] = functools.partial(timer_median_ms, model, x, mode, args.min_run_time)
        results: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(args.rounds):
            # A, B, C, D then B, A, D, C: each pair swaps places every round, so drift cancels.
            order = list(sides) if r % 2 == 0 else [list(sides)[i] for i in (1, 0, 3, 2)]
            for label in order:
                results[label].append(sides[label]())
        m = last[0]
        a = statistics.median(results["measure_latency"])
        print(
            f"\n{name}  (measure_latency: threads {m.threads}, last round n={m.n}, "
            f"number_per_sample={m.number_per_sample}, warmup_iters={m.warmup_iters}; load {_load()})"
        )
        print(f"  {'measure_latency':<22} median {a:8.2f} ms   rounds {_r(results['measure_latency'])}")
        for label in REFERENCES:
            vals = results[label]
            b = statistics.median(vals)
            paired = statistics.median(o / t for o, t in zip(results["measure_latency"], vals, strict=True))
            print(
                f"  {label:<22} median {b:8.2f} ms   rounds {_r(vals)}   "
                f"ratio of medians {a / b:.3f}, median paired ratio {paired:.3f}"
            )


def _r(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
