"""Bytes moved by one op: its distinct input and output tensors (weights included), the no-reuse upper bound.

For each op the counter sees that does work -- one with a MAC or other-FLOPs formula, or one of the
data-movement ops below (copies, concatenation, padding, gathers: no arithmetic, but they read and write
memory) -- every distinct tensor among its inputs (activations, weights, biases, running statistics) is
read once and every distinct output written once, at the tensor's own element size (the cell's dtype for
floating tensors). Summed over ops this is the traffic of a machine that keeps nothing in cache between
ops: an upper bound (fused kernels, cache reuse and in-place buffers move less; see docs/efficiency.md).

A tensor counts its distinct elements: a broadcast (stride-0) dimension is read once, so ``expand`` does
not inflate the count. Views have no bytes of their own (their reader counts them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from torch import Tensor

from bench.flops._ops.registry import _aten_ops

#: ops with no formula (work-free for FLOPs) that still copy memory: their inputs and outputs are bytes moved
MOVE_OP_NAMES = """
clone copy copy_ _to_copy contiguous _copy_from cat stack hstack vstack constant_pad_nd pad reflection_pad1d
reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d replication_pad3d _pad_circular flip roll
repeat repeat_interleave tile index index_select index_put index_put_ _index_put_impl_ gather scatter scatter_
take take_along_dim masked_select masked_scatter masked_scatter_ masked_fill masked_fill_ slice_scatter
select_scatter diagonal_scatter as_strided_scatter tril triu tril_ triu_ im2col pixel_shuffle pixel_unshuffle
channel_shuffle native_channel_shuffle embedding _unsafe_index _unsafe_index_put narrow_copy
""".split()

MOVE_OPS: frozenset[Any] = frozenset(_aten_ops(*MOVE_OP_NAMES))


def moves(func: Any) -> bool:
    """Whether ``func`` (an op overload) is a data-movement op: bytes moved, no FLOPs."""
    return func in MOVE_OPS or getattr(func, "overloadpacket", None) in MOVE_OPS


def tensors(x: Any) -> Iterator[Tensor]:
    """Every tensor in ``x`` (a tensor, or lists/tuples of them, nested: RNN weights and states)."""
    if isinstance(x, Tensor):
        yield x
    elif isinstance(x, list | tuple):
        for v in x:
            yield from tensors(v)


def tensor_bytes(t: Tensor) -> int:
    """Bytes of ``t`` 's distinct elements: broadcast (stride-0) dimensions count once."""
    try:
        n = math.prod(int(s) for s, st in zip(t.shape, t.stride(), strict=True) if st != 0)
    except (RuntimeError, NotImplementedError, TypeError):  # nested/sparse tensors have no plain strides
        n = t.numel()
    return int(n) * t.element_size()


def op_bytes(inputs: Any, outputs: Any) -> int:
    """Bytes read (each distinct input tensor once) plus bytes written (each distinct output once)."""
    return _distinct_bytes(inputs) + _distinct_bytes(outputs)


def _distinct_bytes(x: Any) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors(x):
        if id(t) not in seen:  # ``mul(x, x)`` reads x once
            seen.add(id(t))
            total += tensor_bytes(t)
    return total
