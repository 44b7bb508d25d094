"""Generated sequence tasks scored per position: sequence reversal (seq2seq) and next-signal tagging (lookahead).

Both are built offline from a seeded ``torch.Generator`` (a data seed separate from the training seed), so the
same arguments always give bit-identical tensors.

=========  ========  ========================================================================================
task       output    what it is
=========  ========  ========================================================================================
reverse    seq2seq   source: ``length`` symbols drawn uniformly from ``n_symbols``; target: the source reversed.
                     An encoder-decoder reads the source and writes the target; scored on its own greedy
                     decoding by exact match (headline) and token accuracy
lookahead  tagging   ``length`` tokens, a ``density`` of them *signals* (one of ``n_signals`` kinds), the rest
                     noise; each position's label is the kind of the first signal strictly after it, or
                     "none". The label depends only on the future: a left-to-right net must guess it from the
                     prior, a bidirectional one can read it. Scored by token accuracy (headline) and exact match
=========  ========  ========================================================================================

Token layouts. reverse: symbols ``[0, n_symbols)``, then the decoder's start token ``BOS = n_symbols``
(``vocab_size = n_symbols + 1``; the model's output layer covers the whole vocabulary). lookahead: signals
``[0, n_signals)``, noise after them; labels ``[0, n_signals]`` where ``n_signals`` means "none".
"""

from __future__ import annotations

import torch
from torch import nn

from bench.accuracy.data import Task, _data_seed, register_task


@register_task("reverse")
def reverse(length: int = 12, n_symbols: int = 10, n_train: int = 8000, n_test: int = 1000, seed: int = 0) -> Task:
    """Sequence reversal: ``y = x.flip(1)``. ``chance`` is the exact-match rate of guessing: ``n_symbols**-length``."""
    if length < 1 or n_symbols < 2:
        raise ValueError(f"reverse: need length >= 1 and n_symbols >= 2, got {length} and {n_symbols}")
    g = torch.Generator().manual_seed(_data_seed("reverse", length, seed))
    x_train = torch.randint(0, n_symbols, (n_train, length), generator=g)
    x_test = torch.randint(0, n_symbols, (n_test, length), generator=g)
    return Task(name=f"reverse-T{length}", kind="tokens", objective="seq2seq", x_train=x_train,
                y_train=x_train.flip(1), x_test=x_test, y_test=x_test.flip(1), num_outputs=n_symbols + 1,
                chance=float(n_symbols) ** -length, vocab_size=n_symbols + 1,
                description=f"sequence reversal, T={length}, {n_symbols} symbols; exact match of greedy decoding",
                params={"length": length, "n_symbols": n_symbols, "n_train": n_train, "n_test": n_test,
                        "seed": seed})  # fmt: skip


@register_task("lookahead")
def lookahead(length: int = 32, n_signals: int = 4, n_noise: int = 12, density: float = 0.15, n_train: int = 4000,
              n_test: int = 1000, seed: int = 0) -> Task:  # fmt: skip
    """Label every position by the kind of the next signal after it ("none" = ``n_signals`` when none follows).

    ``chance`` is the token accuracy of the best guess that ignores the input: the training split's most
    frequent label. A left-to-right model can do better only near the end of a sequence (where "none" grows
    likely), so ``unidirectional_bound`` in ``params`` gives the best any causal model can score: per
    position, the most frequent label given the position alone (the future tokens are independent of the past).
    """
    if not 0.0 < density < 1.0:
        raise ValueError(f"lookahead: density must be in (0, 1), got {density}")
    if length < 2 or n_signals < 1 or n_noise < 1:
        raise ValueError("lookahead: need length >= 2, n_signals >= 1 and n_noise >= 1")
    g = torch.Generator().manual_seed(_data_seed("lookahead", length, seed))

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        is_signal = torch.rand(n, length, generator=g) < density
        kinds = torch.randint(0, n_signals, (n, length), generator=g)
        noise = n_signals + torch.randint(0, n_noise, (n, length), generator=g)
        x = torch.where(is_signal, kinds, noise)
        y = torch.empty(n, length, dtype=torch.int64)
        nxt = torch.full((n,), n_signals, dtype=torch.int64)  # "none" until a signal is seen (right to left)
        for t in range(length - 1, -1, -1):
            y[:, t] = nxt
            nxt = torch.where(is_signal[:, t], kinds[:, t], nxt)
        return x, y

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    top = int(torch.bincount(y_train.reshape(-1)).argmax())
    per_position = torch.stack([torch.bincount(y_train[:, t], minlength=n_signals + 1).argmax() for t in range(length)])
    bound = float((y_test == per_position).float().mean())
    return Task(name=f"lookahead-T{length}", kind="tokens", objective="tagging", x_train=x_train, y_train=y_train,
                x_test=x_test, y_test=y_test, num_outputs=n_signals + 1, chance=float((y_test == top).float().mean()),
                vocab_size=n_signals + n_noise,
                description=f"next-signal tagging, T={length}, {n_signals} signal kinds at density {density:g}; "
                "token accuracy",
                params={"length": length, "n_signals": n_signals, "n_noise": n_noise, "density": density,
                        "n_train": n_train, "n_test": n_test, "seed": seed,
                        "unidirectional_bound": bound})  # fmt: skip


def bos(task: Task) -> int:
    """The decoder's start token of a seq2seq task: the last id of its vocabulary."""
    if task.vocab_size is None:
        raise ValueError(f"task {task.name!r} has no vocabulary: it is not a seq2seq task")
    return task.vocab_size - 1


def decoder_input(y: torch.Tensor, task: Task) -> torch.Tensor:
    """Teacher forcing: the target shifted right by one, starting with BOS (``(B, T)`` -> ``(B, T)``)."""
    start = torch.full_like(y[:, :1], bos(task))
    return torch.cat((start, y[:, :-1]), dim=1)


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, task: Task) -> torch.Tensor:
    """The model's own output: from BOS, append the most likely token ``T`` times (``T`` = target length).

    Each step reruns the decoder over the prefix (no cache): quadratic in ``T``, which is small here. The
    causal decoders (GRU; ``nn.Transformer`` with its causal mask) give the same logits for a prefix as they
    do under teacher forcing, so training and decoding see the same model.
    """
    out = torch.full_like(src[:, :1], bos(task))
    for _ in range(task.y_test.shape[1]):
        logits = model(src, out)[:, -1]
        out = torch.cat((out, logits.argmax(dim=-1, keepdim=True)), dim=1)
    return out[:, 1:]
