"""Equal compute: the FLOPs of one real pretraining step, and how many steps a FLOP budget buys.

A step's cost is counted by ``bench.flops.count_train_flops`` on the objective's actual step -- the loss
forward (masking, augmentation, the momentum encoder's forward) and autograd's backward -- on a copy of the
objective, so queues and buffers of the real one are untouched, with torch's RNG forked. FLOPs are
``2 x MACs`` (``bench.flops``' convention); normalisation, activations, softmax and the optimizer update are
not MACs and are not in the budget (``uncounted``/``other_flops`` are recorded beside it).

Every objective of a group gets the same budget: ``steps = floor(budget / step_flops)``, so an objective
whose step is twice as expensive (SimCLR's two views) takes half the steps. Step costs do not depend on the
batch's values (every objective pads to fixed shapes), so one count holds for every step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from bench.flops import count_train_flops
from bench.pretraining.objective import Objective


@dataclass(frozen=True)
class StepCost:
    """MACs of one training step: its forward (loss included) and the whole step with the backward."""

    forward_macs: int
    step_macs: int
    other_flops: int = 0
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def step_flops(self) -> int:
        return 2 * self.step_macs

    @property
    def backward_macs(self) -> int:
        return self.step_macs - self.forward_macs


def step_cost(objective: Objective, batch: tuple[torch.Tensor, ...]) -> StepCost:
    """Count one training step of ``objective`` on ``batch`` (forward alone, then forward + backward)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ahead = copy.deepcopy(objective).train()
        fwd = count_train_flops(lambda: ahead(*batch), ahead)
        torch.manual_seed(0)
        model = copy.deepcopy(objective).train()
        step = count_train_flops(lambda: model(*batch).backward(), model)
    return StepCost(forward_macs=fwd.macs, step_macs=step.macs, other_flops=step.other_flops,
                    uncounted=dict(step.uncounted))  # fmt: skip


def steps_for(budget_flops: float, step_flops: int) -> int:
    """Whole steps that fit in ``budget_flops`` (never over it); 0 for a free step (nothing to train)."""
    if budget_flops < 0:
        raise ValueError(f"a FLOP budget cannot be negative, got {budget_flops}")
    return 0 if step_flops <= 0 else math.floor(budget_flops / step_flops)


def checkpoint_steps(steps: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """Step counts at which to probe: ``round(f x steps)`` for each fraction, distinct and sorted (0 allowed)."""
    return tuple(sorted({round(f * steps) for f in fractions}))
