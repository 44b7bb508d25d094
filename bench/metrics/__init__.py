"""Metrics: one file per metric, each a function ``(ctx: MetricContext) -> dict``.

A metric returns plain values for the record's ``metrics`` mapping (names carry units:
``latency_p50_ms``, ``peak_memory_mb``) and may put raw arrays under ``ctx.samples``. A metric
never prints and never writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.spec import CellSpec


@dataclass
class MetricContext:
    """What a metric sees: the built model, its inputs and the cell being measured."""

    cell: CellSpec
    model: torch.nn.Module
    inputs: tuple[Any, ...]
    device: torch.device
    dtype: torch.dtype
    # Filled as metrics run: raw arrays (e.g. "latency_ms") and notes kept in the record.
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Called with a phase name ("latency", ...) so the progress bar can show it.
    report_phase: Callable[[str], None] = lambda phase: None
    # Memory before the model was built (bytes of RSS on CPU), set by the worker.
    baseline: dict[str, float] = field(default_factory=dict)
