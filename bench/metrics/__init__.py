"""Metrics: one file per metric, each a function ``(ctx: MetricContext) -> dict`` registered with its columns.

A metric returns plain values for the record's ``metrics`` mapping (names carry units:
``latency_p50_ms``, ``peak_memory_mb``), declared as ``bench.catalogue.Column`` s where it is registered
(``bench.registry.register_metric``), and may put raw arrays under ``ctx.samples``. A metric that needs
another's values (a derived metric) names those columns (``needs``) and reads them from ``ctx.results``.
A metric never prints and never writes files.

This package imports no torch at import time, so reading the catalogue stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bench.spec import CellSpec

if TYPE_CHECKING:
    import torch


@dataclass
class MetricContext:
    """What a metric sees: the built model, its inputs, the cell being measured and what was measured so far."""

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
    # The values the cell's earlier metrics returned (read-only; the worker updates it after each metric):
    # what a derived metric reads, e.g. ``ctx.results["macs"]`` (its ``needs`` run first).
    results: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The cell's execution as applied (``bench.execution.Applied``): set by the worker; None: eager as given.
    execution: Any = None
