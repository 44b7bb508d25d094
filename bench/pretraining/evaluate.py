"""Downstream evaluation of a pretrained objective: linear probe, short fine-tune, zero-shot, generation quality.

* **Linear probe**: the backbone frozen (eval mode), features of the labelled train and test sets
  (``Objective.features``), standardised on the train set, then scikit-learn's L2 logistic regression
  (``C = 1``, L-BFGS): deterministic given the features.
* **Fine-tune**: a copy of the pretrained objective plus a fresh linear head, every weight trained by the
  accuracy protocol (``bench.accuracy.train.train_once``: AdamW, warm-up + cosine, clipping) for the
  profile's fixed budget (``AccuracySpec``: epochs x labelled train set in batches).
* **Zero-shot** (joint): a class's text embedding is the normalised mean of the embeddings of every caption
  the world can generate for that shape (prompt ensembling over the other attributes, as CLIP ensembles
  templates); an image gets the class of highest cosine similarity. No labelled image is used.
* **clm**: perplexity ``exp(mean next-token NLL)`` on held-out documents, and the fraction of documents
  sampled from ``<bos>`` (temperature 1) whose every sentence the grammar accepts.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bench.accuracy.data import Task
from bench.pretraining import data
from bench.pretraining.objective import Objective

FEATURE_BATCH = 256


def downstream_task(group: str, n_train: int, n_test: int, seed: int) -> Task:
    """The group's labelled task: shape of an image (vision, joint) or grammaticality of a sentence (language)."""
    n = n_train + n_test
    if group == "language":
        x, y = data.agreement_set(n, seed)
        return Task(name="agreement", kind="tokens", objective="classification", x_train=x[:n_train],
                    y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:], num_outputs=2, chance=0.5,
                    description="grammatical or main verb's number flipped", vocab_size=len(data.VOCAB))  # fmt: skip
    images = data.image_set(n, seed)
    x, y = images.floats(slice(None)), images.shape_labels
    counts = torch.bincount(y[n_train:], minlength=len(data.SHAPES))
    return Task(name="shape", kind="image", objective="classification", x_train=x[:n_train], y_train=y[:n_train],
                x_test=x[n_train:], y_test=y[n_train:], num_outputs=len(data.SHAPES),
                chance=float(counts.max()) / max(1, n_test), description="shape of the object (4 classes)")  # fmt: skip


@torch.no_grad()
def features(objective: Objective, x: torch.Tensor) -> torch.Tensor:
    """Frozen features of ``x`` in eval mode (the objective's mode is restored)."""
    was = objective.training
    objective.eval()
    try:
        return torch.cat([objective.features(x[i : i + FEATURE_BATCH]) for i in range(0, len(x), FEATURE_BATCH)])
    finally:
        objective.train(was)


def linear_probe(objective: Objective, task: Task) -> float:
    """Test accuracy of an L2 logistic regression on the frozen, standardised features."""
    from sklearn.linear_model import LogisticRegression

    f_train = features(objective, task.x_train).double().numpy()
    f_test = features(objective, task.x_test).double().numpy()
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit((f_train - mean) / std, task.y_train.numpy())
    return float(np.mean(clf.predict((f_test - mean) / std) == task.y_test.numpy()))


class FineTuned(nn.Module):
    """A pretrained objective's features under a fresh linear head: what the fine-tune trains."""

    def __init__(self, objective: Objective, classes: int) -> None:
        super().__init__()
        self.objective = objective
        self.head = nn.Linear(objective.width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.objective.features(x))


def fine_tune(objective: Objective, task: Task, spec: object, seed: int,
              on_step: Callable[[int, int], None] | None = None) -> float:  # fmt: skip
    """Test accuracy after fine-tuning a copy of ``objective`` by the accuracy protocol (``spec``) under ``seed``."""
    from bench.accuracy.train import train_once

    def build() -> nn.Module:
        return FineTuned(copy.deepcopy(objective), task.num_outputs)

    return train_once(build, task, spec, seed, on_step=on_step).accuracy  # type: ignore[arg-type]


def shape_prompts() -> torch.Tensor:
    """``(shapes, prompts, CAPTION_LEN)``: every caption of each shape (all colours, sizes, textures, positions)."""
    other = list(itertools.product(*(range(k) for k in list(data.ATTRIBUTES.values())[1:])))
    attrs = torch.tensor([[s, *o] for s in range(len(data.SHAPES)) for o in other])
    return data.captions(attrs).view(len(data.SHAPES), len(other), data.CAPTION_LEN)


@torch.no_grad()
def zero_shot(objective: Objective, task: Task) -> float:
    """Zero-shot shape accuracy of a joint objective on the test images (prompt-ensembled class embeddings)."""
    was = objective.training
    objective.eval()
    try:
        prompts = shape_prompts()
        classes = torch.stack([nn.functional.normalize(objective.encode_text(p), dim=1).mean(0) for p in prompts])
        classes = nn.functional.normalize(classes, dim=1)
        x = task.x_test
        img = torch.cat([objective.encode_image(x[i : i + FEATURE_BATCH]) for i in range(0, len(x), FEATURE_BATCH)])
        pred = (nn.functional.normalize(img, dim=1) @ classes.t()).argmax(1)
        return float((pred == task.y_test).float().mean())
    finally:
        objective.train(was)


@torch.no_grad()
def perplexity(clm: Objective, docs: torch.Tensor) -> float:
    """``exp`` of the mean next-token negative log-likelihood over the real tokens of ``docs``."""
    was = clm.training
    clm.eval()
    try:
        total, count = 0.0, 0
        for i in range(0, len(docs), FEATURE_BATCH):
            nll, n = clm.token_nll(docs[i : i + FEATURE_BATCH])
            total, count = total + nll, count + n
        return math.exp(total / max(1, count))
    finally:
        clm.train(was)


def accepts_document(words: list[str], grammar: data.Grammar | None = None) -> bool:
    """Whether ``words`` is one or more sentences of the language, each ending in ``.``, and nothing else."""
    grammar = grammar or data.Grammar()
    if not words or words[-1] != ".":
        return False
    sentences, cur = [], []
    for w in words:
        cur.append(w)
        if w == ".":
            sentences.append(cur)
            cur = []
    return all(grammar.accepts(s) for s in sentences)


def grammar_acceptance(clm: Objective, n: int) -> float:
    """Fraction of ``n`` documents sampled from ``clm`` that the grammar accepts (torch's global RNG)."""
    was = clm.training
    clm.eval()
    try:
        samples = clm.sample(n)
    finally:
        clm.train(was)
    return sum(accepts_document(data.decode(s)) for s in samples) / n
