"""The ``efficiency`` metric, derived: achieved FLOP/s, MFU, bandwidth use and the roofline bound of a cell.

Computed from what a run stored -- the cell's FLOPs, median latency and bytes moved, and the machine peak its
run measured (``env.peak``, ``bench.peak``) -- whenever results are read (``bench.catalogue.derive``), never in
the worker: a run measured before these columns existed gets them on re-report, and the values are the same
however often they are recomputed. Formulas and caveats: docs/efficiency.md.

* ``achieved_gflops = flops / median latency`` (``flops`` = 2 x MACs of the whole batch; a training step
  counts 3 x the forward FLOPs, the usual estimate of forward + backward).
* ``mfu = achieved / peak GEMM GFLOP/s`` at the cell's device, dtype and the run's threads.
* ``bandwidth_util = bytes_moved / median latency / peak bandwidth`` (inference; ``bytes_moved`` is a no-reuse
  upper bound, so this can exceed 1 when caches serve what it counts twice).
* ``attainable_gflops = min(peak, arith_intensity x bandwidth)``: the roofline at the cell's intensity, and
  ``bound``: ``compute`` when that is the GEMM ceiling, else ``memory``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.catalogue import Column, derived_metric
from bench.numbers import finite

#: a training step's FLOPs per forward FLOP (backward costs about twice the forward)
TRAIN_FLOPS_FACTOR = 3

COLUMNS = (
    Column("achieved_gflops", unit="GFLOP/s", better="higher",
           description="FLOPs (2 x MACs, whole batch; 3x forward for a training step) / median latency"),
    Column("mfu", unit="fraction", better="higher", header="MFU",
           description="achieved_gflops / the run's measured GEMM peak (device, dtype, threads)"),
    Column("bandwidth_util", unit="fraction",
           description="bytes_moved / median latency / the run's measured memory bandwidth (inference)"),
    Column("attainable_gflops", unit="GFLOP/s",
           description="roofline at the cell's intensity: min(GEMM peak, arith_intensity x bandwidth)"),
    Column("bound", csv=True, description="compute or memory: the roof above the cell's arithmetic intensity"),
)  # fmt: skip


@derived_metric("efficiency", columns=COLUMNS, needs=("flops", "latency_p50_ms"), order=35)
def efficiency(values: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's efficiency columns that its stored values and its run's peak support (absent otherwise)."""
    from bench.peak import peak_of

    flops, latency_ms = finite(values["flops"]), finite(values["latency_p50_ms"])
    if flops is None or latency_ms is None or latency_ms <= 0:
        return {}
    seconds = latency_ms / 1e3
    train = values.get("mode") == "train"
    achieved = flops * (TRAIN_FLOPS_FACTOR if train else 1) / seconds / 1e9
    out: dict[str, Any] = {"achieved_gflops": achieved}
    peak = peak_of(run.get("env"), str(values.get("device")), str(values.get("dtype")))
    if peak is None:
        return out
    if peak.gflops is not None:
        out["mfu"] = achieved / peak.gflops
    moved = finite(values.get("bytes_moved"))
    if train or moved is None or moved <= 0 or peak.bandwidth_gbs is None:
        return out  # a training step's bytes (backward, optimizer) are not counted
    out["bandwidth_util"] = moved / seconds / 1e9 / peak.bandwidth_gbs
    if peak.gflops is not None:
        out.update(roofline(flops / moved, peak.gflops, peak.bandwidth_gbs))
    return out


def roofline(intensity: float, peak_gflops: float, bandwidth_gbs: float) -> dict[str, Any]:
    """The roofline at ``intensity`` (FLOP/byte): attainable GFLOP/s and which roof bounds it."""
    memory_roof = intensity * bandwidth_gbs
    return {"attainable_gflops": min(peak_gflops, memory_roof),
            "bound": "compute" if memory_roof >= peak_gflops else "memory"}  # fmt: skip
