"""One objective, pretrained to its group's FLOP budget and evaluated downstream, over seeds.

The plan (``Plan``) comes from the profile's ``AccuracySpec`` (``task="pretraining"``): its ``task_args`` hold
the pretraining side (budgets per group, batch, optimizer, checkpoints, data sizes), its other fields the
downstream fine-tune protocol (epochs over the labelled train set, batch, learning rate...) and ``seeds``.

Per seed: ``torch.manual_seed(seed)`` builds the objective and drives its masks and augmentations; the batch
order is a ``torch.Generator`` of the same seed; the data (pool and labelled set) depend on ``data_seed``
alone, so seeds differ in initialisation and order, not data. Pretraining is AdamW (weight decay on matrices,
warm-up + cosine, gradient clipping: ``bench.accuracy.train``'s pieces) for ``steps_for(budget, step_flops)``
steps; at each checkpoint the linear probe is measured (the accuracy-vs-FLOPs curve); at the end the probe,
the fine-tune and the group's extras (zero-shot, perplexity, grammar acceptance).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.pretraining import budget, data, evaluate
from bench.pretraining.objective import Objective


@dataclass(frozen=True)
class Plan:
    """The pretraining side of a profile (``AccuracySpec.task_args`` of ``task="pretraining"``)."""

    budgets: Mapping[str, float]  # group -> pretraining FLOPs per objective
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    clip_grad_norm: float = 1.0
    checkpoints: tuple[float, ...] = (0.25, 0.5, 1.0)
    labelled_train: int = 500
    labelled_test: int = 500
    pool_factor: float = 10.0  # unlabelled pool = factor x (labelled train + test)
    data_seed: int = 0
    samples: int = 200  # clm: documents sampled for grammar acceptance
    heldout_docs: int = 500  # clm: documents for perplexity

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Plan:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown pretraining plan fields {unknown}; valid: {', '.join(sorted(known))}")
        kw = dict(args)
        if "checkpoints" in kw:
            kw["checkpoints"] = tuple(kw["checkpoints"])
        return cls(**kw)

    @property
    def pool_size(self) -> int:
        return data.pool_size(self.labelled_train + self.labelled_test, self.pool_factor)


@dataclass
class SeedOutcome:
    """One seed's pretraining and evaluation."""

    seed: int
    steps: int
    losses: list[float] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (pretraining FLOPs, probe accuracy)
    probe: float = 0.0
    finetune: float = 0.0
    zero_shot: float | None = None
    perplexity: float | None = None
    accepted: float | None = None
    seconds: float = 0.0


def pretrain(objective: Objective, pool: Any, steps: int, plan: Plan, seed: int,
             on_checkpoint: Callable[[int], None] | None = None, checkpoints: tuple[int, ...] = (),
             on_step: Callable[[int, int], None] | None = None) -> list[float]:  # fmt: skip
    """Train ``objective`` for ``steps`` steps on ``pool``; ``on_checkpoint(step)`` at each of ``checkpoints``
    (step 0 before training). Returns the loss of every step."""
    from bench.accuracy.train import param_groups, warmup_cosine

    n = len(pool)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(param_groups(objective, plan.weight_decay), lr=plan.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(max(1, steps), max(1, round(plan.warmup * steps))))
    losses: list[float] = []
    objective.train()
    order, at = torch.randperm(n, generator=g), 0
    for step in range(steps + 1):
        if on_checkpoint is not None and step in checkpoints:
            on_checkpoint(step)
        if step == steps:
            break
        if at + plan.batch_size > n:  # a new epoch over the pool: the last partial batch is dropped
            order, at = torch.randperm(n, generator=g), 0
        idx = order[at : at + plan.batch_size]
        at += plan.batch_size
        loss = objective(*objective.batch(pool, idx))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{objective.name}: pretraining loss became {float(loss)} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(objective.parameters(), plan.clip_grad_norm)
        opt.step()
        sched.step()
        objective.after_step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, steps)
    return losses


def run_seed(build: Callable[[], Objective], plan: Plan, spec: Any, seed: int, cost: budget.StepCost,
             task: Any, on_step: Callable[[int, int], None] | None = None) -> SeedOutcome:  # fmt: skip
    """Pretrain a fresh objective under ``seed`` to its group's budget and evaluate it."""
    from bench.accuracy.train import deterministic

    t0 = time.perf_counter()
    with deterministic():
        torch.manual_seed(seed)
        objective = build()
        steps = budget.steps_for(plan.budgets[objective.group], cost.step_flops) if objective.trains else 0
        out = SeedOutcome(seed=seed, steps=steps)
        pool = objective.prepare_pool(data.pool(objective.group, plan.pool_size, plan.data_seed), plan.data_seed)

        def probe(step: int) -> None:
            out.curve.append((step * cost.step_flops, evaluate.linear_probe(objective, task)))

        marks = tuple(sorted({*budget.checkpoint_steps(steps, plan.checkpoints), steps}))  # the end is always probed
        out.losses = pretrain(objective, pool, steps, plan, seed, probe, marks, on_step)
        out.probe = out.curve[-1][1]
        out.finetune = evaluate.fine_tune(objective, task, spec, seed)
        if hasattr(objective, "encode_text"):
            out.zero_shot = evaluate.zero_shot(objective, task)
        if hasattr(objective, "sample"):
            heldout = data.documents(plan.heldout_docs, plan.data_seed + 2)
            out.perplexity = evaluate.perplexity(objective, heldout)
            out.accepted = evaluate.grammar_acceptance(objective, plan.samples)
    out.seconds = time.perf_counter() - t0
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
