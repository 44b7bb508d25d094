"""The ``execution`` metric: what running the cell's execution cost before its steady state.

``first_call_ms``: the cold first call after the model was built (one forward, or one training step), eager
too -- the "time to first result" of serving. ``compile_s``: from the ``torch.compile`` call to the end of
that first call (compiled executions only). ``graph_breaks`` and ``recompiles``: dynamo's own counts
(``torch._dynamo.utils.counters['graph_break']`` and its compilation records with a recompile reason) over
the whole cell; the worker refreshes them after the cell's last metric. ``dtype_applied``: how the cell's
dtype was applied -- ``weights`` (the model cast to it) or ``autocast`` (a float32 model under autocast).

The worker applies the execution (``bench.execution``) and runs this metric before any other metric that
runs the executed model, so the first call is cold. See docs/executions.md.
"""

from __future__ import annotations

from typing import Any

from bench.catalogue import Column
from bench.metrics import MetricContext
from bench.registry import register_metric

COLUMNS = (
    # Not judged by compare (no ``Judge``): one cold measurement each, and declaring a judge would add them to
    # every comparison's thresholds, eager-only runs' too.
    Column("compile_s", unit="s", better="lower", header="compile (s)", clock=True, export=True,
           description="torch.compile call to the end of the first call (compiled executions)"),
    Column("first_call_ms", unit="ms", better="lower", header="first call (ms)", clock=True, export=True,
           description="the cold first call after the build"),
    Column("graph_breaks", better="lower", description="dynamo graph breaks over the cell (compiled executions)"),
    Column("recompiles", better="lower", description="dynamo recompilations over the cell (compiled executions)"),
    Column("dtype_applied", description="weights (the model cast to the dtype) or autocast (float32 under autocast)"),
)  # fmt: skip


@register_metric("execution", columns=COLUMNS, order=35)
def execution_metric(ctx: MetricContext) -> dict[str, Any]:
    """``first_call_ms``, ``compile_s``, ``graph_breaks``, ``recompiles`` and ``dtype_applied`` of the cell."""
    from bench.execution import EAGER, apply, measure_first_call

    ctx.report_phase("execution")
    applied = ctx.execution
    if applied is None:  # a context built without an execution (a direct call): the model as given is eager
        applied = ctx.execution = apply(ctx.model, ctx.inputs, EAGER, device=ctx.device, dtype=ctx.cell.key.dtype)
    ex = applied.execution
    if ex.compiled:
        ctx.report_phase(f"execution: compiling ({ex.name})")
    out: dict[str, Any] = measure_first_call(applied, ctx.cell.key.mode, ctx.device)
    out.update(applied.counts())
    out["dtype_applied"] = "autocast" if ex.autocast else "weights"
    return out
