"""The ``energy`` metric: joules per sample, where the machine tells it (RAPL on CPU, NVML on CUDA).

After the latency window, the cell's step runs again for about ``WINDOW_S`` seconds between two reads of the
device's energy counter: the package domains of ``/sys/class/powercap/intel-rapl:*`` (CPU; whole packages,
so idle power and other processes are in it) or NVML's total energy (``pynvml``; the whole GPU). Where the
counter cannot be read (no powercap, RAPL readable by root only, no ``pynvml``, a GPU without the counter)
the values are absent -- never zero, never estimated -- and ``energy_source`` says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.catalogue import Column
from bench.metrics import MetricContext
from bench.registry import register_metric

#: seconds of steps between the two counter reads (RAPL updates every ~1 ms, NVML every ~20-100 ms)
WINDOW_S = 1.0
#: at most this many steps in the window
MAX_CALLS = 10_000
POWERCAP = Path("/sys/class/powercap")

COLUMNS = (
    Column("energy_j_per_sample", unit="J", better="lower",
           description="energy counter difference over the window / samples processed (absent when unreadable)"),
    Column("avg_power_w", unit="W", description="mean power over the energy window"),
    Column("energy_window_s", unit="s", csv=False),
    Column("energy_source", csv=False, description="rapl:<domains> | nvml | unavailable: <why>"),
)  # fmt: skip


#: a meter: (read joules) -> float, its name; or None and why not
Meter = tuple[Callable[[], float] | None, str]


def rapl_meter(root: Path | None = None) -> Meter:
    """A reader of the CPU packages' cumulative energy (J) from RAPL (``root``: the powercap folder), with
    counter wrap-around handled."""
    root = POWERCAP if root is None else root
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)  # packages, not subzones
    if not domains:
        return None, f"unavailable: no RAPL domains under {root}"
    try:
        names = [(d / "name").read_text().strip() for d in domains]
        ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        for d in domains:
            int((d / "energy_uj").read_text())
    except PermissionError:
        return None, "unavailable: RAPL energy_uj is readable by root only"
    except (OSError, ValueError) as e:
        return None, f"unavailable: RAPL unreadable ({type(e).__name__})"
    last = [0] * len(domains)
    total = [0.0]

    def read() -> float:
        for i, d in enumerate(domains):
            now = int((d / "energy_uj").read_text())
            if last[i]:
                total[0] += ((now - last[i]) % (ranges[i] + 1)) / 1e6  # the counter wraps at max_energy_range_uj
            last[i] = now
        return total[0]

    return read, "rapl:" + ",".join(names)


def nvml_meter(device: Any) -> Meter:
    """A reader of the GPU's total energy (J) from NVML (Volta and later)."""
    try:
        import pynvml
    except ImportError:
        return None, "unavailable: pynvml is not installed (pip install nvidia-ml-py)"
    import torch

    try:
        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        try:  # NVML numbers GPUs by PCI order; CUDA may not (CUDA_VISIBLE_DEVICES, FASTEST_FIRST)
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus.encode())
        except (AttributeError, pynvml.NVMLError):
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as e:
        return None, f"unavailable: NVML: {e}"
    return (lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3), "nvml"


@register_metric("energy", columns=COLUMNS, needs=("latency_p50_ms",), order=45)
def energy_metric(ctx: MetricContext) -> dict[str, Any]:
    """Joules per sample and mean power over a window of the cell's step, or why they are absent."""
    from bench.metrics._step import make_step

    read, source = nvml_meter(ctx.device) if ctx.device.type == "cuda" else rapl_meter()
    if read is None:
        ctx.notes.append(f"energy: not measured: {source.removeprefix('unavailable: ')}")
        return {"energy_j_per_sample": None, "avg_power_w": None, "energy_window_s": None, "energy_source": source}
    ctx.report_phase("energy")
    step = make_step(ctx.model, ctx.inputs, ctx.cell.key.mode)
    calls = max(3, min(MAX_CALLS, math.ceil(WINDOW_S / (ctx.results["latency_p50_ms"] / 1e3))))
    sync = _synchronizer(ctx.device)
    step()  # warm: the window holds steady-state steps only
    sync()
    before, t0 = read(), time.perf_counter()
    for _ in range(calls):
        step()
    sync()
    joules, seconds = read() - before, time.perf_counter() - t0
    samples = calls * ctx.cell.key.batch_size
    return {"energy_j_per_sample": joules / samples, "avg_power_w": joules / seconds, "energy_window_s": seconds,
            "energy_source": source}  # fmt: skip


def _synchronizer(device: Any) -> Callable[[], None]:
    if device.type != "cuda":
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)
