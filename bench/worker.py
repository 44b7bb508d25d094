"""Measure one cell inside its own process and turn the outcome into a record.

Runs in a fresh ``spawn``-ed process per cell (see ``bench.executors.LocalProcessExecutor``), so memory is measured from a
clean baseline and a crash, an out-of-memory kill or a hang takes down only this cell. The worker dies
with its driver (``die_with_parent``) and streams each metric to it as soon as it is measured, so a cell
killed later keeps what it had measured.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from bench.result import CellResult, Status, variant_dict
from bench.spec import CellSpec

log = logging.getLogger(__name__)

#: A cell's error is one line of at most this many characters: it goes in tables, terminals and PR comments,
#: where a 20 kB exception text (a C++ frame dump) would bury everything else. The traceback keeps the rest.
MAX_ERROR_CHARS = 500
#: Innermost frames kept in a failed cell's ``traceback``: enough to find the failing call, small in the file.
TRACEBACK_FRAMES = 8
#: How often the portable watchdog checks that the driver still lives (``die_with_parent``): an orphan ends
#: within this; checking costs one syscall, so often enough for CI, rarely enough to be free.
PARENT_POLL_S = 1.0


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class CellSkipped(Exception):
    """The cell cannot run on this device/dtype; the message is the reason."""


def _unsupported_dtype(exc: BaseException) -> bool:
    # How torch says a kernel does not exist for a dtype on a device.
    msg = str(exc)
    return "not implemented for" in msg or ("does not support" in msg and "type" in msg.lower())


def check_dtype_supported(device: str, dtype_name: str) -> None:
    """Skip combinations the hardware cannot run, before building anything."""
    import torch

    if device == "cuda" and dtype_name == "bf16" and not torch.cuda.is_bf16_supported():
        raise CellSkipped(f"{torch.cuda.get_device_name(0)} does not support bf16")


#: ``variant_record(cell)``: the variant part of a record (kept under its old name).
variant_record = variant_dict


def base_record(cell: CellSpec, status: Status | str, error: str | None = None) -> dict[str, Any]:
    """A record with no measurements yet (used for failures, timeouts and skips too), in its stored form."""
    return CellResult.pending(cell, status, error).to_dict()


#: ``report_metric(name, values, new_samples)``: one metric's values and the sample arrays it added.
MetricCallback = Callable[[str, dict[str, Any], dict[str, list[float]]], None]


def measure_cell(
    cell: CellSpec, report_phase: Any = lambda phase: None, report_metric: MetricCallback | None = None
) -> dict[str, Any]:
    """``measure_result`` in the stored form: the record the executors pass on and the store writes."""
    return measure_result(cell, report_phase, report_metric).to_dict()


def measure_result(
    cell: CellSpec, report_phase: Any = lambda phase: None, report_metric: MetricCallback | None = None
) -> CellResult:
    """Build the cell's model and run its profile's metrics in order; never raises.

    A metric runs after the metrics whose columns it needs (``bench.catalogue.run_order``) and sees their
    values in ``ctx.results``; one whose needs were not measured is not run (a note says so). A metric
    that fails marks the cell ``failed`` with a one-line error; the metrics measured before it are kept.
    ``report_phase(name)`` is called before each metric (and by metrics that report progress);
    ``report_metric`` after each, so a driver that must kill the cell later still has them.
    """
    from bench.store import utc_now
    from bench.validity import verdict_metrics

    t0 = time.perf_counter()
    started = utc_now()
    baseline = _prepare_process(cell)
    values: dict[str, Any] = {}
    ctx = None
    status, error, trace = Status.OK, None, None
    phase = "build"
    try:
        ctx = _context(cell, report_phase, baseline)
        ctx.results = MappingProxyType(values)  # a live, read-only view: each metric sees the earlier ones' values
        sent: dict[str, int] = {}  # sample array -> length already reported
        for name in _metric_order(cell):
            phase = name
            got = _run_metric(name, ctx, values, report_phase)
            values.update(got)
            if report_metric is not None:
                report_metric(name, got, new_samples(ctx.samples, sent))
        if "first_call_ms" in values and ctx.execution is not None:  # dynamo's counts over the whole cell
            values.update(ctx.execution.counts())
    except CellSkipped as e:
        status, error = Status.SKIPPED, str(e)
    except Exception as e:  # noqa: BLE001 -- one cell's failure must never sink the run
        if _unsupported_dtype(e):
            status, error = Status.SKIPPED, f"{cell.key.dtype} on {cell.key.device}: {_one_line(e)}"
        else:
            status, error = Status.FAILED, f"{phase}: {type(e).__name__}: {_one_line(e)}"
            trace = traceback.format_exc(limit=TRACEBACK_FRAMES)
    finally:
        if ctx is not None and ctx.execution is not None:
            ctx.execution.close()  # dynamo's counters as they were (an in-process run's caller)
    # A skipped or failed cell keeps no samples or notes of its own (as before), only its metrics so far.
    kept = ctx is not None and status is Status.OK
    values.update(verdict_metrics(values))  # valid / invalid / unknown (bench.validity)
    return replace(
        CellResult.pending(cell, status, error),
        metrics=values,
        samples={k: [float(x) for x in v] for k, v in ctx.samples.items()} if kept else {},
        notes=tuple(ctx.notes) if kept else (),
        started_at=started,
        duration_s=round(time.perf_counter() - t0, 3),
        traceback=trace,
    )


def _prepare_process(cell: CellSpec) -> dict[str, Any]:
    """Import what measuring needs, set the process up for the cell; the memory baseline (RSS) before building.

    Imports (timm, the suite's module, every metric, everything the worker calls) come first, so that memory
    "above baseline" is the model's and the step's, not the libraries'. The run's malloc regime holds for
    the whole process; measurements restore to it (bench.metrics._malloc).
    """
    import torch

    from bench.metrics._malloc import apply_process_regime

    preload()
    apply_process_regime(cell.allocator)
    baseline: dict[str, Any] = {"rss_bytes": _rss_bytes()}
    if cell.threads:
        torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    return baseline


def preload() -> None:
    """Import everything measuring a cell needs (timm, torch, every metric and input maker): a worker's fixed
    start-up cost, paid before its memory baseline, or ahead of time by a pre-started worker (``warm_main``)."""
    import timm  # noqa: F401
    import torch  # noqa: F401

    import bench.allocator
    import bench.build
    import bench.catalogue
    import bench.env
    import bench.inputs
    import bench.metrics  # noqa: F401
    from bench.registry import INPUTS, METRICS

    METRICS.names()
    INPUTS.names()


def _context(cell: CellSpec, report_phase: Any, baseline: dict[str, Any]) -> Any:
    """Build the cell's model and inputs on its device and dtype: the context every metric sees."""
    import torch

    from bench.build import build_model
    from bench.execution import NotApplicable, apply, check_applicable, weights_dtype
    from bench.inputs import torch_dtype
    from bench.metrics import MetricContext
    from bench.registry import INPUTS

    check_dtype_supported(cell.key.device, cell.key.dtype)
    device = torch.device(cell.key.device)
    try:  # an execution this cell cannot run (channels_last without images, CUDA graphs on CPU): skipped
        check_applicable(cell.key.execution, device.type)
    except NotApplicable as e:
        raise CellSkipped(str(e)) from None
    dtype = torch_dtype(weights_dtype(cell.key.execution, cell.key.dtype))  # fp32 under autocast
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline["cuda_allocated_bytes"] = torch.cuda.memory_allocated()
    report_phase("build")
    model = build_model(cell.variant).to(device=device, dtype=dtype)
    inputs = INPUTS.get(cell.input_kind)(cell, cell.key.batch_size, device, dtype)
    try:
        applied = apply(model, inputs, cell.key.execution, device=device, dtype=cell.key.dtype, cold_cache=True)
    except NotApplicable as e:
        raise CellSkipped(str(e)) from None
    return MetricContext(cell=cell, model=applied.model, inputs=applied.inputs, device=device, dtype=dtype,
                         report_phase=report_phase, baseline=baseline, execution=applied)  # fmt: skip


def _metric_order(cell: CellSpec) -> list[str]:
    """The profile's metrics in the order they run: the malloc regime's (``bench.allocator.metric_order``),
    then each after the metrics it needs (``bench.catalogue.run_order``), the execution's first call before
    the other metrics that run the executed model (``bench.execution.first_call_first``)."""
    from bench.allocator import metric_order
    from bench.catalogue import run_order
    from bench.execution import first_call_first

    return first_call_first(run_order(metric_order(cell.profile.metrics, cell.allocator)))


def _run_metric(name: str, ctx: Any, values: Mapping[str, Any], report_phase: Any) -> dict[str, Any]:
    """One metric's values; the latency metric's carry the machine load around it (bench.validity)."""
    from bench.catalogue import missing_needs
    from bench.env import latency_load, load_1m
    from bench.registry import METRICS

    missing = missing_needs(name, values)
    if missing:
        ctx.notes.append(f"{name}: not measured: it needs {', '.join(missing)}, which this cell did not measure")
        return {}
    report_phase(name)
    load = load_1m()  # the load around the latency measurement goes in its record (bench.validity)
    from bench.execution import context_for

    got = dict(METRICS.get(name)(context_for(name, ctx)))  # counting metrics see the eager model
    got.update(latency_load(load) if name == "latency" else {})
    return got


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:MAX_ERROR_CHARS] + ("..." if len(text) > MAX_ERROR_CHARS else "")


def new_samples(samples: Mapping[str, Sequence[float]], sent: dict[str, int]) -> dict[str, list[float]]:
    """The sample arrays that are new or grew since the last call (``sent`` remembers lengths; updated)."""
    out = {k: [float(x) for x in v] for k, v in samples.items() if sent.get(k) != len(v)}
    sent.update((k, len(v)) for k, v in out.items())
    return out


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: Exit status of a worker that found its driver gone (nobody reads it: the driver is dead).
EXIT_ORPHANED = 70


def die_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> bool:
    """Make this process end when its driver (``parent_pid``) ends, however the driver dies.

    Without this, ``kill -9`` of the driver (what CI timeouts send) leaves the worker running to the end
    of its cell, and a hanging cell forever: the timeout lives in the driver. On Linux the kernel sends
    SIGKILL when the parent dies (``PR_SET_PDEATHSIG``; it fires when the *thread* that started the worker
    ends, and the driver's thread waits in ``bench.executors.measure_in_subprocess`` for as long as the
    worker lives). A daemon thread that checks ``getppid()`` every ``poll_s`` seconds is the portable
    fallback. Returns whether the kernel signal is armed.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                               ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0  # fmt: skip
        except (OSError, AttributeError):  # no libc symbol table (static builds): the watchdog still holds
            armed = False
    if os.getppid() != parent_pid:  # the driver died before the signal was armed
        os._exit(EXIT_ORPHANED)
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), name="aigc-bench-watch-driver",
                     daemon=True).start()  # fmt: skip
    return armed


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:  # re-parented to init or a subreaper: the driver is gone
            os._exit(EXIT_ORPHANED)


#: torch loggers whose warnings a worker keeps to itself: torch.compile on a CPU-only machine logs "No CUDA runtime
#: is found, using CUDA_HOME=..." from torch.utils.cpp_extension once per compiled cell, 18 lines in an
#: executions run's output that say nothing about the cell (a real failure still ends in the cell's record)
QUIET_LOGGERS = ("torch.utils.cpp_extension",)


def quiet_worker_logs() -> None:
    """Raise ``QUIET_LOGGERS`` to ERROR in this worker process (its own process: nothing else is touched)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def child_main(cell: CellSpec, queue: Any, parent_pid: int | None = None, env: Mapping[str, str] | None = None) -> None:
    """Entry point of the worker process: stream phases and each metric's values, then send the record.

    Messages: ``("phase", text)``, ``("metric", name, values, new_samples)``, ``("record", record)``.
    ``parent_pid``: the driver's pid; the worker exits when that process is gone (``die_with_parent``).
    ``env``: variables set first (``CUDA_VISIBLE_DEVICES`` of the worker's device slot, ``bench.executors_parallel``).
    """
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.environ.update(env or {})
    quiet_worker_logs()
    queue.put(("phase", "start"))
    rec = measure_cell(
        cell,
        report_phase=lambda p: queue.put(("phase", p)),
        report_metric=lambda name, values, samples: queue.put(("metric", name, values, samples)),
    )
    queue.put(("record", rec))


def warm_main(inbox: Any, queue: Any, parent_pid: int | None = None) -> None:
    """Entry point of a pre-started worker (``bench.executors.WarmWorker``): import what measuring needs while
    the previous cell runs, then wait for exactly one ``(cell, env)`` on ``inbox``, measure it as
    ``child_main`` does, and exit. ``env`` (``CUDA_VISIBLE_DEVICES``) is set before anything touches CUDA."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    preload()
    cell, env = inbox.get()
    child_main(cell, queue, None, env)
