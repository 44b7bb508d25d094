"""The ``pretrain`` metric and the ``pretraining`` input kind: how the suite's cells run in the usual machinery.

A cell of the ``pretraining`` suite is one objective (family) of one group (tier). The worker builds the
objective (``bench.pretraining.objective:build``) and a batch of generated inputs (``pretraining_inputs``);
the ``params`` metric counts it and ``pretrain`` (this file) does the work: count the step's FLOPs, pretrain
to the group's budget and evaluate, over the profile's seeds (``bench.pretraining.protocol``). Values are
per variant (one cell per objective: the runner's accuracy-tier rule, since the profile's ``AccuracySpec``
names every group's tier).
"""

from __future__ import annotations

import time
from typing import Any

from bench.catalogue import Column, Judge
from bench.errors import UsageError
from bench.metrics import MetricContext
from bench.registry import register_inputs, register_metric
from bench.spec import _thaw

#: the ``AccuracySpec.task`` that marks a pretraining plan
TASK = "pretraining"

#: every column is a property of the variant (one cell per objective) and stays out of the tidy CSV's leading
#: columns (it lists them after those, by name), so the other suites' reports and CSVs are unchanged
_V = {"scope": "variant", "csv": False}
_HIGHER = {"unit": "fraction", "better": "higher"}


def _points(name: str, order: float) -> Judge:
    """Judged like accuracy (percentage points; a drop must also exceed the CI of the difference), but opt-in:
    listed when a side measured it, failing the build only when ``--fail-on`` names it."""
    return Judge("points", 1.0, name=name, unit="pt", order=order, optional=True)


COLUMNS = (
    Column("probe_acc_mean", description="linear-probe test accuracy, mean over seeds", **_HIGHER, **_V,
           judge=_points("probe_acc", 6)),
    Column("probe_acc_ci95", description="half-width of the probe accuracy's 95% t interval; null for one seed", **_V),
    Column("finetune_acc_mean", description="fine-tuned test accuracy, mean over seeds", **_HIGHER, **_V,
           judge=_points("finetune_acc", 7)),
    Column("finetune_acc_ci95", **_V),
    Column("zeroshot_acc_mean", description="joint: zero-shot shape accuracy, mean over seeds", **_HIGHER, **_V,
           judge=_points("zeroshot_acc", 8)),
    Column("zeroshot_acc_ci95", **_V),
    Column("clm_perplexity", better="lower", description="clm: held-out perplexity, mean over seeds", **_V),
    Column("grammar_accept", description="clm: fraction of sampled documents the grammar accepts", **_HIGHER, **_V),
    Column("pretrain_flops", unit="FLOP", description="pretraining FLOPs spent: steps x step FLOPs (<= budget)", **_V),
    Column("pretrain_budget_flops", unit="FLOP", **_V),
    Column("pretrain_steps", **_V),
    Column("pretrain_seeds", **_V),
    *(Column(name, **_V) for name in (
        "downstream", "probe_acc_std", "finetune_acc_std", "zeroshot_acc_std", "downstream_chance", "step_flops",
        "step_forward_flops", "step_other_flops", "pretrain_backbone_params", "pretrain_loss_first",
        "pretrain_loss_last", "pretrain_time_s", "pretrain_peak_rss_mb", "pool_size", "labelled_size")),
)  # fmt: skip


@register_metric("pretrain", columns=COLUMNS, order=55)
def pretrain_metric(ctx: MetricContext) -> dict[str, Any]:
    """Pretrain the cell's objective to its group's FLOP budget and evaluate it downstream, over seeds."""
    import torch

    from bench.build import build_model
    from bench.pretraining import budget, evaluate
    from bench.pretraining.objective import example_batch
    from bench.pretraining.protocol import Plan, peak_rss_mb, run_seed

    spec = ctx.cell.profile.accuracy
    if spec is None or spec.task != TASK:
        raise UsageError(f"profile {ctx.cell.profile.name!r} lists the pretrain metric but has no pretraining "
                         f"plan (Profile.accuracy with task={TASK!r})")  # fmt: skip
    plan = Plan.from_args({k: _thaw(v) for k, v in spec.task_args})
    variant = ctx.cell.variant
    device = torch.device("cpu")  # tiny models: the CPU path is the measured one (docs/pretraining.md)
    ctx.report_phase("pretrain (data)")
    first = build_model(variant).train()
    group = first.group
    if group not in plan.budgets:
        raise UsageError(f"the pretraining plan has no budget for group {group!r}; it has {sorted(plan.budgets)}")
    cost = budget.step_cost(first, example_batch(first, plan.batch_size, plan.data_seed))
    task = evaluate.downstream_task(group, plan.labelled_train, plan.labelled_test, plan.data_seed + 1)
    backbone = sum(p.numel() for p in first.backbone.parameters())
    del first
    state = {"seed": 0, "last": time.monotonic()}

    def on_step(done: int, total: int) -> None:  # the cell's heartbeat (stall timeout)
        now = time.monotonic()
        if now - state["last"] >= 1.0:
            state["last"] = now
            ctx.report_phase(f"pretrain (seed {state['seed'] + 1}/{spec.seeds}, step {done}/{total})")

    runs = []
    for seed in range(spec.seeds):
        state["seed"] = seed
        ctx.report_phase(f"pretrain (seed {seed + 1}/{spec.seeds})")
        runs.append(run_seed(lambda: build_model(variant).to(device), plan, spec, seed, cost, task, on_step))
    return _summarise(ctx, runs, plan, cost, task, group, backbone, peak_rss_mb())


def _summarise(ctx: MetricContext, runs: list[Any], plan: Any, cost: Any, task: Any, group: str, backbone: int,
               peak_mb: float) -> dict[str, Any]:  # fmt: skip
    from bench.accuracy import mean_ci

    out: dict[str, Any] = {"downstream": task.name, "downstream_chance": task.chance, "pretrain_seeds": len(runs)}
    for name, values in (("probe_acc", [r.probe for r in runs]), ("finetune_acc", [r.finetune for r in runs]),
                         ("zeroshot_acc", [r.zero_shot for r in runs if r.zero_shot is not None])):  # fmt: skip
        if values:
            m, sd, ci = mean_ci(values)
            out.update({f"{name}_mean": m, f"{name}_std": sd, f"{name}_ci95": ci})
            ctx.samples[name] = values
    if runs[0].perplexity is not None:
        out["clm_perplexity"] = sum(r.perplexity for r in runs) / len(runs)
        out["grammar_accept"] = sum(r.accepted for r in runs) / len(runs)
        ctx.samples["clm_perplexity"] = [r.perplexity for r in runs]
        ctx.samples["grammar_accept"] = [r.accepted for r in runs]
    steps = runs[0].steps
    out.update({
        "pretrain_steps": steps, "pretrain_flops": steps * cost.step_flops, "pretrain_budget_flops": plan.budgets[group],
        "step_flops": cost.step_flops, "step_forward_flops": 2 * cost.forward_macs, "step_other_flops": cost.other_flops,
        "pretrain_backbone_params": backbone, "pretrain_time_s": round(sum(r.seconds for r in runs), 3),
        "pretrain_peak_rss_mb": round(peak_mb, 1), "pool_size": plan.pool_size,
        "labelled_size": plan.labelled_train + plan.labelled_test,
    })  # fmt: skip
    if steps:
        out["pretrain_loss_first"] = sum(r.losses[0] for r in runs) / len(runs)
        out["pretrain_loss_last"] = sum(r.losses[-1] for r in runs) / len(runs)
    # seed-major raw arrays: the loss of every step, and the probe curve (FLOPs, accuracy) per checkpoint
    ctx.samples["pretrain_loss"] = [x for r in runs for x in r.losses]
    ctx.samples["probe_curve_flops"] = [float(f) for r in runs for f, _ in r.curve]
    ctx.samples["probe_curve_acc"] = [a for r in runs for _, a in r.curve]
    if cost.uncounted:
        ctx.notes.append("pretrain: not in the FLOP budget (no MAC formula; elementwise/normalisation work): "
                         + ", ".join(sorted(cost.uncounted)))  # fmt: skip
    return out


@register_inputs(TASK)
def pretraining_inputs(cell: Any, batch_size: int, device: Any, dtype: Any) -> tuple[Any, ...]:
    """A batch of generated pretraining samples for the cell's objective (seeded: every run sees the same)."""
    from bench.build import build_model
    from bench.pretraining.objective import example_batch

    objective = build_model(cell.variant, device="meta")  # only its batch() is used: nothing is allocated
    batch = example_batch(objective, batch_size, seed=0)
    return tuple(t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in batch)
