"""Latency of one inference call or one training step, with raw samples kept.

Method (after ``torch.utils.benchmark.Timer.blocked_autorange`` and timm's ``benchmark.py``):

1. Warm up until stable: at least :data:`MIN_WARMUP_CALLS` calls, then until the median of the last
   window of calls is within :data:`STABLE_RTOL` of the median of the window before it, or
   ``warmup_s`` is spent. A window is :data:`STABLE_WINDOW` calls, or as many as fill
   :data:`TARGET_BLOCK_S` when calls are shorter.
2. Block size: calls per timed block (``number_per_sample``) is 1 unless one call is shorter than
   :data:`TARGET_BLOCK_S`; then enough calls to fill that, so timer (and CUDA synchronisation)
   overhead stays negligible -- but never so many that fewer than :data:`MIN_SAMPLES` blocks fit
   in ``min_run_time_s``.
3. Timed blocks until ``min_run_time_s`` is spent and at least :data:`MIN_SAMPLES` were taken
   (the latter given up after ``MAX_RUN_FACTOR * min_run_time_s``, but never below
   :data:`FLOOR_SAMPLES`), at most ``max_samples``.
   Each sample is the block's time divided by ``number_per_sample``, in ms.

Around the measurement (before and after), :func:`measure_speed_reference` times a fixed reference
network on the same device and threads: the *machine-speed reference*. A shared or virtualised
machine changes speed between runs by more than a model change worth catching (back-to-back A/A
runs of the same code on the 2-core CI machine differed by up to +23%, every model at once), and
the reference moves with it; ``aigc-bench compare`` judges latency relative to it (see
:mod:`bench.compare`). Why a small network and not a GEMM: measured over 25 processes across such
speed changes, a 384x384 GEMM moved with the models (r 0.8) but by a third as much, while this
network (a conv stem and four Transformer encoder layers, 3.8 M parameters, what the models do at
batch 1) moved as much as they did (r 0.90-0.96, slope 0.7-1.0).

Allocator regime (``allocator``; see :mod:`bench.metrics._malloc`). ``"system"`` (the default of
:func:`measure_latency`) touches nothing: the model is timed under whatever ``malloc`` the process
has, as ``torch.utils.benchmark``, timm's ``benchmark.py`` and the user's own code are. ``"steady"``
(the default of ``aigc-bench run``) tells glibc's ``malloc`` to keep freed memory, as jemalloc and
tcmalloc -- the allocators PyTorch's CPU tuning guides recommend -- do by default. Under glibc's
defaults, a forward pass with large activations returns them to the OS and faults them back in on the
next call, and how often depends on the process's allocation history: in separate processes,
convnext_femto took 7.9 ms with 0 page faults per call or 11.4 ms with 2,300; efficientnet_b0 9.7 ms
or 12.8-16.5 ms with 2,300-4,800. That, not the machine, made back-to-back runs of the same code
differ by 20-38% per cell, and it is why the runner times under ``steady``. Either way the regime is
recorded (``malloc``, stored as ``latency_malloc``), and the caller's process is left as fast as it was.

CPU blocks are timed (:mod:`bench.metrics._timer`) with ``time.perf_counter``; CUDA blocks with a pair of
``torch.cuda.Event(enable_timing=True)`` after a ``torch.cuda.synchronize``, so the time is the
GPU's. Python's garbage collector is paused inside each timed block, as ``timeit`` (and so
``torch.utils.benchmark``) does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.allocator import API_DEFAULT, check_regime, regime_of
from bench.catalogue import Column, Judge
from bench.metrics import MetricContext
from bench.metrics._malloc import timing_regime
from bench.metrics._step import make_step, prepare, preserved_state
from bench.metrics._timer import BlockTimer, _block_timer, _num_threads, _on_device
from bench.registry import register_metric
from bench.stats import UNSTEADY_SPEED_DRIFT, Summary

if TYPE_CHECKING:
    import torch  # annotations only: torch is imported where it is used (the catalogue reads this module)

MIN_WARMUP_CALLS = 3
STABLE_WINDOW = 3
STABLE_RTOL = 0.05
TARGET_BLOCK_S = 0.010
MIN_SAMPLES = 10
FLOOR_SAMPLES = 3  # always (if max_samples allows): quartiles of fewer samples mean nothing
MAX_RUN_FACTOR = 5.0
#: the machine-speed reference (:class:`ReferenceNet`) is timed for this long on each side of a latency
#: measurement. Changing the network changes ``SPEED_REF_VERSION`` (part of ``speed_ref_kind``), and
#: compare only uses references of the same kind.
SPEED_REF_S = 0.2
SPEED_REF_VERSION = 1

#: the clock that decides when warm-up and measurement end (a module global so tests can fake it).
_now = time.perf_counter

COLUMNS = (
    # Judged on the raw samples (Mann-Whitney U + bootstrap CI), relative to the machine-speed reference.
    Column("latency_p50_ms", unit="ms", header="p50 (ms)", better="lower", clock=True, frame=True, export=True,
           judge=Judge("sampled", 5.0, name="latency", gating=True, samples="latency_ms", order=1)),
    Column("latency_p90_ms", unit="ms", header="p90 (ms)", better="lower", clock=True, frame=True),
    Column("latency_p99_ms", unit="ms", clock=True, frame=True),
    *(Column(name, unit="ms", clock=True) for name in ("latency_mean_ms", "latency_std_ms", "latency_iqr_ms")),
    Column("latency_n", description="timed samples"),
    Column("throughput", unit="1/s", header="samples/s", better="higher", clock=True, frame=True, export=True,
           description="samples (or sequences) per second at the median latency"),
    Column("tokens_per_s", unit="1/s", header="tokens/s", better="higher", clock=True, replaces="throughput",
           description="sequence cells: batch x seq_len per second at the median latency"),
    *(Column(name, csv=False) for name in (
        "latency_noisy", "latency_number_per_sample", "latency_warmup_iters", "latency_threads", "latency_malloc",
        "speed_ref_ms", "speed_ref_drift", "speed_ref_drift_median", "speed_ref_kind",
        # added by the worker around the measurement, and the verdict on it (bench.env, bench.validity)
        "load_1m_before", "load_1m_after", "load_cpus", "load_cpus_total", "latency_validity",
        "latency_validity_reasons")),
)  # fmt: skip


@dataclass(frozen=True)
class LatencyMeasurement:
    """Raw per-call latencies of one model; statistics are derived (and cached) on demand."""

    samples_ms: tuple[float, ...]  # one per timed block: block time / number_per_sample
    number_per_sample: int  # calls per timed block
    device: str
    mode: str  # "infer" | "train"
    warmup_iters: int
    threads: int  # torch intra-op threads during the measurement
    malloc: str = "system"  # how malloc was set during the measurement (bench.metrics._malloc.timing_regime)

    @property
    def allocator(self) -> str | None:
        """The regime the samples were taken under: ``"steady"`` or ``"system"`` (see :mod:`bench.metrics._malloc`)."""
        return regime_of(self.malloc)

    @cached_property
    def summary(self) -> Summary:
        """Statistics of :attr:`samples_ms` (see :mod:`bench.stats`)."""
        return Summary.of(self.samples_ms)

    @property
    def n(self) -> int:
        return self.summary.n

    @property
    def median_ms(self) -> float:
        return self.summary.median

    @property
    def p90_ms(self) -> float:
        return self.summary.p90

    @property
    def p99_ms(self) -> float:
        return self.summary.p99

    @property
    def mean_ms(self) -> float:
        return self.summary.mean

    @property
    def std_ms(self) -> float:
        return self.summary.std

    @property
    def iqr_ms(self) -> float:
        return self.summary.iqr

    @property
    def noisy(self) -> bool:
        """IQR/median above 0.1 (see :data:`bench.stats.NOISY_IQR_OVER_MEDIAN`)."""
        return self.summary.noisy

    def throughput(self, batch: int) -> float:
        """Samples (or sequences) per second at the median latency."""
        return batch / (self.median_ms / 1e3)

    def to_metrics(self, batch_size: int) -> dict[str, Any]:
        """The flat ``latency_*`` metrics of a record."""
        s = self.summary
        return {
            "latency_p50_ms": s.median,
            "latency_p90_ms": s.p90,
            "latency_p99_ms": s.p99,
            "latency_mean_ms": s.mean,
            "latency_std_ms": s.std,
            "latency_iqr_ms": s.iqr,
            "latency_n": s.n,
            "throughput": self.throughput(batch_size),
            "latency_noisy": s.noisy,
            # How the samples were taken, so two runs can be told apart.
            "latency_number_per_sample": self.number_per_sample,
            "latency_warmup_iters": self.warmup_iters,
            "latency_threads": self.threads,
            "latency_malloc": self.malloc,
        }


def measure_latency(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    device: str | torch.device | None = None,
    mode: str = "infer",
    warmup_s: float = 0.5,
    min_run_time_s: float = 1.0,
    max_samples: int = 2000,
    threads: int | None = None,
    allocator: str = API_DEFAULT,
) -> LatencyMeasurement:
    """Time ``model(*example_inputs)`` (``mode="infer"``) or a whole training step (``mode="train"``).

    ``example_inputs`` is a tensor or a tuple of positional inputs. ``device`` defaults to where the
    model lives; the model and inputs are moved there. ``threads`` sets ``torch.set_num_threads``
    for the measurement only (restored after); the count in effect is recorded either way.
    ``allocator``: ``"system"`` (default) times under the process's own ``malloc`` and never changes
    it, like ``torch.utils.benchmark``; ``"steady"`` times with glibc told to keep freed memory (what
    jemalloc/tcmalloc users see, and what ``aigc-bench run`` uses), then leaves the process's thresholds
    where glibc's own policy would have them (see :mod:`bench.metrics._malloc`).
    Threads, grad mode and torch's RNG are as before afterwards, also when the model raises; the model
    is left in the mode measured (see :func:`bench.metrics._step.make_step`). See the module docstring
    for the method.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    check_regime(allocator)
    dev, inputs = prepare(model, example_inputs, device)
    with preserved_state(dev), _num_threads(threads) as used_threads, _on_device(dev):
        step = make_step(model, inputs, mode)
        with timing_regime(allocator) as malloc:
            block = _block_timer(dev)
            warm = _warm_up(block, step, warmup_s)
            number = _block_size(float(np.median(warm[-STABLE_WINDOW:])), min_run_time_s)
            samples = _measure(block, step, number, min_run_time_s, max_samples)
    return LatencyMeasurement(
        samples_ms=tuple(samples),
        number_per_sample=number,
        device=str(dev),
        mode=mode,
        warmup_iters=len(warm),
        threads=used_threads,
        malloc=malloc,
    )


def speed_reference_kind(device: torch.device, threads: int) -> str:
    """What :func:`measure_speed_reference` times, e.g. ``refnet fp32 cpu 2t v1``; equal kinds are comparable."""
    return f"refnet fp32 {device.type} {threads}t v{SPEED_REF_VERSION}"


def measure_speed_reference(
    device: str | torch.device = "cpu",
    *,
    threads: int | None = None,
    budget_s: float = SPEED_REF_S,
    allocator: str = API_DEFAULT,
) -> list[float]:
    """Per-call times (ms) of :class:`ReferenceNet` on ``device`` over about ``budget_s``: how fast the machine is now.

    The workload never changes with the code under test (fixed network, seed, input and fp32), so a
    change in its time between two runs of the same environment is the machine's, not the code's.
    Same warm-up, block timing and ``allocator`` regime as :func:`measure_latency`.
    """
    import torch

    from bench.metrics._reference import ReferenceNet

    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # a fixed network without disturbing the caller's RNG
        torch.manual_seed(0)
        net = ReferenceNet().eval().to(dev)
        x = torch.randn(1, 3, 224, 224).to(dev)

    def step() -> None:
        net(x)

    with _num_threads(threads), _on_device(dev), torch.inference_mode(), timing_regime(allocator):
        block = _block_timer(dev)
        warm = _warm_up(block, step, budget_s / 3)  # the first calls also start the thread pool
        number = _block_size(float(np.median(warm[-STABLE_WINDOW:])), budget_s)
        return _measure(block, step, number, budget_s, max_samples=200)


def _warm_up(block: BlockTimer, step: Callable[[], Any], warmup_s: float) -> list[float]:
    """Single calls until timings settle (or ``warmup_s`` is spent); their times in seconds."""
    times: list[float] = []
    deadline = _now() + warmup_s
    while True:
        times.append(block(step, 1))
        if len(times) >= MIN_WARMUP_CALLS and (_now() >= deadline or _stable(times)):
            return times


def _stable(times: list[float]) -> bool:
    # A window spans at least STABLE_WINDOW calls and TARGET_BLOCK_S of time: six calls of a
    # 20-microsecond model are too short a stretch to call anything stable.
    per_call = max(float(np.median(times[-STABLE_WINDOW:])), 1e-7)
    w = max(STABLE_WINDOW, math.ceil(TARGET_BLOCK_S / per_call))
    if len(times) < 2 * w:
        return False
    last, prev = float(np.median(times[-w:])), float(np.median(times[-2 * w : -w]))
    return abs(last - prev) <= STABLE_RTOL * prev


def _block_size(per_call_s: float, min_run_time_s: float) -> int:
    """Calls per timed block: 1 for calls of at least TARGET_BLOCK_S, else enough to fill it."""
    per_call_s = max(per_call_s, 1e-7)  # a clock tick of 0 must not divide by zero
    if per_call_s >= TARGET_BLOCK_S:
        return 1
    number = math.ceil(TARGET_BLOCK_S / per_call_s)
    # Prefer MIN_SAMPLES shorter blocks over a few long ones when the window is short.
    fit = int(min_run_time_s / (MIN_SAMPLES * per_call_s))
    return max(1, min(number, fit))


def _measure(
    block: BlockTimer, step: Callable[[], Any], number: int, min_run_time_s: float, max_samples: int
) -> list[float]:
    samples: list[float] = []
    start = _now()
    while len(samples) < max_samples:
        samples.append(block(step, number) / number * 1e3)
        # Wall time (not summed block time) decides when to stop: it bounds what the user waits.
        spent = _now() - start
        n = len(samples)
        if (
            spent >= min_run_time_s
            and n >= FLOOR_SAMPLES
            and (n >= MIN_SAMPLES or spent >= MAX_RUN_FACTOR * min_run_time_s)
        ):
            break
    return samples


@register_metric("latency", columns=COLUMNS, order=30)
def latency_metric(ctx: MetricContext) -> dict[str, Any]:
    """Latency statistics and throughput of the cell's model; raw samples go to ``ctx.samples``."""
    import torch

    ctx.report_phase("latency")
    cell, profile = ctx.cell, ctx.cell.profile
    # The run's regime (the worker put its whole process under it); the reference is timed under it too.
    allocator = cell.allocator
    ref_before = measure_speed_reference(ctx.device, threads=cell.threads, allocator=allocator)
    m = measure_latency(
        ctx.model,
        ctx.inputs,
        device=ctx.device,
        mode=cell.key.mode,
        warmup_s=profile.warmup_s,
        min_run_time_s=profile.min_run_time_s,
        max_samples=profile.max_samples,
        threads=cell.threads,
        allocator=allocator,
    )
    ref_after = measure_speed_reference(ctx.device, threads=cell.threads, allocator=allocator)
    out = m.to_metrics(cell.key.batch_size)
    # The machine-speed reference (see the module docstring): its median, how much the machine's speed
    # moved during the measurement (after/before - 1), and what was timed.
    before, after = float(np.median(ref_before)), float(np.median(ref_after))
    out["speed_ref_ms"] = float(np.median(ref_before + ref_after))
    out["speed_ref_drift"] = after / before - 1.0
    out["speed_ref_kind"] = speed_reference_kind(torch.device(ctx.device), m.threads)
    ctx.samples["speed_ref_ms"] = ref_before + ref_after
    if abs(out["speed_ref_drift"]) > UNSTEADY_SPEED_DRIFT:
        ctx.notes.append(
            f"latency: the machine-speed reference moved {out['speed_ref_drift']:+.0%} during the measurement; "
            "the machine was not steady"
        )
    if cell.key.seq_len is not None:
        out["tokens_per_s"] = cell.key.batch_size * cell.key.seq_len / (m.median_ms / 1e3)
    ctx.samples["latency_ms"] = list(m.samples_ms)
    if m.noisy:
        ctx.notes.append(
            f"latency: high IQR/median ({m.summary.iqr_over_median:.0%} of {m.median_ms:.3g} ms over "
            f"{m.n} samples); the machine may have been busy"
        )
    return out


def __getattr__(name: str) -> Any:
    # ``ReferenceNet`` lives in ``_reference`` (it needs torch to be defined; this module is read by the
    # metric catalogue without importing torch) and stays importable from here.
    if name == "ReferenceNet":
        from bench.metrics._reference import ReferenceNet

        return ReferenceNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
