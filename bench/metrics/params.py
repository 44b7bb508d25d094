"""Parameter and buffer counts of the cell's model."""

from __future__ import annotations

from typing import Any

from bench.catalogue import Column, Judge
from bench.metrics import MetricContext
from bench.registry import register_metric

COLUMNS = (
    # A fixed model whose count moves is a changed model: compare reports any change (not gating by default).
    Column("params", header="params", scope="variant", judge=Judge("exact", 0.0, order=4), frame=True, export=True,
           description="parameters (elements; shared ones once)"),
    Column("trainable_params", csv=False, description="parameters with requires_grad"),
    Column("buffers", csv=False, description="buffer elements (e.g. batch-norm statistics)"),
)  # fmt: skip


@register_metric("params", columns=COLUMNS, order=10)
def params_metric(ctx: MetricContext) -> dict[str, Any]:
    """``params`` (all parameters, shared ones once), ``trainable_params`` and ``buffers`` (elements)."""
    ctx.report_phase("params")
    model = ctx.model
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }
