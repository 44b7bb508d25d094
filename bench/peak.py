"""The machine's measured peak, once per run and device: dense GEMM throughput per dtype and memory bandwidth.

GEMM: ``torch.mm`` on square matrices of a few sizes, in the cell's dtype, at the run's thread count on CPU
(CUDA: timed with events and a synchronize); on CPU also the same GEMM as a 1x1 convolution, which runs
through oneDNN rather than the BLAS behind ``torch.mm``. The peak is the faster of the two: on AMD EPYC,
torch.mm's MKL took ~227 GFLOP/s while oneDNN's convolutions ran resnet10t at ~420, so a torch.mm-only peak
put CNN cells at MFU 1.2-1.9 (runs of 2026-12-01 and before). Bandwidth: a large copy (``dst.copy_(src)``: read + write) and a
triad (``a = b + s*c``: two reads, one write) on arrays far larger than the caches, in GB/s (10^9 bytes). A
peak is the best timed block, as STREAM reports its best time: other work on the machine only ever lowers a
sample, so the best one is the machine's (medians are stored too, and every raw sample).

``measure_peak`` runs in the calling process and restores what it touches (threads, RNG); ``measure_run_peak``
measures every device of a run in one spawned process (the driver stays free of CUDA contexts and of the
arrays), within about ``budget_s`` per device. The result is stored in the run file's ``env.peak``
(docs/results-schema.md) and read back by :func:`peak_of`, which trusts nothing in the file.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: seconds of measuring per device (GEMM for every dtype plus bandwidth)
DEFAULT_BUDGET_S = 5.0
#: share of a device's budget spent on bandwidth (the rest is split between the dtypes' GEMMs)
BANDWIDTH_SHARE = 0.3
#: square GEMM sizes tried, smallest first (a size whose single call exceeds its budget ends the list)
GEMM_SIZES = {"cpu": (512, 1024, 2048), "cuda": (2048, 4096, 8192)}
#: GEMM kernels timed per device: ``mm`` (torch.mm: MKL/OpenBLAS on CPU, cuBLAS on CUDA) and, on CPU,
#: ``conv1x1`` (an n x n GEMM over 32x32 positions as a 1x1 convolution: oneDNN, which the convolution cells use)
GEMM_KERNELS = {"cpu": ("mm", "conv1x1"), "cuda": ("mm",)}
#: spatial side of the ``conv1x1`` kernel's input: its GEMM is (side^2 x n) @ (n x n)
CONV_SIDE = 32
#: bytes of each bandwidth array: far above any last-level cache (CPU L3 <= 256 MiB per socket, GPU L2 <= 128 MiB)
BANDWIDTH_BYTES = {"cpu": 256 << 20, "cuda": 1 << 30}
#: a timed block lasts at least this long (one call may be shorter than the clock's resolution)
MIN_BLOCK_S = {"cpu": 0.002, "cuda": 0.005}
#: at most this many samples per size or kernel
MAX_SAMPLES = 50
#: how much longer than its budget a spawned measurement may take before it is abandoned (process start, imports)
SPAWN_GRACE_S = 120.0


def measure_peak(device: str, dtypes: Sequence[str] = ("fp32",), threads: int | None = None,
                 budget_s: float = DEFAULT_BUDGET_S) -> dict[str, Any]:  # fmt: skip
    """One device's peak: ``{"gemm": {dtype: {"gflops", "size", "sizes": [{"n", "gflops", "samples"}]}},
    "bandwidth": {"gbs", "copy": {...}, "triad": {...}}, "threads", "seconds", ...}``.

    ``threads``: CPU intra-op threads for the measurement (None: torch's current count); restored after, as
    is the global RNG. Nothing else global is changed: fp32 matmuls run at the process's
    ``float32_matmul_precision`` (recorded), as the cells do.
    """
    import torch

    from bench.inputs import torch_dtype
    from bench.metrics._timer import _num_threads, _on_device

    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    dev = torch.device(device)
    kind = dev.type
    if kind == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    t0 = time.perf_counter()
    rng = [dev.index] if kind == "cuda" else []
    with _num_threads(threads) as n_threads, _on_device(dev), torch.random.fork_rng(devices=rng), torch.no_grad():
        gemm_s = budget_s * (1 - BANDWIDTH_SHARE) / max(1, len(dtypes))
        gemm = {name: _gemm(dev, torch_dtype(name), gemm_s) for name in dict.fromkeys(dtypes)}
        bandwidth = _bandwidth(dev, budget_s * BANDWIDTH_SHARE)
    if kind == "cuda":
        torch.cuda.empty_cache()  # the arrays' blocks go back: the cells measure memory from a clean pool
    out: dict[str, Any] = {
        "device": str(dev) if kind == "cuda" else "cpu",
        "threads": n_threads if kind == "cpu" else None,
        "budget_s": budget_s,
        "seconds": round(time.perf_counter() - t0, 3),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "gemm": gemm,
        "bandwidth": bandwidth,
    }
    if kind == "cuda":
        out["gpu_name"] = torch.cuda.get_device_name(dev)
    return out


def _timer(dev: Any) -> Callable[[Callable[[], Any], int], float]:
    from bench.metrics._timer import _block_timer

    return _block_timer(dev)


def _samples(dev: Any, fn: Callable[[], Any], work: float, budget_s: float) -> list[float]:
    """``work`` per call divided by seconds per call, for blocks of calls until ``budget_s`` is spent.

    The first call (warm-up: kernel choice, page faults) is not kept; a block has enough calls to last
    ``MIN_BLOCK_S``. At least one sample is always taken.
    """
    block = _timer(dev)
    start = time.perf_counter()
    first = block(fn, 1)
    number = max(1, math.ceil(MIN_BLOCK_S[dev.type] / max(first, 1e-9)))
    out: list[float] = []
    while not out or (time.perf_counter() - start < budget_s and len(out) < MAX_SAMPLES):
        seconds = block(fn, number)
        out.append(work * number / seconds if seconds > 0 else math.nan)
    return [x for x in out if math.isfinite(x)]


def _gemm(dev: Any, dtype: Any, budget_s: float) -> dict[str, Any]:
    """The best GEMM GFLOP/s over the device's kernels (``GEMM_KERNELS``), each given an equal share of
    ``budget_s``: ``{"gflops", "size", "kernel", "sizes"}`` of the winner, and every kernel under ``kernels``."""
    names = GEMM_KERNELS[dev.type]
    kernels = {name: _gemm_kernel(dev, dtype, name, budget_s / len(names)) for name in names}
    name = max(kernels, key=lambda k: kernels[k]["gflops"] if math.isfinite(kernels[k]["gflops"]) else -1.0)
    best = kernels[name]
    return {"gflops": best["gflops"], "size": best["size"], "kernel": name, "sizes": best["sizes"],
            "kernels": kernels}  # fmt: skip


def _gemm_call(dev: Any, dtype: Any, kernel: str, n: int) -> tuple[Callable[[], Any], float]:
    """One call of ``kernel`` at size ``n`` and its GFLOP per call."""
    import torch

    if kernel == "mm":
        a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
        c = torch.empty(n, n, device=dev, dtype=dtype)
        return (lambda: torch.mm(a, b, out=c)), 2 * n**3 / 1e9
    x = torch.randn(1, n, CONV_SIDE, CONV_SIDE, device=dev).to(dtype)
    w = torch.randn(n, n, 1, 1, device=dev).to(dtype)
    return (lambda: torch.nn.functional.conv2d(x, w)), 2 * CONV_SIDE**2 * n * n / 1e9


def _gemm_kernel(dev: Any, dtype: Any, kernel: str, budget_s: float) -> dict[str, Any]:
    sizes = GEMM_SIZES[dev.type]
    per_size = budget_s / len(sizes)
    found: list[dict[str, Any]] = []
    for n in sizes:
        call, work = _gemm_call(dev, dtype, kernel, n)
        t = time.perf_counter()
        samples = _samples(dev, call, work, per_size)
        found.append(
            {"n": n, "gflops": max(samples, default=math.nan), "median_gflops": _median(samples), "samples": samples}
        )
        del call
        bigger = [m for m in sizes if m > n]
        spent = time.perf_counter() - t
        # a larger size needs a warm-up call and one timed call: stop when that alone would overrun its budget
        if bigger and 2 * work * (bigger[0] / n) ** (3 if kernel == "mm" else 2) / max(found[-1]["gflops"], 1e-9) > (
            per_size + (per_size - spent)
        ):
            break
    best = max(found, key=lambda s: s["gflops"] if math.isfinite(s["gflops"]) else -1.0)
    return {"gflops": best["gflops"], "size": best["n"], "sizes": found}


def _bandwidth(dev: Any, budget_s: float) -> dict[str, Any]:
    import torch

    n = BANDWIDTH_BYTES[dev.type] // 4
    a, b, c = (torch.rand(n, device=dev) for _ in range(3))
    element = a.element_size()
    copy = _samples(dev, lambda: b.copy_(a), 2 * n * element / 1e9, budget_s / 2)
    triad = _samples(dev, lambda: torch.add(b, c, alpha=3.0, out=a), 3 * n * element / 1e9, budget_s / 2)
    kernels = {"copy": {"gbs": max(copy, default=math.nan), "median_gbs": _median(copy), "bytes": 2 * n * element, "samples": copy},
               "triad": {"gbs": max(triad, default=math.nan), "median_gbs": _median(triad), "bytes": 3 * n * element,
                         "samples": triad}}  # fmt: skip
    return {"gbs": max(k["gbs"] for k in kernels.values()), **kernels}


def _median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else math.nan


# --------------------------------------------------------------------------------------------- a run's peak


def _measure_all(devices: Sequence[str], dtypes: Sequence[str], threads: int | None,
                 budget_s: float) -> dict[str, Any]:  # fmt: skip
    """Every device's peak (the spawned process's entry point); a device that fails says why."""
    from bench.env import load_1m

    out: dict[str, Any] = {}
    for device in devices:
        try:
            out[device] = {**measure_peak(device, dtypes, threads, budget_s), "load_1m": load_1m()}
        except Exception as e:  # noqa: BLE001 -- a device that cannot be measured leaves its cells without MFU
            out[device] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
    return out


def measure_run_peak(devices: Sequence[str], dtypes: Sequence[str], threads: int | None = None,
                     budget_s: float = DEFAULT_BUDGET_S) -> dict[str, Any]:  # fmt: skip
    """The peak of every device of a run, measured in one spawned process: ``{device: measure_peak(...)}``.

    Never raises for a measurement problem: a device that failed, or a process that did not answer in
    time, gets ``{"error": "..."}`` (its cells then have no MFU, and the report says the peak was not measured).
    """
    import multiprocessing

    devices = list(dict.fromkeys(devices))
    timeout = budget_s * len(devices) * 3 + SPAWN_GRACE_S
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return dict(pool.apply_async(_measure_all, (devices, list(dtypes), threads, budget_s)).get(timeout))
    except Exception as e:  # noqa: BLE001 -- the run goes on without a peak
        why = "timed out" if isinstance(e, multiprocessing.TimeoutError) else f"{type(e).__name__}: {e}"
        log.warning("machine peak not measured: %s", why)
        return {d: {"error": f"not measured: {why}"[:300]} for d in devices}
    finally:
        pool.terminate()
        pool.join()


# --------------------------------------------------------------------------------------------- reading it back


@dataclass(frozen=True)
class Peak:
    """A device's measured peak for one dtype, as a report reads it: GEMM GFLOP/s and bandwidth GB/s (either
    None when the run did not measure it)."""

    device: str
    dtype: str
    gflops: float | None
    bandwidth_gbs: float | None
    threads: int | None = None

    @property
    def ridge(self) -> float | None:
        """The roofline's ridge point: FLOP per byte where the bandwidth slope meets the GEMM ceiling."""
        if self.gflops is None or self.bandwidth_gbs is None:
            return None
        return self.gflops / self.bandwidth_gbs


def _positive(x: Any) -> float | None:
    return float(x) if type(x) in (int, float) and math.isfinite(x) and x > 0 else None


def device_kind(device: str) -> str:
    """``cuda:1`` -> ``cuda``: cells name devices by kind."""
    return str(device).split(":", 1)[0]


def peak_of(env: Mapping[str, Any] | None, device: str, dtype: str) -> Peak | None:
    """The peak a run stored (its ``env``) for ``device`` and ``dtype``, or None when not measured.

    Files are untrusted: anything that is not a finite positive number reads as not measured.
    """
    entries = (env or {}).get("peak") if isinstance(env, Mapping) else None
    entry = entries.get(device_kind(device)) if isinstance(entries, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    gemm = entry.get("gemm")
    one = gemm.get(dtype) if isinstance(gemm, Mapping) else None
    gflops = _positive(one.get("gflops")) if isinstance(one, Mapping) else None
    bw = entry.get("bandwidth")
    gbs = _positive(bw.get("gbs")) if isinstance(bw, Mapping) else None
    if gflops is None and gbs is None:
        return None
    threads = entry.get("threads")
    return Peak(device_kind(device), dtype, gflops, gbs, threads if type(threads) is int else None)


def measured(env: Mapping[str, Any] | None) -> list[Peak]:
    """Every usable peak a run stored (its ``env``): one per device and GEMM dtype."""
    entries = (env or {}).get("peak") if isinstance(env, Mapping) else None
    out = []
    for device, entry in entries.items() if isinstance(entries, Mapping) else ():
        gemm = entry.get("gemm") if isinstance(entry, Mapping) else None
        dtypes = sorted(map(str, gemm)) if isinstance(gemm, Mapping) and gemm else ["fp32"]
        out += [p for p in (peak_of(env, str(device), d) for d in dtypes) if p is not None]
    return out


def summary(env: Mapping[str, Any] | None) -> str:
    """One line for a report's footer: ``peak cpu (2 threads): fp32 GEMM 95.1 GFLOP/s, bandwidth 11.2 GB/s``."""
    entries = (env or {}).get("peak") if isinstance(env, Mapping) else None
    if not isinstance(entries, Mapping) or not entries:
        return "peak not measured in this run"
    parts = []
    for device in sorted(entries, key=str):
        entry = entries[device]
        if not isinstance(entry, Mapping) or "error" in entry:
            why = entry.get("error") if isinstance(entry, Mapping) else None
            parts.append(f"peak {device} not measured" + (f" ({why})" if isinstance(why, str) else ""))
            continue
        gemm = entry.get("gemm") if isinstance(entry.get("gemm"), Mapping) else {}
        flops = [f"{d} GEMM {_num(g.get('gflops'))} GFLOP/s" for d, g in gemm.items() if isinstance(g, Mapping)]
        bw = entry.get("bandwidth") if isinstance(entry.get("bandwidth"), Mapping) else {}
        threads = entry.get("threads")
        where = f"{device} ({threads} threads)" if type(threads) is int else str(device)
        parts.append(f"peak {where}: " + ", ".join([*flops, f"bandwidth {_num(bw.get('gbs'))} GB/s"]))
    return "; ".join(parts)


def _num(x: Any) -> str:
    v = _positive(x)
    return "?" if v is None else f"{v:.4g}"
