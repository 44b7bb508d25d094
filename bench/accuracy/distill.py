"""DeiT's hard-label distillation in the accuracy protocol (Touvron et al. 2021, "Training data-efficient image
transformers & distillation through attention", section 5).

A student with a distillation token (timm's distilled DeiT) is trained, seed for seed, exactly as without a
teacher -- same initial weights, batch order, augmentation, optimizer, schedule and steps -- except for the
loss: ``1/2 CE(class head, label) + 1/2 CE(distillation head, teacher's argmax)`` (``train.hard_distillation_loss``),
the teacher labelling each batch as the student sees it. At test time the two heads' logits are averaged, as
timm's DeiT does in eval mode.

The teacher is the profile's ``AccuracySpec.teacher`` family of the student's tier (a CNN: the paper's point is
the convolutional inductive bias a teacher hands over). Each cell runs in its own process, so the student's cell
trains its teacher first, by the same protocol and seed (teacher seed s teaches student seed s), and reports the
teacher's accuracy beside the student's. ``run --teacher PATH`` loads a trained teacher instead (a state dict of
that same variant; untrusted input: loaded with ``weights_only=True``).

Budget. The student takes the same optimizer steps on the same samples as without a teacher; what grows is the
compute. Per seed, ``train_flops`` counts the student's training (3 x its forward FLOPs per sample seen) plus
the teacher's forward pass over every sample the student sees (1 x, no backward); ``teacher_train_flops`` is
the teacher's own training (3 x its forward FLOPs per sample), zero for a loaded checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.accuracy.data import Task
from bench.accuracy.train import SeedResult, evaluate, fit, forward_flops, mean_ci, total_steps
from bench.errors import UnknownNameError, UsageError
from bench.spec import AccuracySpec

if TYPE_CHECKING:
    from bench.spec import CellSpec, Suite, Variant

#: longest message text quoted from a failed load
_SHOWN = 160


@dataclass(frozen=True)
class DistillResult:
    """Students trained with a teacher, one per seed, and the teacher's accuracy on the same seeds."""

    teacher: str  # the teacher variant's model name (with " (checkpoint)" when loaded)
    runs: tuple[SeedResult, ...]  # the students
    teacher_accuracies: tuple[float, ...]  # one per seed (a checkpoint's, repeated)
    train_flops: float | None  # per seed: the student's training plus the teacher's forward passes
    teacher_train_flops: float | None  # per seed: the teacher's own training (0 for a checkpoint)
    teacher_train_time_s: float = 0.0  # wall time of the teachers' training, all seeds (0 for a checkpoint)

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.runs]

    def summary(self) -> tuple[float, float, float | None]:
        """Mean, std and 95% half-width of the students' accuracies (``train.mean_ci``)."""
        return mean_ci(self.accuracies)


def has_distillation_token(model: nn.Module) -> bool:
    """Whether ``model`` can be trained with a teacher (timm's distilled DeiT: a second head on a second token)."""
    return callable(getattr(model, "set_distilled_training", None))


def teacher_variant(suite: Suite, tier: str, spec: AccuracySpec) -> Variant:
    """The resolved variant of ``spec.teacher`` in ``tier`` of ``suite``."""
    from bench.sizing import resolve_tier

    variants = resolve_tier(suite.tier(tier))
    for v in variants:
        if v.family == spec.teacher:
            return v
    raise UnknownNameError(f"teacher family of tier {tier!r}", str(spec.teacher), [v.family for v in variants])


def load_teacher(path: str | Path, build: Callable[[], nn.Module], name: str) -> nn.Module:
    """The teacher ``build()`` with the weights of the checkpoint at ``path``, in eval mode.

    The file is untrusted: ``torch.load(weights_only=True)`` (tensors and plain containers only, no code),
    then it must be a state dict (or ``{"state_dict": ...}``) that fits ``name``'s architecture exactly. Any
    fault is a one-line ``UsageError`` (exit 2).
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--teacher {_short(str(p))}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- unpickling errors, bad zip, truncation: all one line
        reason = _first_line(e)
        raise UsageError(f"--teacher {_short(str(p))}: not a weights-only torch checkpoint ({reason})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--teacher {_short(str(p))}: expected a state dict (parameter name -> tensor), "
                         f"got {type(obj).__name__}")  # fmt: skip
    model = build()
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UsageError(f"--teacher {_short(str(p))}: does not fit the teacher {name} ({_first_line(e)})") from None
    return model.eval()


def distill_seeds(build: Callable[[], nn.Module], build_teacher: Callable[[], nn.Module], task: Task,
                  spec: AccuracySpec, device: torch.device | str = "cpu", *, teacher_name: str,
                  teacher_path: str | None = None, on_seed: Callable[[int], None] | None = None,
                  on_step: Callable[[int, int], None] | None = None) -> DistillResult:  # fmt: skip
    """For each seed: train the teacher (or load ``teacher_path`` once), then the student with it."""
    if spec.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {spec.seeds}")
    loaded = load_teacher(teacher_path, build_teacher, teacher_name).to(device) if teacher_path else None
    loaded_acc = evaluate(loaded, task, device)[0] if loaded is not None else None
    runs, teacher_acc, teacher_time = [], [], 0.0
    for seed in range(spec.seeds):
        if on_seed:
            on_seed(seed)
        if loaded is None:
            t_result, teacher = fit(build_teacher, task, spec, seed, device, on_step)
            teacher_acc.append(t_result.accuracy)
            teacher_time += t_result.train_time_s
        else:
            teacher = loaded
            teacher_acc.append(float(loaded_acc))
        runs.append(fit(build, task, spec, seed, device, on_step, teacher=teacher)[0])
    samples = total_steps(task, spec) * spec.batch_size
    student, teacher_fwd = forward_flops(build, task), forward_flops(build_teacher, task)
    flops = None if student is None or teacher_fwd is None else (3.0 * student + teacher_fwd) * samples
    teacher_train = 0.0 if loaded is not None else (None if teacher_fwd is None else 3.0 * teacher_fwd * samples)
    name = f"{teacher_name} (checkpoint)" if loaded is not None else teacher_name
    return DistillResult(teacher=name, runs=tuple(runs), teacher_accuracies=tuple(teacher_acc), train_flops=flops,
                         teacher_train_flops=teacher_train, teacher_train_time_s=teacher_time)  # fmt: skip


def distill_values(result: DistillResult) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The accuracy metric's values for a distilled student, and its raw samples."""
    mean, std, ci = result.summary()
    values: dict[str, Any] = {
        "distill_accuracy_mean": mean,
        "distill_accuracy_std": std,
        "distill_accuracy_ci95": ci,
        "distill_test_loss_mean": sum(r.test_loss for r in result.runs) / len(result.runs),
        "teacher": result.teacher,
        "teacher_accuracy_mean": mean_ci(result.teacher_accuracies)[0],
        "distill_train_time_s": round(sum(r.train_time_s for r in result.runs), 3),
        "teacher_train_time_s": round(result.teacher_train_time_s, 3),
    }
    if result.train_flops is not None:
        values["distill_train_flops"] = result.train_flops
    if result.teacher_train_flops is not None:
        values["teacher_train_flops"] = result.teacher_train_flops
    samples = {"distill_accuracy": result.accuracies, "teacher_accuracy": list(result.teacher_accuracies),
               "distill_loss_curve": [x for r in result.runs for x in r.loss_curve]}  # fmt: skip
    return values, samples


def check_teacher_option(path: Path, suite: Suite, profile: str | None) -> None:
    """``run --teacher PATH`` checked before anything runs: the profile must name a teacher family, and the file
    must load (weights only) into that family's accuracy-tier variant. One-line ``UsageError`` otherwise."""
    from bench.accuracy import make_task, model_factory
    from bench.spec import _thaw

    prof = suite.profile(profile)
    spec = prof.accuracy
    if spec is None or spec.teacher is None or "accuracy" not in prof.metrics:
        raise UsageError(f"--teacher: profile {prof.name!r} of {suite.name} trains no student with a teacher "
                         "(its accuracy spec names no teacher family)")  # fmt: skip
    for tier in spec.tiers:
        variant = teacher_variant(suite, tier, spec)
        task = make_task(spec.task, **{k: _thaw(v) for k, v in spec.task_args})
        load_teacher(path, model_factory(variant, task), variant.model)


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return _short(text)


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def cell_teacher_path(cell: CellSpec) -> str | None:
    """The ``--teacher`` checkpoint the run passed to its cells, if any."""
    from bench.spec import _thaw

    return dict((k, _thaw(v)) for k, v in cell.extra).get("teacher")
