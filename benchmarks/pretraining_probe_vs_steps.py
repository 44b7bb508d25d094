"""How the linear probe of one pretraining objective moves with pretraining steps (issue 18's evidence).

Pretrains one objective of the ``pretraining`` suite (seed 0, data seed 0, the suite's default width) for the
largest of ``--steps`` and probes at each of them (step 0 is the random-init floor of the same network). For
language objectives it also probes ``verb-number``: the sentence's main verb replaced by ``<mask>``, the label
the number it had -- a task next to what ``mlm``/``clm`` train for.

    python benchmarks/pretraining_probe_vs_steps.py rotnet --steps 0,200,500
    python benchmarks/pretraining_probe_vs_steps.py mlm --steps 0,150,350 --batch 16 --lr 2e-3

Prints one line per checkpoint: step, the group's downstream probe accuracy (and verb-number), seconds.
Single seed, one thread: an exploration, not a published figure.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from bench.accuracy.data import Task
from bench.pretraining import data, evaluate, protocol
from bench.pretraining import objective as objectives

WIDTHS = {"language": 64, "vision": 64, "joint": 56, "denoise": 60, "mass": 60}


def verb_number_task(n_train: int, n_test: int, seed: int) -> Task:
    """Sentences with the main verb masked; label: its number (0 singular, 1 plural)."""
    rng, grammar = random.Random(seed), data.Grammar()
    n = n_train + n_test
    x = torch.empty(n, data.SENTENCE_LEN, dtype=torch.int64)
    y = torch.empty(n, dtype=torch.int64)
    for i in range(n):
        while True:
            words, at = grammar.sentence(rng)
            if len(words) + 2 <= data.SENTENCE_LEN:
                break
        verb = words[at]
        y[i] = next(pair.index(verb) for pair in (*data.INTRANSITIVE, *data.TRANSITIVE) if verb in pair)
        words[at] = "<mask>"
        x[i] = data.encode(words, data.SENTENCE_LEN)
    return Task(name="verb-number", kind="tokens", objective="classification", x_train=x[:n_train],
                y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:], num_outputs=2, chance=0.5,
                description="number of the masked main verb", vocab_size=len(data.VOCAB))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("objective")
    ap.add_argument("--steps", default="0,200,500", help="comma list of checkpoints (pretraining steps)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    group = objectives.group_of(args.objective)
    width = WIDTHS.get(args.objective, WIDTHS[group])
    steps = sorted({int(s) for s in args.steps.split(",")})
    plan = protocol.Plan(budgets={group: float("inf")}, batch_size=args.batch, lr=args.lr)
    tasks = {"downstream": evaluate.downstream_task(group, 500, 500, 1)}
    if group == "language":
        tasks["verb-number"] = verb_number_task(500, 500, 1)
    torch.manual_seed(0)
    obj = objectives.build(args.objective, width=width)
    pool = obj.prepare_pool(data.pool(group, 10_000, 0), 0)
    t0 = time.perf_counter()

    def probe(step: int) -> None:
        accs = ", ".join(f"{name} {evaluate.linear_probe(obj, t):.3f}" for name, t in tasks.items())
        print(f"{args.objective} batch {args.batch} lr {args.lr:g}: step {step}: {accs} ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip

    losses = protocol.pretrain(obj, pool, steps[-1], plan, 0, probe, tuple(steps))
    if losses:
        print(f"loss: first {losses[0]:.3f}, last {losses[-1]:.3f}")


if __name__ == "__main__":
    main()
