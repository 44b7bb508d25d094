"""aigc-bench: matched-size benchmarks of deep-learning backbones.

Public API (imported lazily so that ``import bench`` stays cheap in worker processes)::

    bench.count_flops(model, example_inputs)            -> FlopCount (.macs, .flops, ...)
    bench.measure_latency(model, example_inputs, ...)   -> LatencyMeasurement (raw samples kept)
    bench.measure_memory(model, example_inputs, ...)    -> MemoryMeasurement
    bench.load_results(paths)                           -> pandas.DataFrame, one row per cell

``measure_latency`` times under the process's own ``malloc`` by default (``allocator="system"``, as
``torch.utils.benchmark`` does); ``allocator="steady"`` times as ``aigc-bench run`` does. The measuring
calls leave the caller's process as they found it -- threads, grad mode, torch's RNG and flags, and
``malloc`` no slower than before (see ``bench.metrics._malloc``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "count_flops": "bench.flops",
    "measure_latency": "bench.metrics.latency",
    "measure_memory": "bench.metrics.memory",
    "load_results": "bench.store",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
