"""Sequence taggers: the seq suite's classifiers with one prediction per position instead of one per sequence.

Same embedding, same backbone (``.backbone``: what a tier budgets), same output layer as
``bench.models.seq``'s classifiers; only the readout differs: the head reads every position's output
(``(B, T, features)`` -> ``(B, T, num_classes)``) rather than the last state or the mean. A unidirectional
recurrent tagger's output at position t has read tokens 0..t only; a bidirectional one's has read the whole
sequence (its backward half from the end down to t); a Transformer encoder attends to every position.
The ``lookahead`` task (``bench.accuracy.seq_tasks``) is where that difference decides the score.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.seq import RecurrentClassifier, TransformerClassifier


class RecurrentTagger(RecurrentClassifier):
    """Embedding -> ``nn.RNN``/``nn.LSTM``/``nn.GRU`` -> every position's output -> linear."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.backbone(self.embed(ids))  # (B, T, width x directions)
        return self.head(out)


class TransformerTagger(TransformerClassifier):
    """Embedding + positions -> ``nn.TransformerEncoder`` (no mask: bidirectional) -> every position -> linear."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.embed(ids)))


def recurrent_tagger(cell: str = "lstm", width: int = 128, layers: int = 2, bidirectional: bool = False,
                     vocab_size: int = 256, num_classes: int = 10) -> nn.Module:  # fmt: skip
    """A recurrent tagger: ``cell`` in rnn (tanh) / lstm / gru, ``width`` = embedding = hidden size."""
    return RecurrentTagger(cell, width, layers, bidirectional, vocab_size, num_classes)


def transformer_tagger(width: int = 128, heads: int = 4, layers: int = 2, ffn_ratio: int = 4, pos: str = "sinusoidal",
                       max_len: int = 4096, vocab_size: int = 256, num_classes: int = 10) -> nn.Module:  # fmt: skip
    """A Transformer-encoder tagger with fixed (``pos="sinusoidal"``) or learned positions."""
    return TransformerTagger(width, heads, layers, ffn_ratio, pos, max_len, vocab_size, num_classes)


recurrent_tagger.input_kind = "tokens"  # type: ignore[attr-defined]  # read by the seq suite's input maker
transformer_tagger.input_kind = "tokens"  # type: ignore[attr-defined]
