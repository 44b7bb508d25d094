"""The ``seq`` metric: per-token cost and backbone size of a sequence model's cell.

* ``tokens``: tokens per call, ``batch_size x seq_len`` (an encoder-decoder reads ``seq_len`` source and
  ``seq_len`` target tokens per sequence and is counted per target position, as latency's ``tokens_per_s``).
* ``macs_per_token``: the forward's exact MACs (``bench.flops.count_flops``, the same count as the
  ``flops`` metric) divided by ``tokens``. Attention makes it grow with ``seq_len``; a recurrence keeps it flat.
* ``backbone_params``, ``backbone_macs``, ``backbone_macs_per_token``: the same for ``model.backbone`` alone
  (without embeddings and heads), when the model has one -- what the seq-backbones tiers budget.

Counting runs on a meta copy of the model, so it costs no arithmetic and leaves ``ctx.model`` untouched.
"""

from __future__ import annotations

from typing import Any

from bench.catalogue import Column
from bench.metrics import MetricContext
from bench.registry import register_metric

COLUMNS = tuple(
    Column(name, csv=False)
    for name in ("tokens", "macs_per_token", "backbone_params", "backbone_macs", "backbone_macs_per_token")
)


@register_metric("seq", columns=COLUMNS, order=60)
def seq_metric(ctx: MetricContext) -> dict[str, Any]:
    """Tokens per call, MACs per token, and the backbone's parameters and MACs (see the module docstring)."""
    from bench.flops import count_flops

    ctx.report_phase("seq")
    key = ctx.cell.key
    if key.seq_len is None:
        raise ValueError(f"the seq metric needs cells with a seq_len; {key.id} has none")
    tokens = key.batch_size * key.seq_len
    count = count_flops(ctx.model, ctx.inputs)
    out: dict[str, Any] = {"tokens": tokens, "macs_per_token": count.macs / tokens}
    backbone = getattr(ctx.model, "backbone", None)
    if backbone is not None:
        path = next(name for name, m in ctx.model.named_modules() if m is backbone)
        macs = count.by_module.get(path)
        if macs is None:  # a container (ModuleDict) is never called itself: add up its children
            parts = [
                v for k, v in count.by_module.items() if k.startswith(f"{path}.") and "." not in k[len(path) + 1 :]
            ]
            macs = sum(parts) if parts else None
        out["backbone_params"] = sum(p.numel() for p in backbone.parameters())
        out["backbone_macs"] = macs
        out["backbone_macs_per_token"] = None if macs is None else macs / tokens
    return out
