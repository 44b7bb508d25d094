"""Memory of one inference call or one training step (the same step latency times).

Definitions (MB here means 2**20 bytes):

- ``weights_mb``: bytes of the model's parameters and buffers (exact, from the tensors).
- ``inputs_mb``: bytes of the input tensors.
- ``activations_mb``: what the steps add on top of what was in use just before the first one: on
  CUDA ``max_memory_allocated - memory_allocated``; on CPU peak RSS during the steps minus RSS
  before them. In ``mode="train"`` this also holds the gradients and the optimizer's state, since
  the first step creates them.
- ``peak_mb`` (stored as ``peak_memory_mb``): on CUDA ``torch.cuda.max_memory_allocated`` over the
  steps -- the allocator's own peak, which is what CUDA users quote. On CPU there is no allocator
  peak to read, and the process's absolute RSS is dominated by the interpreter and libraries, so the
  same quantity is rebuilt: ``weights_mb + inputs_mb + activations_mb``.
- ``reserved_mb``: CUDA only, ``max_memory_reserved`` (what the caching allocator held at its peak).
- ``peak_rss_mb``: CPU only, the process's absolute peak RSS during the steps. The ``memory``
  metric subtracts the worker's RSS from before the model was built (``ctx.baseline``) to report
  ``peak_rss_above_baseline_mb``: everything the cell cost the process, weights and library
  imports made while building included.

CPU peak RSS: Linux lets a process reset its RSS high-water mark (``VmHWM``) by writing ``5`` to
``/proc/self/clear_refs``; ``VmHWM`` after the steps is then the exact peak (method
``"rss_hwm"``). Where that is not permitted, a thread samples ``/proc/self/statm`` every
millisecond during the steps (method ``"rss_sampled"``), which can miss peaks shorter than that.
RSS only moves when the allocator returns memory to the kernel, so ``malloc_trim`` is called
before the baseline is read, and (glibc) the steps run with every block of 64 KiB or more mapped
afresh and unmapped when freed (``bench.metrics._malloc.exact_malloc``): otherwise how much of the
step's memory came from heap left over by earlier phases depended on the process's history (vgg11
tiny read 41-58 MB in identical processes; 41-49 MB with it). The numbers are close, not byte-exact.

The step is run :data:`RUNS` times and the peak over all of them kept: the first call allocates
things later calls reuse (optimizer state, kernel caches), the second shows the steady state.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.catalogue import Column, Judge
from bench.metrics import MetricContext
from bench.metrics._malloc import exact_malloc
from bench.metrics._step import make_step, prepare, preserved_state
from bench.registry import register_metric

if TYPE_CHECKING:
    import torch  # annotations only: torch is imported where it is used (the catalogue reads this module)

MB = float(2**20)
#: Steps measured; the peak over them is kept (the first allocates what later ones reuse; see above).
RUNS = 2
#: How often the fallback sampler reads RSS where the high-water mark cannot be reset (may miss shorter peaks).
SAMPLE_INTERVAL_S = 1e-3
#: A reset high-water mark sits at the RSS of the moment of the reset; pages touched between the reset and
#: reading it back (reading /proc itself, other threads) add a little. Within this of the current RSS, the
#: reset took; a mark that did not reset stays at the process's earlier peak (model build, imports), in
#: practice far above, and one that happens to lie within this could overstate a peak by this much at most.
HWM_RESET_SLACK_BYTES = 4 * 2**20
#: CPU peak memory is rebuilt from RSS (``memory_method`` ``rss_*``), which moves between identical
#: runs even with malloc's thresholds fixed (bench.metrics._malloc): across 18 processes each,
#: densenet121 tiny read 34.6-46.6 MB, vgg11 tiny 41.2-48.7 MB, resnet10t 30.7-35.5 MB. ``compare``
#: takes changes smaller than this for noise whatever the percentage. CUDA peaks come from the allocator.
RSS_NOISE_FLOOR_MB = 16.0

COLUMNS = (
    # One measurement per run: compare judges it on the threshold alone, beyond the RSS noise on CPU.
    Column("peak_memory_mb", unit="MB", header="peak mem (MB)", better="lower", frame=True, export=True,
           judge=Judge("threshold", 5.0, name="memory", gating=True, rss_noise_floor=RSS_NOISE_FLOOR_MB, order=2)),
    Column("weights_mb", unit="MB"),
    Column("activations_mb", unit="MB"),
    Column("reserved_mb", unit="MB", csv=False),
    Column("memory_method", csv=False),
    Column("peak_rss_above_baseline_mb", unit="MB", csv=False),
)  # fmt: skip


@dataclass(frozen=True)
class MemoryMeasurement:
    """Memory of one step; see the module docstring for each field's exact definition."""

    weights_mb: float
    inputs_mb: float
    activations_mb: float
    peak_mb: float
    reserved_mb: float | None  # CUDA only
    peak_rss_mb: float | None  # CPU only: absolute peak resident set size during the steps
    method: str  # "cuda_allocator" | "rss_hwm" | "rss_sampled"
    device: str
    mode: str


def tensor_bytes(tensors: Any) -> int:
    """Total bytes of the tensors in an iterable (non-tensors are ignored)."""
    import torch

    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def weights_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each shared tensor counted once."""
    return tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())


def measure_memory(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    device: str | torch.device | None = None,
    mode: str = "infer",
    runs: int = RUNS,
) -> MemoryMeasurement:
    """Peak memory of ``model(*example_inputs)`` (``mode="infer"``) or of a training step.

    ``example_inputs`` is a tensor or a tuple of positional inputs; ``device`` defaults to where
    the model lives (model and inputs are moved there). The step runs ``runs`` times.

    On CPU with glibc the steps run with every block of 64 KiB or more mapped afresh (see the module
    docstring); afterwards ``malloc`` is left as :mod:`bench.metrics._malloc` explains -- where glibc's
    dynamic thresholds were in force, at the values they converge to (mmap 32 MiB, trim 64 MiB), so the
    caller's own code runs at least as fast as before. Threads, grad mode and torch's RNG are as before
    afterwards, also when the model raises; the model is left in the mode measured (as ``make_step`` says).
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    dev, inputs = prepare(model, example_inputs, device)
    weights, inputs_b = weights_bytes(model), tensor_bytes(inputs)
    with preserved_state(dev):
        step = make_step(model, inputs, mode)
        if dev.type == "cuda":
            before, peak, reserved = _cuda_peak(step, dev, runs)
        else:
            before, peak, method = _cpu_peak_rss(step, runs)
    if dev.type == "cuda":
        return MemoryMeasurement(
            weights_mb=weights / MB,
            inputs_mb=inputs_b / MB,
            activations_mb=(peak - before) / MB,
            peak_mb=peak / MB,
            reserved_mb=reserved / MB,
            peak_rss_mb=None,
            method="cuda_allocator",
            device=str(dev),
            mode=mode,
        )
    # The mark is reset a moment before the baseline is read: never report a few pages below zero.
    activations = max(peak - before, 0)
    return MemoryMeasurement(
        weights_mb=weights / MB,
        inputs_mb=inputs_b / MB,
        activations_mb=activations / MB,
        peak_mb=(weights + inputs_b + activations) / MB,
        reserved_mb=None,
        peak_rss_mb=peak / MB,
        method=method,
        device=str(dev),
        mode=mode,
    )


def _cuda_peak(step: Callable[[], Any], device: torch.device, runs: int) -> tuple[int, int, int]:
    """(allocated before, max allocated, max reserved) in bytes over ``runs`` synchronised steps."""
    import torch

    with torch.cuda.device(device):
        torch.cuda.synchronize(device)
        gc.collect()
        # Drop cached blocks left by earlier work so max_memory_reserved describes this step.
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        for _ in range(runs):
            step()  # the output is dropped at once: it must not stay alive into the next run
            torch.cuda.synchronize(device)
        return before, torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def _cpu_peak_rss(step: Callable[[], Any], runs: int) -> tuple[int, int, str]:
    """(RSS before, peak RSS during the steps) in bytes, and the method that found the peak."""
    if not os.path.exists("/proc/self/status"):
        raise RuntimeError("CPU memory measurement needs Linux's /proc (peak RSS of the process)")
    gc.collect()
    # Free heap returned to the kernel, then fresh mappings for every block the step allocates (see
    # bench.metrics._malloc): RSS grows by what the step touches, not by whatever part of it earlier
    # phases happened to leave in the heap.
    with exact_malloc():
        if reset_peak_rss():
            before = read_status_bytes("VmRSS")
            for _ in range(runs):
                step()
            return before, max(read_status_bytes("VmHWM"), before), "rss_hwm"
        before = rss_bytes()
        sampler = _RssSampler(SAMPLE_INTERVAL_S)
        sampler.start()
        try:
            for _ in range(runs):
                step()
                sampler.observe()
        finally:
            sampler.stop()
        return before, max(sampler.peak, before), "rss_sampled"


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (VmHWM); False where Linux does not let us."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    # Trust the reset only if it took: the mark now sits at (about) the current RSS.
    return read_status_bytes("VmHWM") <= read_status_bytes("VmRSS") + HWM_RESET_SLACK_BYTES


def read_status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} field")


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size from ``/proc/self/statm`` (cheaper to read than ``status``)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


class _RssSampler:
    """A daemon thread keeping the largest RSS seen every ``interval`` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # One maximum per thread: a shared read-modify-write could lose the larger value.
        self._seen_by_caller = rss_bytes()
        self._seen_by_thread = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    @property
    def peak(self) -> int:
        return max(self._seen_by_caller, self._seen_by_thread)

    def start(self) -> None:
        self._thread.start()

    def observe(self) -> None:
        """Sample from the calling thread too (e.g. right after a step)."""
        self._seen_by_caller = max(self._seen_by_caller, rss_bytes())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.observe()

    def _run(self) -> None:
        with open("/proc/self/statm", "rb", buffering=0) as f:
            while not self._done.is_set():
                f.seek(0)
                self._seen_by_thread = max(self._seen_by_thread, int(f.read().split()[1]) * _PAGE_SIZE)
                self._done.wait(self.interval)


@register_metric("memory", columns=COLUMNS, order=40)
def memory_metric(ctx: MetricContext) -> dict[str, Any]:
    """Peak memory of the cell's step: ``peak_memory_mb`` and its parts (see module docstring)."""
    ctx.report_phase("memory")
    m = measure_memory(ctx.model, ctx.inputs, device=ctx.device, mode=ctx.cell.key.mode)
    base = ctx.baseline.get("rss_bytes")
    return {
        "peak_memory_mb": m.peak_mb,
        "weights_mb": m.weights_mb,
        "activations_mb": m.activations_mb,
        "reserved_mb": m.reserved_mb,
        "memory_method": m.method,
        "peak_rss_above_baseline_mb": m.peak_rss_mb - base / MB if m.peak_rss_mb is not None and base else None,
    }
