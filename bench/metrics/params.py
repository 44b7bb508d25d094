"""Parameter and buffer counts of the cell's model."""

from __future__ import annotations

from typing import Any

from bench.metrics import MetricContext
from bench.registry import register_metric


@register_metric("params")
def params_metric(ctx: MetricContext) -> dict[str, Any]:
    """``params`` (all parameters, shared ones once), ``trainable_params`` and ``buffers`` (elements)."""
    ctx.report_phase("params")
    model = ctx.model
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }
