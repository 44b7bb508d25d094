"""The two formula tables, the decorators that fill them, and the helpers every family uses.

Shape helpers read element counts off tensors (nested ones included); the per-element builders
(``_per_out``, ``_per_in``, ``_bias_out``) and the cost constants serve the other-FLOPs estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

#: ``(inputs, outputs) -> count`` -- a pure function of shapes (and a few scalar arguments).
Formula = Callable[[Sequence[Any], Any], int]

aten = torch.ops.aten

MAC_FORMULAS: dict[Any, Formula] = {}
OTHER_FORMULAS: dict[Any, Formula] = {}


def _aten_ops(*names: str) -> list[Any]:
    """The aten op packets (or ``packet.overload``) that exist in this torch build."""
    found = []
    for name in names:
        packet_name, _, overload = name.partition(".")
        packet = getattr(aten, packet_name, None)
        if packet is None:
            continue
        if overload:
            op = getattr(packet, overload, None)
            if op is not None:
                found.append(op)
        else:
            found.append(packet)
    return found


def macs(*names: str) -> Callable[[Formula], Formula]:
    """Register a MAC formula for the named aten ops (missing ones in this torch are skipped)."""

    def deco(fn: Formula) -> Formula:
        for op in _aten_ops(*names):
            MAC_FORMULAS[op] = fn
        return fn

    return deco


def other(*names: str) -> Callable[[Formula], Formula]:
    """Register an other-FLOPs formula (norm, softmax, pooling, elementwise...) for the named ops."""

    def deco(fn: Formula) -> Formula:
        for op in _aten_ops(*names):
            OTHER_FORMULAS[op] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------
# shape helpers


def numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, list | tuple):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def out_numel(outputs: Any) -> int:
    t = _first_tensor(outputs)
    return 0 if t is None else _tensor_numel(t)


def _tensor_numel(t: Tensor) -> int:
    if t.is_nested:
        return int(sum(numel(s) for s in t._nested_tensor_size().tolist()))
    return t.numel()


def _arg(inputs: Sequence[Any], i: int, default: Any = None) -> Any:
    return inputs[i] if len(inputs) > i else default


# ---------------------------------------------------------------------------------------------
# Other FLOPs: estimates, one documented constant per family (not MACs, never added to them).

#: scalar operations per element of the op's input (or output where noted)
SOFTMAX_COST = 5  # max, subtract, exp, sum, divide
NORM_COST = 5  # mean, variance, subtract, scale, affine (train-mode batch norm, layer/group norm)
NORM_EVAL_COST = 2  # batch norm with running stats: one scale and one shift
RMS_NORM_COST = 4  # square, mean, rsqrt-scale, affine


def _bias_out(bias_index: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        return out_numel(outputs) if _arg(inputs, bias_index) is not None else 0

    return f


def _per_out(cost: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        return cost * out_numel(outputs)

    return f


def _per_in(cost: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        t = _first_tensor(inputs)
        return 0 if t is None else cost * _tensor_numel(t)

    return f
