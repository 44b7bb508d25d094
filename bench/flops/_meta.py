"""Moving models and inputs to the meta device, and mapping over nested inputs."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from bench.flops import _ops

# ---------------------------------------------------------------------------------------------
# moving things to meta


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are meta tensors.

    The meta tensors are put in deepcopy's memo before copying, so the real weights are never
    duplicated (a copy of a 1 GB model costs nothing); shared/tied tensors stay shared.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) in memo:
            continue
        meta = torch.empty_like(t, device="meta")
        if isinstance(t, nn.Parameter):
            memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad)
        else:
            memo[id(t)] = _ops.keep_host_values(t, meta)  # e.g. sequence offsets kept as a buffer
    return copy.deepcopy(model, memo)


def map_tensors(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor in nested tuples/lists/dicts/PackedSequences."""
    if isinstance(x, PackedSequence):
        # batch_sizes must stay a CPU int64 tensor (the RNN kernels read it as a host array).
        idx = [None if i is None else fn(i) for i in (x.sorted_indices, x.unsorted_indices)]
        return PackedSequence._make([fn(x.data), x.batch_sizes, *idx])
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)._make(map_tensors(v, fn) for v in x)
    if isinstance(x, list | tuple):
        return type(x)(map_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    return x


def _to_meta(t: Tensor) -> Tensor:
    return _ops.keep_host_values(t, t.to("meta"))


def _keep_lengths_on_host(t: Tensor) -> Tensor:
    if t.dim() == 1 and t.dtype == torch.int64 and t.device.type == "cpu":
        return t
    return _to_meta(t)


def _any_meta(x: Any) -> bool:
    found = False

    def check(t: Tensor) -> Tensor:
        nonlocal found
        found = found or t.device.type == "meta"
        return t

    map_tensors(x, check)
    return found
