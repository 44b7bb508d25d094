"""Language objectives on the generated language: ``mlm``, ``clm``, ``denoise``, ``mass`` (+ ``random-init``).

Backbones are stock ``torch.nn`` Transformers (pre-norm, GELU, no dropout, 4 heads, FFN 4x width): an
``nn.TransformerEncoder`` of ``layers`` layers for ``mlm``/``clm`` (causal mask for ``clm``) and an
``nn.Transformer`` of ``layers // 2`` + ``layers // 2`` for the encoder-decoders; the suite's width knob
matches their parameter counts. Token and learned position embeddings and the output head (tied to the
embedding) are outside ``.backbone``.

* ``mlm`` (BERT): exactly ``round(15% x words)`` (at least one) positions per document are chosen; of those
  80% become ``<mask>``, 10% a random word and 10% stay, each by an independent draw; loss on the chosen.
* ``clm`` (GPT): next-token prediction under a causal mask.
* ``denoise`` (BART): the document's sentences are permuted, then spans with Poisson(3) lengths are each
  replaced by one ``<mask>`` until 30% of the words are covered (a length-0 span inserts a ``<mask>``); the
  decoder rebuilds the original document.
* ``mass`` (MASS): one contiguous span of half the words is masked in the encoder's input; the decoder
  predicts that span alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.pretraining import data
from bench.pretraining.objective import Objective, masked_mean, register

HEADS = 4
IGNORE = -100
MLM_RATIO, MLM_MASK, MLM_RANDOM = 0.15, 0.8, 0.1
SPAN_RATIO, SPAN_POISSON = 0.3, 3.0
MASS_RATIO = 0.5


def _layer(width: int, decoder: bool = False) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(width, HEADS, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


class _Text(Objective):
    """Embeddings, position table and a tied output head around a backbone made by the subclass."""

    group = "language"

    def __init__(self, width: int, vocab_size: int = len(data.VOCAB), max_len: int = data.DOC_LEN) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(vocab_size, width)
        nn.init.normal_(
            self.embed.weight, std=0.02
        )  # tied to the output head: unit-variance logits would start at ~10 nats
        self.pos = nn.Parameter(torch.randn(1, max_len, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) + self.pos[:, : tokens.shape[1]]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(h), self.embed.weight)  # tied output head

    def batch(self, pool: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (pool[idx],)


class _EncoderOnly(_Text):
    causal = False

    def __init__(self, width: int, layers: int = 4, **args: Any) -> None:
        super().__init__(width, **args)
        self.backbone = nn.TransformerEncoder(_layer(width), layers, enable_nested_tensor=False)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device) if self.causal else None
        return self.backbone(self.embed_tokens(tokens), mask=mask, is_causal=self.causal,
                             src_key_padding_mask=None if self.causal else tokens == data.PAD)  # fmt: skip

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.encode(tokens), tokens != data.PAD)


def mlm_mask(tokens: torch.Tensor, ratio: float = MLM_RATIO) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: ``(inputs, targets)``; targets are ``IGNORE`` except at the chosen positions."""
    words = tokens >= len(data.SPECIALS)
    k = (ratio * words.sum(1).float()).round().clamp(min=1).long()
    scores = torch.rand(tokens.shape, device=tokens.device).masked_fill(~words, 2.0)
    rank = scores.argsort(1).argsort(1)
    chosen = (rank < k.unsqueeze(1)) & words
    u = torch.rand(tokens.shape, device=tokens.device)
    random_words = torch.randint(len(data.SPECIALS), len(data.VOCAB), tokens.shape, device=tokens.device)
    inputs = torch.where(chosen & (u < MLM_MASK), data.MASK, tokens)
    inputs = torch.where(chosen & (u >= MLM_MASK) & (u < MLM_MASK + MLM_RANDOM), random_words, inputs)
    return inputs, tokens.masked_fill(~chosen, IGNORE)


@register("mlm", "language")
class MaskedLM(_EncoderOnly):
    name = "mlm"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        inputs, targets = mlm_mask(tokens)
        return F.cross_entropy(self.logits(self.encode(inputs)).flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@register("clm", "language")
class CausalLM(_EncoderOnly):
    name = "clm"
    causal = True

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.logits(self.encode(tokens[:, :-1]))
        targets = tokens[:, 1:].masked_fill(tokens[:, 1:] == data.PAD, IGNORE)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.encode(tokens), tokens != data.PAD)

    @torch.no_grad()
    def token_nll(self, tokens: torch.Tensor) -> tuple[float, int]:
        """Summed next-token negative log-likelihood over the real tokens, and their count (for perplexity)."""
        logits = self.logits(self.encode(tokens[:, :-1]))
        targets = tokens[:, 1:].masked_fill(tokens[:, 1:] == data.PAD, IGNORE)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
        return float(nll), int((targets != IGNORE).sum())

    @torch.no_grad()
    def sample(self, n: int, length: int = data.DOC_LEN, temperature: float = 1.0) -> torch.Tensor:
        """``n`` documents sampled from ``<bos>`` (torch's global RNG), padded after ``<eos>``."""
        device = self.embed.weight.device
        seq = torch.full((n, 1), data.BOS, dtype=torch.int64, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        for _ in range(length - 1):
            probs = torch.softmax(self.logits(self.encode(seq))[:, -1] / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1).squeeze(1).masked_fill(done, data.PAD)
            done |= nxt == data.EOS
            seq = torch.cat([seq, nxt.unsqueeze(1)], dim=1)
            if bool(done.all()):
                break
        return seq


class _EncoderDecoder(_Text):
    def __init__(self, width: int, layers: int = 4, **args: Any) -> None:
        super().__init__(width, **args)
        half = max(1, layers // 2)
        # The encoder is the one nn.Transformer builds, passed in only to turn nested tensors off (they warn
        # with norm_first and do not help fixed-length batches), as bench.models.seq does.
        encoder = nn.TransformerEncoder(_layer(width), half, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.backbone = nn.Transformer(width, HEADS, half, half, 4 * width, dropout=0.0, activation="gelu",
                                       custom_encoder=encoder, batch_first=True, norm_first=True)  # fmt: skip

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return self.backbone.encoder(self.embed_tokens(src), src_key_padding_mask=src == data.PAD)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.encode(tokens), tokens != data.PAD)

    def seq2seq_loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        memory = self.encode(src)
        n = tgt_in.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=src.device)
        h = self.backbone.decoder(self.embed_tokens(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                                  memory_key_padding_mask=src == data.PAD)  # fmt: skip
        return F.cross_entropy(self.logits(h).flatten(0, 1), tgt_out.flatten(), ignore_index=IGNORE)


def _words(doc: torch.Tensor) -> list[int]:
    return [int(t) for t in doc if int(t) >= len(data.SPECIALS)]


def _pad(rows: list[list[int]], length: int, fill: int = data.PAD) -> torch.Tensor:
    return torch.tensor([r[:length] + [fill] * (length - len(r[:length])) for r in rows], dtype=torch.int64)


def bart_noise(words: list[int], ratio: float = SPAN_RATIO, lam: float = SPAN_POISSON) -> list[int]:
    """BART's sentence permutation then text infilling of ``words`` (torch's global RNG)."""
    stop = data.TOKEN_IDS["."]
    sentences, cur = [], []
    for w in words:
        cur.append(w)
        if w == stop:
            sentences.append(cur)
            cur = []
    if cur:
        sentences.append(cur)
    out = [w for i in torch.randperm(len(sentences)).tolist() for w in sentences[i]]
    budget = math.ceil(ratio * len(out))
    covered = 0
    while covered < budget and out:
        span = min(int(torch.poisson(torch.tensor(lam))), budget - covered)
        start = int(torch.randint(0, len(out) - span + 1, (1,)))
        if span == 0:
            out.insert(start, data.MASK)
            covered += 1  # an inserted mask counts, or a run of zero-length draws would never end
        else:
            out[start : start + span] = [data.MASK]
            covered += span
    return out


@register("denoise", "language")
class Denoising(_EncoderDecoder):
    name = "denoise"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        docs = [_words(d) for d in tokens]
        length = tokens.shape[1]
        src = _pad([[data.BOS, *bart_noise(w), data.EOS] for w in docs], length).to(tokens.device)
        tgt = _pad([[data.BOS, *w, data.EOS] for w in docs], length).to(tokens.device)
        tgt_out = tgt[:, 1:].masked_fill(tgt[:, 1:] == data.PAD, IGNORE)
        return self.seq2seq_loss(src, tgt[:, :-1], tgt_out)


def mass_span(words: list[int], ratio: float = MASS_RATIO) -> tuple[list[int], list[int]]:
    """MASS: ``(masked words, span)``: a contiguous span of ``round(ratio x len)`` words at a random start."""
    k = max(1, round(ratio * len(words)))
    start = int(torch.randint(0, len(words) - k + 1, (1,)))
    return words[:start] + [data.MASK] * k + words[start + k :], words[start : start + k]


@register("mass", "language")
class Mass(_EncoderDecoder):
    name = "mass"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pairs = [mass_span(_words(d)) for d in tokens]
        src = _pad([[data.BOS, *m, data.EOS] for m, _ in pairs], tokens.shape[1]).to(tokens.device)
        span_len = math.ceil(MASS_RATIO * tokens.shape[1])  # fixed: every step costs the same (budget.py)
        tgt_in = _pad([[data.BOS, *s[:-1]] for _, s in pairs], span_len).to(tokens.device)
        tgt_out = _pad([s for _, s in pairs], span_len, fill=IGNORE).to(tokens.device)
        return self.seq2seq_loss(src, tgt_in, tgt_out)


@register("random-init-language", "language")
class RandomInitText(_EncoderOnly):
    """The floor: the ``mlm`` encoder as initialised, never trained."""

    name = "random-init"
    trains = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.features(tokens).pow(2).mean()
