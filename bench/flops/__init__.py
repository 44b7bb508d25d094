"""Exact MAC/FLOP counting: ``count_flops(model, example_inputs) -> FlopCount``.

An op registry in the shape of fvcore's (aten op -> pure formula of shapes), run under a
``TorchDispatchMode`` on a meta copy of the model, so counting is exact, fast and allocates
nothing. Conventions (also in ``docs/flops.md``): a MAC is one multiply-accumulate of matmul-like
work; FLOPs = 2 x MACs; normalisation, activations, softmax, pooling and elementwise work go to
``other_flops`` and are never mixed into MACs; a complex multiply-accumulate is one MAC. Ops with
no formula are reported in ``FlopCount.uncounted``, never silently counted as 0. The count does not
depend on the caller's grad mode (grad, ``no_grad`` or ``inference_mode``).
"""

from __future__ import annotations

from bench.flops._counter import CONVENTION, FlopCount, count_flops, meta_copy
from bench.flops._train import count_train_flops

__all__ = ["CONVENTION", "FlopCount", "count_flops", "count_train_flops", "meta_copy"]
