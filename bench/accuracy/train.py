"""One training protocol, the same for every family: train, evaluate, repeat over seeds, summarise.

The protocol (``bench.spec.AccuracySpec`` holds its numbers; docs/accuracy.md explains the choices):

* the budget is **epochs x training-set size samples in batches of ``batch_size``**: every family takes the
  same number of optimizer steps on the same samples in the same order (per seed). Matching samples rather
  than FLOPs keeps the comparison about what a family learns from a fixed amount of data, which is what the
  data-efficiency question (CNN vs ViT) asks; the training FLOPs each family spent are reported beside it.
* AdamW (betas 0.9/0.999), weight decay on weights only (not biases or normalisation gains), learning rate
  warmed up linearly over the first ``warmup`` of the steps then cosine-decayed to 0; the global gradient norm
  clipped (recurrent nets explode without it, and every family gets the same clip).
* cross-entropy for classification, mean squared error for regression; no label smoothing, no dropout added.
* augmentation only where the spec asks for it (``shift:<px>`` for images); none for sequences.
* the model of the last step is evaluated on the test split once: no early stopping, no selection on test.

Determinism: the seed fixes the initial weights (``torch.manual_seed``), the batch order and augmentation
(a ``torch.Generator``), and ``torch.use_deterministic_algorithms`` is on while training; on a CPU with the
same thread count a rerun gives bit-identical accuracies and loss curves.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bench.accuracy.data import Task
from bench.spec import AccuracySpec

#: test batches are this big (evaluation only; it does not change results)
EVAL_BATCH = 256
#: objectives scored per position: one label per token (tagging) or one output token per target token (seq2seq)
PER_POSITION: tuple[str, ...] = ("tagging", "seq2seq")


@dataclass(frozen=True)
class SeedResult:
    """One training run: its test accuracy, test loss and the per-epoch mean training loss."""

    seed: int
    accuracy: float
    test_loss: float
    loss_curve: tuple[float, ...]
    steps: int
    train_time_s: float  # wall clock
    train_cpu_s: float  # CPU time of this process (all threads): what a busy, shared machine cannot inflate
    token_accuracy: float | None = None  # per-position tasks (tagging, seq2seq): fraction of positions right
    exact_match: float | None = None  # per-position tasks: fraction of test sequences entirely right


@dataclass(frozen=True)
class AccuracyResult:
    """A task's accuracy over seeds: the raw per-seed runs, and their mean, std and 95% interval."""

    task: str
    runs: tuple[SeedResult, ...]
    budget: str
    chance: float
    train_flops: float | None = None  # estimate per seed: 3 x forward FLOPs x samples seen
    notes: tuple[str, ...] = field(default=())

    @property
    def accuracies(self) -> list[float]:
        return [r.accuracy for r in self.runs]

    @property
    def mean(self) -> float:
        return mean_ci(self.accuracies)[0]

    @property
    def std(self) -> float:
        return mean_ci(self.accuracies)[1]

    @property
    def ci95(self) -> float | None:
        return mean_ci(self.accuracies)[2]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float | None]:
    """Mean, sample standard deviation (ddof=1) and the half-width of the t-distribution confidence interval.

    The interval is ``mean ± t_{(1+c)/2, n-1} * std / sqrt(n)``: with three seeds ``t = 4.303``, so it is
    wide, honestly so. One value has no spread: std 0.0 (as ``bench.stats``) and no interval (None).
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    m = math.fsum(values) / n
    if n == 1:
        return m, 0.0, None
    sd = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))
    return m, sd, float(stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n))


def steps_per_epoch(task: Task, spec: AccuracySpec) -> int:
    return math.ceil(len(task.y_train) / spec.batch_size)


def total_steps(task: Task, spec: AccuracySpec) -> int:
    """Optimizer steps of one training run (the last, partial batch of an epoch is kept)."""
    return max(1, round(spec.epochs * steps_per_epoch(task, spec)))


def budget_string(task: Task, spec: AccuracySpec) -> str:
    """The budget as a reader sees it in a table, e.g. ``"10 ep x 4000, b64 = 630 steps, AdamW lr 0.003 ..."``."""
    parts = [f"{spec.epochs:g} ep x {len(task.y_train)}, b{spec.batch_size} = {total_steps(task, spec)} steps",
             f"AdamW lr {spec.lr:g} wd {spec.weight_decay:g}", f"warmup {spec.warmup:.0%} + cosine"]  # fmt: skip
    if spec.clip_grad_norm:
        parts.append(f"clip {spec.clip_grad_norm:g}")
    if spec.augment:
        parts.append(spec.augment)
    return ", ".join(parts)


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor at step ``i``: linear from 1/warmup to 1 over ``warmup`` steps, then cosine to 0."""

    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        progress = (i - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only; biases, norm gains and 1-d tokens are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block, then the previous setting again.

    ``warn_only``: an op with no deterministic kernel (none on the CPU paths used here) warns rather than
    failing the cell; the CPU kernels the models use are deterministic for a fixed thread count.
    """
    was, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


def shift_images(x: torch.Tensor, pixels: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by a random whole number of pixels in ``[-pixels, pixels]`` along each axis.

    Borders are filled by replicating the edge (the background of a digit), so no artificial frame appears.
    """
    if pixels <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (b, 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


def augmenter(spec: AccuracySpec, task: Task) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The spec's augmentation as ``fn(batch, generator) -> batch``; identity when there is none."""
    if not spec.augment:
        return lambda x, g: x
    kind, _, arg = spec.augment.partition(":")
    if kind == "shift" and task.kind == "image":
        px = int(arg or 2)
        return lambda x, g: shift_images(x, px, g)
    raise ValueError(f"augmentation {spec.augment!r} does not apply to {task.kind} task {task.name!r}; "
                     "valid: None, or 'shift:<pixels>' for image tasks")  # fmt: skip


def _loss(out: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    if task.objective == "regression":
        return F.mse_loss(out.reshape(-1), y)
    if task.objective in PER_POSITION:  # (B, T, C) logits against (B, T) labels: every position counts once
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.cross_entropy(out, y)


def _forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """The model's output on ``x``; a seq2seq model also reads the target shifted right (teacher forcing)."""
    if task.objective == "seq2seq":
        from bench.accuracy.seq_tasks import decoder_input

        return model(x, decoder_input(y, task))
    return model(x)


def hard_distillation_loss(out: object, y: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """DeiT's hard-label distillation (Touvron et al. 2021, eq. 3): ``1/2 CE(cls, y) + 1/2 CE(dist, argmax teacher)``.

    ``out`` is the student's training output ``(class-token logits, distillation-token logits)``.
    """
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("hard distillation needs a student with a distillation head returning (cls, dist) logits "
                        "in training (timm's distilled DeiT with set_distilled_training(True))")  # fmt: skip
    cls, dist = out
    return 0.5 * F.cross_entropy(cls.float(), y) + 0.5 * F.cross_entropy(dist.float(), teacher_logits.argmax(dim=-1))


def evaluate(model: nn.Module, task: Task, device: torch.device | str = "cpu") -> tuple[float, float]:
    """Test accuracy and mean test loss of ``model`` on ``task`` (regression: within ``task.tolerance``)."""
    scores = evaluate_scores(model, task, device)
    return scores["accuracy"], scores["test_loss"]


def evaluate_scores(model: nn.Module, task: Task, device: torch.device | str = "cpu") -> dict[str, float]:
    """``accuracy`` and ``test_loss`` on the test split; per-position tasks add ``token_accuracy`` and
    ``exact_match`` (every position of a sequence right). A seq2seq model is scored on its own greedy decoding
    (``bench.accuracy.seq_tasks.greedy_decode``), its loss under teacher forcing. ``accuracy`` is the task's
    headline: exact match for seq2seq, token accuracy for tagging."""
    model.eval()
    correct, loss_sum, n = 0.0, 0.0, len(task.y_test)
    tokens_right, seqs_right = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, n, EVAL_BATCH):
            x = task.x_test[i : i + EVAL_BATCH].to(device)
            y = task.y_test[i : i + EVAL_BATCH].to(device)
            out = _forward(model, x, y, task).float()
            loss_sum += float(_loss(out, y, task)) * len(y)
            if task.objective == "regression":
                correct += float(((out.reshape(-1) - y).abs() < task.tolerance).sum())
            elif task.objective in PER_POSITION:
                if task.objective == "seq2seq":
                    from bench.accuracy.seq_tasks import greedy_decode

                    pred = greedy_decode(model, x, task)
                else:
                    pred = out.argmax(dim=-1)
                right = pred == y
                tokens_right += float(right.float().mean(dim=1).sum())
                seqs_right += float(right.all(dim=1).sum())
            else:
                correct += float((out.argmax(dim=-1) == y).sum())
    if task.objective in PER_POSITION:
        token, exact = tokens_right / n, seqs_right / n
        headline = exact if task.objective == "seq2seq" else token
        return {"accuracy": headline, "test_loss": loss_sum / n, "token_accuracy": token, "exact_match": exact}
    return {"accuracy": correct / n, "test_loss": loss_sum / n}


def train_once(build: Callable[[], nn.Module], task: Task, spec: AccuracySpec, seed: int,
               device: torch.device | str = "cpu",
               on_step: Callable[[int, int], None] | None = None) -> SeedResult:  # fmt: skip
    """Build a fresh model under ``seed``, train it by the protocol, and evaluate it on the test split.

    ``on_step(done, total)`` after each optimizer step: the runner's heartbeat (its stall timeout).
    """
    return fit(build, task, spec, seed, device, on_step)[0]


def fit(build: Callable[[], nn.Module], task: Task, spec: AccuracySpec, seed: int,
        device: torch.device | str = "cpu", on_step: Callable[[int, int], None] | None = None, *,
        teacher: nn.Module | None = None) -> tuple[SeedResult, nn.Module]:  # fmt: skip
    """``train_once`` that also returns the trained model (in eval mode).

    With ``teacher`` (a trained model) the student learns by DeiT's hard-label distillation
    (``hard_distillation_loss``): the teacher, in eval mode and without gradients, labels each training batch
    as the student sees it (after augmentation). Everything else -- initial weights, batch order,
    augmentation, optimizer, schedule, steps -- is what the same seed gives without a teacher.
    """
    device = torch.device(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with deterministic():
        torch.manual_seed(seed)
        model = build().to(device)
        if teacher is not None:
            _distilled_training(model, True)
            teacher.eval()
        g = torch.Generator().manual_seed(seed)  # batch order and augmentation; CPU, whatever the device
        augment = augmenter(spec, task)
        per_epoch, steps = steps_per_epoch(task, spec), total_steps(task, spec)
        opt = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=spec.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, max(1, round(spec.warmup * steps))))
        n = len(task.y_train)
        curve: list[float] = []
        epoch_loss, epoch_batches = 0.0, 0
        model.train()
        for step in range(steps):
            i = step % per_epoch
            if i == 0:
                order = torch.randperm(n, generator=g)
            idx = order[i * spec.batch_size : (i + 1) * spec.batch_size]
            x = augment(task.x_train[idx], g).to(device)
            y = task.y_train[idx].to(device)
            if teacher is None:
                loss = _loss(_forward(model, x, y, task).float(), y, task)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(x).float()
                loss = hard_distillation_loss(model(x), y, teacher_logits)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at step {step} of {steps} (seed {seed})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), spec.clip_grad_norm)
            opt.step()
            sched.step()
            if on_step:
                on_step(step + 1, steps)
            epoch_loss += loss.item()
            epoch_batches += 1
            if i == per_epoch - 1 or step == steps - 1:
                curve.append(epoch_loss / epoch_batches)
                epoch_loss, epoch_batches = 0.0, 0
        if teacher is not None:
            _distilled_training(model, False)  # evaluated as DeiT is at test time: the two heads averaged
        scores = evaluate_scores(model, task, device)
    result = SeedResult(seed=seed, accuracy=scores["accuracy"], test_loss=scores["test_loss"],
                        loss_curve=tuple(curve), steps=steps, train_time_s=time.perf_counter() - t0,
                        train_cpu_s=time.process_time() - c0, token_accuracy=scores.get("token_accuracy"),
                        exact_match=scores.get("exact_match"))  # fmt: skip
    return result, model


def _distilled_training(model: nn.Module, on: bool) -> None:
    if not hasattr(model, "set_distilled_training"):
        raise TypeError(f"{type(model).__name__} has no distillation token: it cannot be trained with a teacher")
    model.set_distilled_training(on)


def train_seeds(build: Callable[[], nn.Module], task: Task, spec: AccuracySpec, device: torch.device | str = "cpu",
                on_seed: Callable[[int], None] | None = None,
                on_step: Callable[[int, int], None] | None = None) -> AccuracyResult:  # fmt: skip
    """Train and evaluate one fresh model per seed ``0 .. spec.seeds - 1``; ``on_seed(i)`` before each,
    ``on_step(done, total)`` after each optimizer step of each seed."""
    if spec.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {spec.seeds}")
    runs = []
    for seed in range(spec.seeds):
        if on_seed:
            on_seed(seed)
        runs.append(train_once(build, task, spec, seed, device, on_step))
    return AccuracyResult(task=task.name, runs=tuple(runs), budget=budget_string(task, spec), chance=task.chance,
                          train_flops=_train_flops(build, task, spec))  # fmt: skip


def _train_flops(build: Callable[[], nn.Module], task: Task, spec: AccuracySpec) -> float | None:
    """Estimated training FLOPs of one seed: 3 x (forward FLOPs of one sample) x samples seen.

    Backward costs about twice the forward (gradients for activations and for weights), hence the 3. Needs
    ``bench.flops``; None when it is not available or cannot count the model.
    """
    fwd = forward_flops(build, task)
    return None if fwd is None else 3.0 * fwd * total_steps(task, spec) * spec.batch_size


def forward_flops(build: Callable[[], nn.Module], task: Task) -> float | None:
    """FLOPs of one forward pass over one training sample (``bench.flops``), or None when they cannot be counted."""
    try:
        from bench.flops import count_flops
    except ImportError:
        return None
    try:
        with torch.no_grad():
            model = build().eval()
            x = task.x_train[:1]
            if task.objective == "seq2seq":
                from bench.accuracy.seq_tasks import decoder_input

                return float(count_flops(model, (x, decoder_input(task.y_train[:1], task))).flops)
            return float(count_flops(model, (x,)).flops)
    except Exception:  # noqa: BLE001 -- an estimate that cannot be made is left out, not fatal
        return None
