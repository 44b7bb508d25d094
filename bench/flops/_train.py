"""``count_train_flops``: the MACs of a whole training step -- forward, loss and backward -- at the dispatcher.

``count_flops`` counts one forward pass under ``no_grad``. A training step also runs autograd's backward, whose
kernels reach the same ``TorchDispatchMode`` (``_DispatchCounter``): the matrix products of the gradients
(``mm``/``bmm``/``addmm`` with the existing formulas) and the fused backward kernels with formulas of their own
(``convolution_backward``, the scaled-dot-product attention backward kernels). So the backward is *counted*,
not assumed to be 2x the forward: a first layer whose input needs no gradient costs 1x its forward in the
backward, a frozen (momentum) encoder 0x. For ``y = x W^T`` with ``x`` of ``n x a`` and ``W`` of ``b x a``:
forward ``n a b``, weight gradient ``n a b``, input gradient ``n a b`` only when ``x`` needs one.

The step runs on real tensors (a training step cannot run on meta: optimizers and losses read values), under
grad mode whatever the caller's, on the caller's model as given: count on a copy when the step changes state
(buffers, queues) that must not change. The optimizer's update is not a MAC and is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.flops._counter import _module_hooks
from bench.flops._dispatch import _DispatchCounter
from bench.flops._tally import FlopCount, _Tally


def count_train_flops(step: Callable[[], Any], model: nn.Module | None = None) -> FlopCount:
    """Count the MACs of everything ``step()`` runs with autograd on (its forward, loss and any ``backward()``).

    ``model`` (optional) names modules for ``by_module`` (forward work only: autograd's backward runs outside
    any module, so backward MACs are attributed to the root ``""``). ``method`` is ``"real:train-step"``.
    The caller's grad mode is restored afterwards.
    """
    t0 = time.perf_counter()
    tally = _Tally({id(m): n for n, m in model.named_modules()} if model is not None else {})
    with torch.enable_grad(), _module_hooks(tally), _DispatchCounter(tally):
        step()
    return tally.result("real:train-step", time.perf_counter() - t0)
