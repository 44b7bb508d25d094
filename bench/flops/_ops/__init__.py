"""The op registry: aten op -> small pure formulas ``(inputs, outputs) -> count``.

Two tables, in the shape of fvcore's handles but keyed by aten ops as ``TorchDispatchMode`` sees
them (after autograd, so composite ops such as ``aten::linear`` or ``aten::einsum`` have already
been decomposed into ``mm``/``bmm``/...; their formulas are kept for callers that meet them whole):

* ``MAC_FORMULAS``: multiply-accumulates of matmul-like work (GEMM, convolution, attention, RNNs).
  Biases are not MACs: a bias add goes to the other table.
* ``OTHER_FORMULAS``: everything else that computes (normalisation, softmax, pooling, activations,
  elementwise, reductions, FFT), as an estimate of scalar operations with a fixed cost per element
  (the costs are documented next to each entry and in ``docs/flops.md``).

An op in neither table is looked up in ``ZERO_OPS`` (work-free: views, copies, factories, indexing,
embeddings, random masks...) and by tag (``torch.Tag.pointwise`` ops cost one other FLOP per
output element, views cost nothing). Anything else is *uncounted* and reported, never silently 0.

``inputs`` is the op's positional arguments with keyword arguments appended in schema order
(see :func:`normalize_inputs`); ``outputs`` is what the op returned.

One module per operator family registers its formulas with ``@macs``/``@other`` (``registry``):
``gemm``, ``conv``, ``attention``, ``recurrent`` and ``other_costs``. Importing this package
imports them all, so every formula is registered.
"""

from __future__ import annotations

from bench.flops._ops import attention, conv, gemm, other_costs, recurrent  # noqa: F401 -- they register formulas
from bench.flops._ops.attention import HOST_VALUES_ATTR, HOST_VALUES_MAX_NUMEL, host_values, keep_host_values
from bench.flops._ops.gemm import einsum_macs
from bench.flops._ops.lookup import ZERO_OP_NAMES, ZERO_OPS, classify, normalize_inputs, op_name
from bench.flops._ops.other_costs import GRID_TAPS_2D, GRID_TAPS_3D
from bench.flops._ops.registry import (
    MAC_FORMULAS,
    NORM_COST,
    NORM_EVAL_COST,
    OTHER_FORMULAS,
    RMS_NORM_COST,
    SOFTMAX_COST,
    Formula,
    aten,
    macs,
    numel,
    other,
    out_numel,
)

__all__ = [
    "GRID_TAPS_2D",
    "GRID_TAPS_3D",
    "HOST_VALUES_ATTR",
    "HOST_VALUES_MAX_NUMEL",
    "MAC_FORMULAS",
    "NORM_COST",
    "NORM_EVAL_COST",
    "OTHER_FORMULAS",
    "RMS_NORM_COST",
    "SOFTMAX_COST",
    "ZERO_OPS",
    "ZERO_OP_NAMES",
    "Formula",
    "aten",
    "classify",
    "einsum_macs",
    "host_values",
    "keep_host_values",
    "macs",
    "normalize_inputs",
    "numel",
    "op_name",
    "other",
    "out_numel",
]
