"""Accuracy of the cell's variant: trained by one protocol on an embedded task, or a checkpoint on user data.

What runs depends on the cell (the profile's ``accuracy`` spec says which tiers train; docs/accuracy.md):

* a cell of a tier in ``spec.tiers`` trains fresh models of its variant (one per seed, rebuilt through
  ``bench.build.build_model`` with the task's class count, never the cell's timed model) on ``spec.task``
  and reports the test accuracy over seeds. A variant is trained once per run: in its first cell along
  batch size, dtype, mode and (unless the task takes its length from the cell) sequence length. Its
  other cells record nothing for accuracy.
* any other cell, when the run was given ``--data`` (and ``--weights``), evaluates the variant's checkpoint
  on that dataset: top-1 and top-5 (``bench.accuracy.evaluate``).
* otherwise the metric records nothing.

Values: ``dataset``, ``accuracy_mean``, ``accuracy_std``, ``accuracy_ci95`` (half-width of the 95% t
interval; null for one seed), ``accuracy_seeds``, ``accuracy_chance`` (the trivial baseline),
``test_loss_mean``, ``train_budget``, ``train_steps``, ``train_time_s`` (wall) and ``train_cpu_s`` (CPU
time), both summed over seeds, and ``train_flops`` (estimate per seed, when countable). Raw:
``samples["accuracy"]`` (one per seed) and ``samples["loss_curve"]`` (mean training loss per epoch,
seed-major: ``accuracy_seeds`` runs of equal length).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.catalogue import Column, Judge
from bench.errors import UsageError
from bench.metrics import MetricContext
from bench.registry import register_metric
from bench.spec import AccuracySpec, CellSpec, _thaw

COLUMNS = (
    # Judged in percentage points; a drop must also exceed the CI of the difference (bench.compare.checks).
    Column("accuracy_mean", header="accuracy", scope="variant", better="higher", export=True,
           judge=Judge("points", 1.0, name="accuracy", gating=True, unit="pt", order=5),
           description="test accuracy, mean over seeds (a fraction; reports show percent)"),
    Column("accuracy_std", scope="variant"),
    Column("accuracy_ci95", scope="variant", description="half-width of the 95% t interval; null for one seed"),
    Column("accuracy_seeds", scope="variant"),
    Column("dataset", scope="variant"),
    Column("train_budget", scope="variant"),
    *(Column(name, scope="variant", csv=False) for name in (
        "accuracy_chance", "test_loss_mean", "train_steps", "train_time_s", "train_cpu_s", "train_flops",
        "accuracy_top1", "accuracy_top5", "eval_samples")),
    # Per-position tasks (tagging, seq2seq: bench.accuracy.seq_tasks): both scores, whichever is the headline.
    Column("token_accuracy_mean", scope="variant", better="higher", csv=False,
           description="fraction of positions right, mean over seeds"),
    Column("exact_match_mean", scope="variant", better="higher", csv=False,
           description="fraction of test sequences entirely right, mean over seeds"),
    # A student with a distillation token trained with the spec's teacher (bench.accuracy.distill); accuracy_mean
    # stays the same variant without a teacher, so both sit side by side.
    Column("distill_accuracy_mean", header="with teacher", scope="variant", csv=False,  # one row has it: no "best"
           description="test accuracy of the student trained with the teacher (hard-label distillation), mean"),
    *(Column(name, scope="variant", csv=False) for name in (
        "distill_accuracy_std", "distill_accuracy_ci95", "distill_test_loss_mean", "teacher",
        "teacher_accuracy_mean", "distill_train_time_s", "teacher_train_time_s", "distill_train_flops",
        "teacher_train_flops")),
)  # fmt: skip

#: seq2seq builders (``input_kind == "seq2seq"``) are not classifiers: the embedded tasks do not apply
_NOT_CLASSIFIERS = ("seq2seq",)


@register_metric("accuracy", columns=COLUMNS, order=50)
def accuracy_metric(ctx: MetricContext) -> dict[str, Any]:
    """Train-and-test accuracy on the profile's task (accuracy tiers), or checkpoint accuracy on ``--data``."""
    cell = ctx.cell
    spec = cell.profile.accuracy
    extra = {k: _thaw(v) for k, v in cell.extra}
    if spec is not None and cell.key.tier in spec.tiers:
        if not first_cell(cell, per_length=spec.length_from_cell):
            return {}
        return _train(ctx, spec)
    if extra.get("data"):
        from bench.accuracy.evaluate import evaluate_cell

        if not first_cell(cell, per_length=False):
            return {}
        ctx.report_phase("accuracy (evaluate)")
        return evaluate_cell(cell, extra["data"], extra.get("weights"), device=ctx.device, notes=ctx.notes)
    if spec is None:
        raise UsageError(f"profile {cell.profile.name!r} lists the accuracy metric but has no accuracy spec "
                         "(Profile.accuracy) and the run was given no --data")  # fmt: skip
    return {}


def _progress(ctx: MetricContext, seeds: int, every_s: float = 1.0) -> tuple[Any, Any]:
    """``on_seed``/``on_step`` callbacks that report training progress as phases, at most one per ``every_s``.

    They are the cell's heartbeat: the runner kills a cell that reports nothing for its stall timeout
    (``bench.runner.HARD_CAP_FACTOR``), so training on a busy machine is slower, not killed.
    """
    import time

    state = {"seed": 0, "last": time.monotonic()}

    def on_seed(i: int) -> None:
        state["seed"] = i
        ctx.report_phase(f"accuracy (seed {i + 1}/{seeds})")

    def on_step(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["last"] >= every_s:
            state["last"] = now
            ctx.report_phase(f"accuracy (seed {state['seed'] + 1}/{seeds}, step {done}/{total})")

    return on_seed, on_step


def first_cell(cell: CellSpec, *, per_length: bool = False) -> bool:
    """Whether this cell is its variant's one accuracy cell in the run (``per_length``: one per length).

    Accuracy does not depend on the timed batch size, dtype or mode, so it is measured in one cell per
    variant: the one at the first value of each axis. The runner passes the run's batch sizes and dtypes in
    ``cell.extra`` (and gives an accuracy tier only that cell); without them the profile's are used, and a
    value the profile does not list (the user overrode it) counts as first, so an override never loses it.
    """
    extra = {k: _thaw(v) for k, v in cell.extra}
    prof = cell.profile
    axes: list[tuple[Any, Sequence[Any]]] = [
        (cell.key.batch_size, extra.get("batch_sizes") or prof.batch_sizes),
        (cell.key.dtype, extra.get("dtypes") or prof.dtypes),
        (cell.key.mode, prof.modes),
    ]
    if not per_length:
        axes.append((cell.key.seq_len, prof.seq_lens))
    return all(value not in declared or value == declared[0] for value, declared in axes if declared)


def task_args(cell: CellSpec, spec: AccuracySpec) -> dict[str, Any]:
    """The task's arguments: the spec's, plus ``length`` from the cell when the spec says so."""
    args = {k: _thaw(v) for k, v in spec.task_args}
    if spec.length_from_cell:
        if cell.key.seq_len is None:
            raise UsageError(f"accuracy task {spec.task!r} takes its length from the cell, but cell {cell.key.id} "
                             "has no seq_len (give the profile seq_lens)")  # fmt: skip
        args["length"] = cell.key.seq_len
    return args


def _train(ctx: MetricContext, spec: AccuracySpec) -> dict[str, Any]:
    import torch

    from bench.accuracy import make_task, model_factory, train_seeds
    from bench.build import resolve_builder

    cell = ctx.cell
    kind = getattr(resolve_builder(cell.variant.builder), "input_kind", None)
    ctx.report_phase("accuracy (data)")
    task = make_task(spec.task, **task_args(cell, spec))
    if (kind in _NOT_CLASSIFIERS) != (task.objective == "seq2seq"):  # an encoder-decoder needs a seq2seq task
        need = "an encoder-decoder" if task.objective == "seq2seq" else "a classifier or regressor"
        ctx.notes.append(f"accuracy: not measured for {cell.variant.model}, a {kind or 'classifier'} model; the "
                         f"task {spec.task!r} needs {need}")  # fmt: skip
        return {}
    build = model_factory(cell.variant, task)
    # Training is always fp32 (a bf16/fp16 cell times those dtypes; accuracy is a property of the variant).
    device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    on_seed, on_step = _progress(ctx, spec.seeds)
    result = train_seeds(build, task, spec, device, on_seed=on_seed, on_step=on_step)
    ctx.samples["accuracy"] = [r.accuracy for r in result.runs]
    ctx.samples["loss_curve"] = [x for r in result.runs for x in r.loss_curve]
    out: dict[str, Any] = {
        "dataset": task.name,
        "accuracy_mean": result.mean,
        "accuracy_std": result.std,
        # One seed has no interval: null (NaN in load_results), never a made-up 0.
        "accuracy_ci95": result.ci95,
        "accuracy_seeds": len(result.runs),
        "accuracy_chance": task.chance,
        "test_loss_mean": sum(r.test_loss for r in result.runs) / len(result.runs),
        "train_budget": result.budget,
        "train_steps": result.runs[0].steps,
        "train_time_s": round(sum(r.train_time_s for r in result.runs), 3),
        "train_cpu_s": round(sum(r.train_cpu_s for r in result.runs), 3),
    }
    if result.train_flops is not None:
        out["train_flops"] = result.train_flops
    for name in ("token_accuracy", "exact_match"):
        scores = [getattr(r, name) for r in result.runs]
        if all(v is not None for v in scores):
            out[f"{name}_mean"] = sum(scores) / len(scores)
    if spec.teacher is not None:
        out.update(_distill(ctx, spec, task, build, device))
    if result.mean < task.chance + 0.05:  # within 5 points of the trivial baseline: it learned nothing
        ctx.notes.append(f"accuracy: {cell.variant.model} stayed near chance on {task.name} "
                         f"({result.mean:.3f} vs {task.chance:.3f})")  # fmt: skip
    return out


def _distill(ctx: MetricContext, spec: AccuracySpec, task: Any, build: Any, device: Any) -> dict[str, Any]:
    """The same variant trained with the spec's teacher (bench.accuracy.distill), when it has a distillation token."""
    from bench.accuracy import model_factory
    from bench.accuracy.distill import (
        cell_teacher_path,
        distill_seeds,
        distill_values,
        has_distillation_token,
        teacher_variant,
    )
    from bench.registry import get_suite

    cell = ctx.cell
    if not has_distillation_token(build()):
        return {}
    teacher = teacher_variant(get_suite(cell.key.suite), cell.key.tier, spec)
    on_seed, on_step = _progress(ctx, spec.seeds)

    def seed_phase(i: int) -> None:
        on_seed(i)
        ctx.report_phase(f"accuracy with teacher {teacher.model} (seed {i + 1}/{spec.seeds})")

    result = distill_seeds(build, model_factory(teacher, task), task, spec, device, teacher_name=teacher.model,
                           teacher_path=cell_teacher_path(cell), on_seed=seed_phase, on_step=on_step)  # fmt: skip
    values, samples = distill_values(result)
    ctx.samples.update(samples)
    return values
