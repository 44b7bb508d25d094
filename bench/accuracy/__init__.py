"""Accuracy: train small variants on embedded tasks by one protocol, or evaluate users' checkpoints on their data.

* ``bench.accuracy.data``: tasks that ship in a package or are generated (MNIST-1D, scikit-learn digits, the
  adding problem, associative recall), deterministic, never downloaded; ``make_task(name, **args)``.
* ``bench.accuracy.seq_tasks``: generated tasks scored per position: sequence reversal (seq2seq, greedy
  decoding) and next-signal tagging (``lookahead``: labels that only the future determines).
* ``bench.accuracy.train``: the training protocol (``train_seeds``, ``fit``) and the seed statistics (``mean_ci``).
* ``bench.accuracy.distill``: DeiT's hard-label distillation from a teacher trained by the same protocol.
* ``bench.accuracy.models``: the feature-input adapter, the MNIST-1D reference CNN, a micro GoogLeNet.
* ``bench.accuracy.evaluate``: top-1/top-5 of a checkpoint (``--weights``) on a user's dataset (``--data``).

The ``accuracy`` metric (``bench/metrics/accuracy.py``) ties them to a suite's cells; docs/accuracy.md
describes the tasks, the protocol and the published numbers ours are compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from bench.accuracy import seq_tasks as _seq_tasks  # noqa: F401 -- registers the reverse and lookahead tasks
from bench.accuracy.data import Task, list_tasks, make_task, register_task
from bench.accuracy.train import AccuracyResult, SeedResult, fit, mean_ci, train_seeds

__all__ = ["AccuracyResult", "SeedResult", "Task", "fit", "list_tasks", "make_task", "mean_ci", "model_factory",
           "register_task", "train_seeds"]  # fmt: skip


def model_factory(variant: Any, task: Task, **overrides: Any) -> Callable[[], nn.Module]:
    """A zero-argument function building a fresh ``variant`` shaped for ``task`` (call it under a seed).

    The classifier is sized to the task (``num_classes``; ``vocab_size`` for token tasks) through
    ``bench.build.build_model``'s overrides; a seq2seq task sizes an encoder-decoder's vocabulary alone (its
    output layer covers it); a ``features`` task gets the token embedding swapped for a linear map of the
    features (``bench.accuracy.models.features_input``). ``overrides`` add model arguments.
    """
    from bench.accuracy.models import features_input
    from bench.build import build_model

    args: dict[str, Any] = {} if task.objective == "seq2seq" else {"num_classes": task.num_outputs}
    if task.kind == "tokens":
        args["vocab_size"] = task.vocab_size
    args.update(overrides)

    def build() -> nn.Module:
        model = build_model(variant, **args)
        if task.kind == "features":
            features_input(model, task.num_features or 1)
        return model

    return build
