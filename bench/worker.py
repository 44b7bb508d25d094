"""Measure one cell inside its own process and turn the outcome into a record.

Runs in a fresh ``spawn``-ed process per cell (see ``bench.runner``), so memory is measured from a
clean baseline and a crash, an out-of-memory kill or a hang takes down only this cell.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict
from typing import Any

from bench.spec import CellSpec

log = logging.getLogger(__name__)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            import os

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


def variant_record(cell: CellSpec) -> dict[str, Any]:
    """The variant part of a record: how the model was built and how close it is to its tier."""
    v = cell.variant
    return {
        "builder": v.builder,
        "model_args": v.args,
        "target_params": v.target_params,
        "achieved_params": v.achieved_params,
        "tolerance": v.tolerance,
        "knob": v.knob,
        "knob_value": v.knob_value,
    }


def base_record(cell: CellSpec, status: str, error: str | None = None) -> dict[str, Any]:
    """A record with no measurements yet (used for failures, timeouts and skips too)."""
    return {
        "key": cell.key.to_dict(),
        "variant": variant_record(cell),
        "status": status,
        "error": error,
        "metrics": {},
        "samples": {},
        "notes": [],
        "started_at": None,
        "duration_s": None,
    }


def measure_cell(cell: CellSpec, report_phase: Any = lambda phase: None) -> dict[str, Any]:
    """Build the cell's model and run its profile's metrics in order; never raises.

    A metric that fails marks the cell ``failed`` with a one-line error; the metrics measured
    before it are kept.
    """
    import torch

    from bench.build import build_model
    from bench.env import latency_load, load_1m
    from bench.inputs import torch_dtype
    from bench.metrics import MetricContext
    from bench.registry import INPUTS, METRICS
    from bench.store import utc_now
    from bench.validity import verdict_metrics

    t0 = time.perf_counter()
    rec = base_record(cell, "ok")
    rec["started_at"] = utc_now()
    # Import what building and measuring need (timm, fvcore, the suite's module) before reading the
    # baseline, so that memory "above baseline" is the model's and the step's, not the libraries'.
    METRICS.names()
    INPUTS.names()
    import timm  # noqa: F401

    # The run's malloc regime holds for the whole process; measurements restore to it (bench.metrics._malloc).
    from bench.allocator import metric_order
    from bench.metrics._malloc import apply_process_regime

    apply_process_regime(cell.allocator)
    baseline = {"rss_bytes": _rss_bytes()}
    if cell.threads:
        torch.set_num_threads(cell.threads)
    torch.manual_seed(0)
    phase = "build"
    try:
        check_dtype_supported(cell.key.device, cell.key.dtype)
        device = torch.device(cell.key.device)
        dtype = torch_dtype(cell.key.dtype)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            baseline["cuda_allocated_bytes"] = torch.cuda.memory_allocated()
        report_phase("build")
        model = build_model(cell.variant).to(device=device, dtype=dtype)
        inputs = INPUTS.get(cell.input_kind)(cell, cell.key.batch_size, device, dtype)
        ctx = MetricContext(cell=cell, model=model, inputs=inputs, device=device, dtype=dtype,
                            report_phase=report_phase, baseline=baseline)  # fmt: skip
        for name in metric_order(cell.profile.metrics, cell.allocator):
            phase = name
            load = load_1m()  # the load around the latency measurement goes in its record (bench.validity)
            rec["metrics"].update(METRICS.get(name)(ctx))
            rec["metrics"].update(latency_load(load) if name == "latency" else {})
        rec["samples"] = {k: [float(x) for x in v] for k, v in ctx.samples.items()}
        rec["notes"] = list(ctx.notes)
    except CellSkipped as e:
        rec.update(status="skipped", error=str(e))
    except Exception as e:  # noqa: BLE001 -- one cell's failure must never sink the run
        if _unsupported_dtype(e):
            rec.update(status="skipped", error=f"{cell.key.dtype} on {cell.key.device}: {_one_line(e)}")
        else:
            rec.update(status="failed", error=f"{phase}: {type(e).__name__}: {_one_line(e)}")
            rec["traceback"] = traceback.format_exc(limit=8)
    rec["metrics"].update(verdict_metrics(rec["metrics"]))  # valid / invalid / unknown (bench.validity)
    rec["duration_s"] = round(time.perf_counter() - t0, 3)
    return rec


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:500] + ("..." if len(text) > 500 else "")


def child_main(cell: CellSpec, queue: Any) -> None:
    """Entry point of the worker process: stream phases, then send the record."""
    queue.put(("phase", "start"))
    rec = measure_cell(cell, report_phase=lambda p: queue.put(("phase", p)))
    queue.put(("record", rec))


def cell_summary(cell: CellSpec) -> dict[str, Any]:
    """The cell as plain data (for logs)."""
    return asdict(cell.key)
