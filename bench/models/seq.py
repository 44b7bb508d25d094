"""Sequence models of the seq-backbones suite: the same task heads around every backbone.

Every model is ``embedding -> backbone -> head``; only the backbone differs between families, and it sits in
the model's ``.backbone`` attribute so that a tier can budget (and a report can show) the backbone alone.

* **Classification** (input kind ``tokens``): token ids ``(B, T)`` -> ``nn.Embedding(vocab, width)`` ->
  backbone -> features -> ``nn.Linear(features, num_classes)``. A recurrent backbone is read at its last
  state (for a bidirectional one, the final states of both directions of the top layer, concatenated); a
  Transformer encoder is mean-pooled over positions.
* **Sequence to sequence** (input kind ``seq2seq``): ``(src, tgt)`` token ids, ``(B, T)`` each, teacher-forced
  (the decoder reads the whole target at once, as in training): embeddings -> encoder-decoder backbone ->
  ``nn.Linear(width, vocab)``, one token's logits per target position, ``(B, T, vocab)``.

What each ``.backbone`` holds (what a tier counts): the ``nn.RNN``/``nn.LSTM``/``nn.GRU`` module; the
``nn.TransformerEncoder`` (layers and final LayerNorm); for the GRU encoder-decoder, both GRUs and the
attention's two matrices; ``nn.Transformer`` (both stacks and their final norms). Token embeddings,
positional encodings (a fixed sinusoid has no parameters; a learned table has ``max_len x width``) and the
output layer are outside it.

Everything is a stock ``torch.nn`` block or a plain torch op (attention is ``F.scaled_dot_product_attention``),
so the cost measured is that of the blocks users actually run. Dropout is 0 everywhere: a training step
is timed for its arithmetic, and dropout's masks would only add noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import register_inputs

if TYPE_CHECKING:
    from bench.spec import CellSpec

#: recurrent cell name -> torch.nn block
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
#: positional encodings of the Transformer families
POSITIONAL: tuple[str, ...] = ("sinusoidal", "learned")


def _eats(kind: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Mark a builder with the input kind its model takes (read by the ``seq`` input maker)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.input_kind = kind  # type: ignore[attr-defined]
        return fn

    return deco


# --- positional encodings ----------------------------------------------------------------------------------


def sinusoid(length: int, width: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The fixed sinusoidal positional encoding of Vaswani et al. (2017), ``(length, width)``, float32."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    angle = pos * freq
    pe = torch.empty(length, width, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : width // 2])
    return pe


class PositionalEmbedding(nn.Module):
    """Token embedding plus a positional encoding: a fixed sinusoid (any length) or a learned table.

    The sinusoid is recomputed per call (``T x width`` sin/cos, negligible next to any backbone) rather than
    kept as a ``max_len`` buffer, so it costs no memory and has no length limit. The learned table is a
    ``nn.Embedding(max_len, width)``: its size is the family's real memory cost, so it is built as long as
    the longest sequence the suite runs.
    """

    def __init__(self, vocab_size: int, width: int, pos: str = "sinusoidal", max_len: int = 4096) -> None:
        super().__init__()
        if pos not in POSITIONAL:
            raise ValueError(f"unknown positional encoding {pos!r}; valid: {', '.join(POSITIONAL)}")
        self.width, self.pos, self.max_len = width, pos, max_len
        self.tokens = nn.Embedding(vocab_size, width)
        self.table = nn.Embedding(max_len, width) if pos == "learned" else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids)
        t = ids.shape[1]
        if self.table is None:
            # sqrt(width) scaling keeps token and position signals comparable (Vaswani et al., section 3.4).
            return x * math.sqrt(self.width) + sinusoid(t, self.width, device=x.device).to(x.dtype)
        if t > self.max_len:
            raise ValueError(f"sequence of length {t} is longer than the learned positional table ({self.max_len})")
        return x + self.table.weight[:t]


# --- classifiers -------------------------------------------------------------------------------------------


class RecurrentClassifier(nn.Module):
    """Embedding -> ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (batch-first) -> last state -> linear classifier."""

    def __init__(self, cell: str, width: int, layers: int, bidirectional: bool, vocab_size: int, num_classes: int):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}; valid: {', '.join(CELLS)}")
        self.embed = nn.Embedding(vocab_size, width)
        self.backbone = CELLS[cell](width, width, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(width * (2 if bidirectional else 1), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, h = self.backbone(self.embed(ids))
        h = h[0] if isinstance(h, tuple) else h  # LSTM returns (h_n, c_n)
        # h_n is (layers * directions, B, width); the top layer's directions are its last entries. For a
        # bidirectional net this is the backward direction's *final* state (after reading the whole sequence),
        # which the last output position would not give.
        feats = torch.cat((h[-2], h[-1]), dim=-1) if self.backbone.bidirectional else h[-1]
        return self.head(feats)


class TransformerClassifier(nn.Module):
    """Embedding + positions -> ``nn.TransformerEncoder`` (pre-LN, GELU) -> mean pool -> linear classifier."""

    def __init__(self, width: int, heads: int, layers: int, ffn_ratio: int, pos: str, max_len: int, vocab_size: int,
                 num_classes: int) -> None:  # fmt: skip
        super().__init__()
        self.embed = PositionalEmbedding(vocab_size, width, pos, max_len)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=ffn_ratio * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)  # fmt: skip
        # enable_nested_tensor only helps padded batches (ours are dense) and warns with norm_first.
        self.backbone = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.head = nn.Linear(width, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.embed(ids)).mean(dim=1))


# --- sequence to sequence ----------------------------------------------------------------------------------


class LuongAttention(nn.Module):
    """Luong et al. (2015) global attention, "general" score, as two linear maps around one SDPA call.

    ``score(h_t, h_s) = h_t^T W_a h_s``: with ``q = W_a h_t`` that is an unscaled dot product, i.e.
    ``F.scaled_dot_product_attention(q, enc, enc, scale=1)``; then ``h~_t = tanh(W_c [c_t; h_t])``.
    Decoder states attend to the encoder's in parallel (no input feeding), so the decoder GRU runs as one
    cuDNN/oneDNN call under teacher forcing.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Linear(width, width, bias=False)  # W_a
        self.combine = nn.Linear(2 * width, width, bias=False)  # W_c

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        ctx = F.scaled_dot_product_attention(self.score(dec), enc, enc, scale=1.0)
        return torch.tanh(self.combine(torch.cat((ctx, dec), dim=-1)))


class GRUSeq2Seq(nn.Module):
    """GRU encoder-decoder with Luong attention; the encoder's final state starts the decoder."""

    def __init__(self, width: int, layers: int, vocab_size: int) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab_size, width)
        self.tgt_embed = nn.Embedding(vocab_size, width)
        self.backbone = nn.ModuleDict({
            "encoder": nn.GRU(width, width, num_layers=layers, batch_first=True),
            "decoder": nn.GRU(width, width, num_layers=layers, batch_first=True),
            "attention": LuongAttention(width),
        })  # fmt: skip
        self.out = nn.Linear(width, vocab_size)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        enc, h = self.backbone["encoder"](self.src_embed(src))
        dec, _ = self.backbone["decoder"](self.tgt_embed(tgt), h)
        return self.out(self.backbone["attention"](dec, enc))


class TransformerSeq2Seq(nn.Module):
    """``nn.Transformer`` (pre-LN, GELU) with sinusoidal positions and a causal decoder."""

    def __init__(self, width: int, heads: int, layers: int, ffn_ratio: int, vocab_size: int) -> None:
        super().__init__()
        self.src_embed = PositionalEmbedding(vocab_size, width)
        self.tgt_embed = PositionalEmbedding(vocab_size, width)
        kw: dict[str, Any] = dict(dim_feedforward=ffn_ratio * width, dropout=0.0, activation="gelu", batch_first=True,
                                  norm_first=True)  # fmt: skip
        # The encoder is passed in only to turn off nested tensors (see TransformerClassifier); it is the one
        # nn.Transformer would build.
        encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, heads, **kw), layers, norm=nn.LayerNorm(width),
                                        enable_nested_tensor=False)  # fmt: skip
        self.backbone = nn.Transformer(width, heads, num_encoder_layers=layers, num_decoder_layers=layers,
                                       custom_encoder=encoder, **kw)  # fmt: skip
        self.out = nn.Linear(width, vocab_size)
        self._masks: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}

    def _causal(self, t: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        # MultiheadAttention insists on a mask alongside is_causal=True, then drops it and lets SDPA apply
        # causality without materialising it. Built once per length: a real decoder would not rebuild a
        # T x T tensor every step either.
        key = (t, str(device), dtype)
        if key not in self._masks:
            with torch.no_grad():
                self._masks[key] = nn.Transformer.generate_square_subsequent_mask(t, device=device, dtype=dtype)
        return self._masks[key]

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        x, y = self.src_embed(src), self.tgt_embed(tgt)
        mask = self._causal(tgt.shape[1], y.device, y.dtype)
        return self.out(self.backbone(x, y, tgt_mask=mask, tgt_is_causal=True))


# --- builders (``bench.models.seq:<name>`` in a VariantSpec) ------------------------------------------------


@_eats("tokens")
def recurrent(cell: str = "lstm", width: int = 128, layers: int = 2, bidirectional: bool = False,
              vocab_size: int = 256, num_classes: int = 10) -> nn.Module:  # fmt: skip
    """A recurrent classifier: ``cell`` in rnn (tanh) / lstm / gru, ``width`` = embedding = hidden size."""
    return RecurrentClassifier(cell, width, layers, bidirectional, vocab_size, num_classes)


@_eats("tokens")
def transformer(width: int = 128, heads: int = 4, layers: int = 2, ffn_ratio: int = 4, pos: str = "sinusoidal",
                max_len: int = 4096, vocab_size: int = 256, num_classes: int = 10) -> nn.Module:  # fmt: skip
    """A Transformer-encoder classifier with fixed (``pos="sinusoidal"``) or learned positions."""
    return TransformerClassifier(width, heads, layers, ffn_ratio, pos, max_len, vocab_size, num_classes)


@_eats("seq2seq")
def gru_seq2seq(width: int = 128, layers: int = 2, vocab_size: int = 256) -> nn.Module:
    """A GRU encoder-decoder with Luong attention."""
    return GRUSeq2Seq(width, layers, vocab_size)


@_eats("seq2seq")
def transformer_seq2seq(width: int = 128, heads: int = 4, layers: int = 2, ffn_ratio: int = 4,
                        vocab_size: int = 256) -> nn.Module:  # fmt: skip
    """An ``nn.Transformer`` encoder-decoder."""
    return TransformerSeq2Seq(width, heads, layers, ffn_ratio, vocab_size)


def attention_width(width: int) -> dict[str, Any]:
    """Knob derive for Transformers: ``width`` and the head count whose head dim is nearest 32 (64 from 512).

    Among ``width``'s divisors, so ``width % heads == 0`` always holds; ties go to fewer heads.
    """
    target = 64 if width >= 512 else 32
    heads = min((h for h in range(1, width + 1) if width % h == 0), key=lambda h: (abs(width / h - target), h))
    return {"width": width, "heads": heads}


def backbone_params(model: nn.Module) -> int:
    """Parameters of ``model.backbone`` (what the seq-backbones tiers budget)."""
    return sum(p.numel() for p in model.backbone.parameters())


# --- inputs ------------------------------------------------------------------------------------------------


def _input_args(cell: CellSpec) -> dict[str, Any]:
    from bench.spec import _thaw

    return {k: _thaw(v) for k, v in cell.input_args}


def _length(cell: CellSpec, device: torch.device | str) -> int:
    """The cell's sequence length, after checking the suite's caps (``input_args["max_seq_len"]``).

    Caps are keyed by device type (``"cpu"``) or device type and mode (``"cpu/train"``); the tighter wins.
    A longer cell is skipped with the reason, so one profile can sweep further on CUDA than on a CPU.
    """
    t = cell.key.seq_len
    if t is None:
        raise ValueError(f"cell {cell.key.id} has no seq_len; token inputs need the profile's seq_lens")
    caps: Mapping[str, int] = _input_args(cell).get("max_seq_len") or {}
    dev = torch.device(device).type
    for where in (f"{dev}/{cell.key.mode}", dev):
        if where in caps and t > caps[where]:
            from bench.worker import CellSkipped

            raise CellSkipped(f"seq_len {t} is above the suite's cap of {caps[where]} for {where}")
    return t


def _tokens(cell: CellSpec, batch_size: int, t: int, device: torch.device | str, seed: int) -> torch.Tensor:
    vocab = int(_input_args(cell).get("vocab_size", 256))
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch_size, t), generator=g).to(device)


@register_inputs("tokens")
def token_inputs(
    cell: CellSpec, batch_size: int, device: torch.device | str, dtype: torch.dtype
) -> tuple[torch.Tensor]:
    """Random token ids ``(B, T)`` (int64, ``dtype`` does not apply), ``T = cell.key.seq_len``; seeded."""
    return (_tokens(cell, batch_size, _length(cell, device), device, seed=0),)


@register_inputs("seq2seq")
def seq2seq_inputs(cell: CellSpec, batch_size: int, device: torch.device | str,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Random source and target token ids, ``(B, T)`` each, ``T = cell.key.seq_len``; seeded."""
    t = _length(cell, device)
    return _tokens(cell, batch_size, t, device, seed=0), _tokens(cell, batch_size, t, device, seed=1)


def resolve_input_kind(builder: str) -> str:
    """The input kind a builder's model takes (``tokens`` unless the builder is marked otherwise)."""
    from bench.build import resolve_builder

    return getattr(resolve_builder(builder), "input_kind", "tokens")


@register_inputs("seq")
def seq_inputs(
    cell: CellSpec, batch_size: int, device: torch.device | str, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """``tokens`` or ``seq2seq`` inputs, whichever the variant's builder declares it takes.

    A suite has one input kind; this one lets classifiers and encoder-decoders share a suite (and its tiers).
    """
    from bench.registry import INPUTS

    return INPUTS.get(resolve_input_kind(cell.variant.builder))(cell, batch_size, device, dtype)
