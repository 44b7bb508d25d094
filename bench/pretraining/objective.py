"""What every pretraining objective is: an ``nn.Module`` around a backbone whose forward is the training loss.

An objective owns its backbone (``.backbone``: the part the tier's parameter budget counts, the same
architecture and size for every objective of a group) and its heads (decoders, projections, momentum copies).

* ``forward(*batch) -> loss``: one pretraining step's loss (masking, augmentation and corruption happen
  inside, from torch's global RNG, so a step is ``loss = objective(*batch)`` and counting its FLOPs counts
  exactly what training runs);
* ``batch(pool, idx)``: the step's tensors from the pretraining pool;
* ``features(x)``: ``(n, width)`` frozen features of downstream inputs (for the linear probe);
* ``after_step()``: updates that are not gradients (MoCo's momentum encoder), after the optimizer step;
* ``trains``: False for the random-init floor (no pretraining at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: objective name -> (group, builder function); filled by ``register``
OBJECTIVES: dict[str, tuple[str, Callable[..., Objective]]] = {}
GROUPS = ("language", "vision", "joint")


class Objective(nn.Module):
    """Base class; subclasses set ``name`` and ``group`` and implement the methods below."""

    name = ""
    group = ""
    trains = True

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, pool: Any, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self) -> None:
        """Non-gradient updates after each optimizer step (none by default)."""

    def prepare_pool(self, pool: Any, seed: int) -> Any:
        """The pretraining pool as this objective sees it (``align-noisy`` corrupts captions); as given by default."""
        return pool


def register(name: str, group: str) -> Callable[[Callable[..., Objective]], Callable[..., Objective]]:
    """Register a builder ``fn(width=..., **args) -> Objective`` as objective ``name`` of ``group``."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; valid choices: {', '.join(GROUPS)}")

    def deco(fn: Callable[..., Objective]) -> Callable[..., Objective]:
        OBJECTIVES[name] = (group, fn)
        return fn

    return deco


def build(objective: str, **args: Any) -> Objective:
    """The builder the suite names (``bench.pretraining.objective:build``): objective ``objective`` with ``args``."""
    from bench.errors import UnknownNameError
    from bench.pretraining import joint, language, vision  # noqa: F401 -- they register the objectives

    if objective not in OBJECTIVES:
        raise UnknownNameError("pretraining objective", objective, sorted(OBJECTIVES))
    return OBJECTIVES[objective][1](**args)


def group_of(objective: str) -> str:
    """The group of ``objective`` (``language``, ``vision`` or ``joint``)."""
    from bench.pretraining import joint, language, vision  # noqa: F401

    return OBJECTIVES[objective][0]


def masked_mean(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` ``(n, L, d)`` over the positions where ``keep`` ``(n, L)`` is true."""
    w = keep.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


def example_batch(objective: Objective, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A batch of ``n`` freshly generated samples for ``objective`` (a cell's inputs; FLOP counting)."""
    from bench.pretraining import data

    pool = objective.prepare_pool(data.pool(objective.group, n, seed), seed)
    return objective.batch(pool, torch.arange(n))
