"""Offline, generated pretraining data, deterministic per seed: an image world with captions and a toy language.

**The image world** (``ImageWorld``): 32x32 RGB images of one object on a noisy background, drawn from five
independent attributes -- shape (circle, square, triangle, cross), colour (six), size (small, large), texture
(solid, striped, dotted) and position (four quadrants, with a few pixels of jitter). Each image comes with a
caption generated from the same attributes (``"a large red striped circle at the top left"``). The
downstream task is the **shape** (4 classes); the ``supervised`` objective's disjoint pretraining task is
**colour x size** (12 classes), which says nothing about shape.

**The language** (``Grammar``): a probabilistic grammar with long-range number agreement. A sentence is
``NP(n) VP(n) .``: the main verb agrees with the subject's head noun across an optional prepositional phrase
or object relative clause whose nouns ("attractors") may have the other number::

    the old dogs near the cat run .
    the fox that the birds see chases the cats .

``Grammar.accepts`` is the exact acceptor (a recursive-descent parser of the same rules). The downstream task
is **grammaticality**: half of the held-out sentences have their main verb's number flipped (labels 1 =
grammatical); solving it needs the head noun, several tokens back. Pretraining documents are two sentences.

Sizes: the unlabelled pretraining pool is ``pool_factor`` (>= 10) times the labelled downstream set
(train + test); pools, labelled sets and every random choice come from generators seeded by the data seed
(``torch.Generator`` for images, ``random.Random`` for sentences), so a seed gives bit-identical tensors.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any

import torch

# --- the image world ---------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZES = ("small", "large")
TEXTURES = ("solid", "striped", "dotted")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
_RGB = torch.tensor([[0.9, 0.15, 0.1], [0.1, 0.8, 0.2], [0.15, 0.3, 0.95], [0.95, 0.85, 0.1], [0.9, 0.2, 0.85],
                     [0.1, 0.85, 0.9]])  # fmt: skip
IMAGE_SIZE = 32
#: attribute name -> number of values, in the column order of an attribute tensor
ATTRIBUTES = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES), "texture": len(TEXTURES),
              "position": len(POSITIONS)}  # fmt: skip
#: the smallest ratio of unlabelled pretraining samples to labelled downstream samples (train + test)
MIN_PRETRAIN_FACTOR = 10


def random_attributes(n: int, g: torch.Generator) -> torch.Tensor:
    """``(n, 5)`` int64 attributes (shape, colour, size, texture, position), uniform and independent."""
    return torch.stack([torch.randint(0, k, (n,), generator=g) for k in ATTRIBUTES.values()], dim=1)


def render(attrs: torch.Tensor, g: torch.Generator, size: int = IMAGE_SIZE) -> torch.Tensor:
    """``(n, 3, size, size)`` float32 images in [0, 1] of the objects ``attrs`` describes (vectorised)."""
    n = attrs.shape[0]
    shape, colour, big, texture, pos = attrs.unbind(1)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")  # fmt: skip
    ys, xs = ys.expand(n, size, size), xs.expand(n, size, size)
    quarter = size / 4
    jitter = (torch.rand(n, 2, generator=g) - 0.5) * (size / 8)
    cx = (quarter + 2 * quarter * (pos % 2).float() + jitter[:, 0]).view(n, 1, 1)
    cy = (quarter + 2 * quarter * (pos // 2).float() + jitter[:, 1]).view(n, 1, 1)
    r = torch.where(big.bool(), size * 0.22, size * 0.14).view(n, 1, 1)
    dx, dy = xs - cx, ys - cy
    masks = torch.stack([
        dx**2 + dy**2 <= r**2,  # circle
        (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85),  # square
        (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2),  # triangle, apex up
        ((dx.abs() <= r / 3) & (dy.abs() <= r)) | ((dy.abs() <= r / 3) & (dx.abs() <= r)),  # cross
    ])  # fmt: skip
    mask = masks[shape, torch.arange(n)]
    stripes = ((xs + ys) % 4) < 2
    dots = ((xs % 3) == 0) & ((ys % 3) == 0)
    fill = torch.where((texture == 1).view(n, 1, 1), stripes, torch.where((texture == 2).view(n, 1, 1), ~dots, True))
    paint = (mask & fill).unsqueeze(1).float()
    background = 0.1 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
    colour_rgb = _RGB[colour].view(n, 3, 1, 1)
    img = background * (1 - paint) + colour_rgb * paint
    img = img + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return img.clamp(0.0, 1.0)


def caption_words(a: torch.Tensor) -> list[str]:
    """The caption of one object's attributes, as words: ``a large red striped circle at the top left``."""
    shape, colour, big, texture, pos = (int(v) for v in a)
    return ["a", SIZES[big], COLOURS[colour], TEXTURES[texture], SHAPES[shape], "at", "the", *POSITIONS[pos].split()]


#: the caption vocabulary: padding first, then every word a caption can use
CAPTION_VOCAB = ("<pad>", "a", "at", "the", *SIZES, *COLOURS, *TEXTURES, *SHAPES, "top", "bottom", "left", "right")
CAPTION_LEN = 10
_CAPTION_IDS = {w: i for i, w in enumerate(CAPTION_VOCAB)}


def captions(attrs: torch.Tensor) -> torch.Tensor:
    """``(n, CAPTION_LEN)`` int64 token ids of the captions of ``attrs`` (padded with 0)."""
    out = torch.zeros(attrs.shape[0], CAPTION_LEN, dtype=torch.int64)
    for i, a in enumerate(attrs):
        ids = [_CAPTION_IDS[w] for w in caption_words(a)]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def corrupt_attributes(attrs: torch.Tensor, fraction: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Attributes for captions of which exactly ``round(fraction * n)`` no longer describe their image.

    The chosen rows get a different shape (a random non-zero shift) and freshly drawn other attributes, so a
    corrupted caption is always wrong about the object, as a mismatched web caption is. Returns the new
    attributes and the boolean mask of corrupted rows.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"caption corruption fraction must be in [0, 1], got {fraction}")
    n = attrs.shape[0]
    k = round(fraction * n)
    corrupted = torch.zeros(n, dtype=torch.bool)
    corrupted[torch.randperm(n, generator=g)[:k]] = True
    fresh = random_attributes(n, g)
    fresh[:, 0] = (attrs[:, 0] + torch.randint(1, len(SHAPES), (n,), generator=g)) % len(SHAPES)
    return torch.where(corrupted.unsqueeze(1), fresh, attrs), corrupted


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images (uint8 to keep pools small), their attributes and their captions' token ids."""

    images: torch.Tensor  # (n, 3, 32, 32) uint8
    attrs: torch.Tensor  # (n, 5) int64
    captions: torch.Tensor  # (n, CAPTION_LEN) int64

    def __len__(self) -> int:
        return int(self.attrs.shape[0])

    def floats(self, idx: torch.Tensor | slice) -> torch.Tensor:
        """Images ``idx`` as float32 in [0, 1]."""
        return self.images[idx].float() / 255.0

    @property
    def shape_labels(self) -> torch.Tensor:
        return self.attrs[:, 0]

    @property
    def colour_size_labels(self) -> torch.Tensor:
        """The supervised objective's disjoint pretraining labels: colour x size (12 classes)."""
        return self.attrs[:, 1] * len(SIZES) + self.attrs[:, 2]


def image_set(n: int, seed: int, chunk: int = 2048) -> ImageSet:
    """``n`` images of the world, bit-identical for a seed (rendered in chunks to bound memory)."""
    g = torch.Generator().manual_seed(seed)
    attrs = random_attributes(n, g)
    parts = [(render(attrs[i : i + chunk], g) * 255).round().to(torch.uint8) for i in range(0, n, chunk)]
    images = torch.cat(parts) if parts else torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return ImageSet(images=images, attrs=attrs, captions=captions(attrs))


# --- the language ------------------------------------------------------------------------------------------

DETERMINER = "the"
NOUNS = (("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("fox", "foxes"), ("child", "children"),
         ("horse", "horses"))  # fmt: skip
INTRANSITIVE = (("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("waits", "wait"))
TRANSITIVE = (("sees", "see"), ("chases", "chase"), ("likes", "like"), ("follows", "follow"))
ADJECTIVES = ("old", "small", "happy", "brown")
PREPOSITIONS = ("near", "behind", "with")
SPECIALS = ("<pad>", "<mask>", "<bos>", "<eos>")
PAD, MASK, BOS, EOS = range(4)
WORDS = (DETERMINER, *(w for pair in NOUNS for w in pair), *(w for pair in INTRANSITIVE for w in pair),
         *(w for pair in TRANSITIVE for w in pair), *ADJECTIVES, *PREPOSITIONS, "that", ".")  # fmt: skip
VOCAB = (*SPECIALS, *WORDS)
TOKEN_IDS = {w: i for i, w in enumerate(VOCAB)}
#: tokens of one pretraining document (two sentences, <bos> and <eos>) and of one downstream sentence
DOC_LEN = 40
SENTENCE_LEN = 20


@dataclass(frozen=True)
class Grammar:
    """The probabilistic grammar (probabilities of its optional parts) and its exact acceptor."""

    p_adjective: float = 0.3  # per adjective slot (at most two)
    p_modifier: float = 0.5  # the subject gets a PP or RC
    p_relative: float = 0.5  # given a modifier: RC rather than PP
    p_transitive: float = 0.5

    def sentence(self, rng: random.Random) -> tuple[list[str], int]:
        """One sentence (words, ending in ``.``) and the index of its main verb."""

        def u() -> float:
            return rng.random()

        def pick(options: tuple) -> Any:
            return options[rng.randrange(len(options))]

        def noun_phrase(number: int) -> list[str]:
            adjs = [str(pick(ADJECTIVES)) for _ in range(2) if u() < self.p_adjective]
            return [DETERMINER, *adjs, pick(NOUNS)[number]]

        number = int(u() < 0.5)
        words = noun_phrase(number)
        if u() < self.p_modifier:
            other = int(u() < 0.5)
            if u() < self.p_relative:  # object relative clause: its verb agrees with its own subject
                words += ["that", *noun_phrase(other), pick(TRANSITIVE)[other]]
            else:
                words += [str(pick(PREPOSITIONS)), *noun_phrase(other)]
        verb_at = len(words)
        if u() < self.p_transitive:
            words += [pick(TRANSITIVE)[number], *noun_phrase(int(u() < 0.5))]
        else:
            words += [pick(INTRANSITIVE)[number]]
        return [*words, "."], verb_at

    def accepts(self, words: list[str]) -> bool:
        """Whether ``words`` is a sentence of the language (agreement included); exact, by recursive descent."""
        pos = 0

        def noun_phrase() -> int | None:  # returns the head noun's number
            nonlocal pos
            if pos >= len(words) or words[pos] != DETERMINER:
                return None
            pos += 1
            adjs = 0
            while pos < len(words) and words[pos] in ADJECTIVES and adjs < 2:
                pos, adjs = pos + 1, adjs + 1
            if pos < len(words):
                for number in (0, 1):
                    if words[pos] in {pair[number] for pair in NOUNS}:
                        pos += 1
                        return number
            return None

        def verb(table: tuple, number: int) -> bool:
            nonlocal pos
            if pos < len(words) and words[pos] in {pair[number] for pair in table}:
                pos += 1
                return True
            return False

        number = noun_phrase()
        if number is None:
            return False
        if pos < len(words) and words[pos] == "that":
            pos += 1
            other = noun_phrase()
            if other is None or not verb(TRANSITIVE, other):
                return False
        elif pos < len(words) and words[pos] in PREPOSITIONS:
            pos += 1
            if noun_phrase() is None:
                return False
        if verb(TRANSITIVE, number):
            if noun_phrase() is None:
                return False
        elif not verb(INTRANSITIVE, number):
            return False
        return pos == len(words) - 1 and words[pos] == "."


def encode(words: list[str], length: int) -> torch.Tensor:
    """``<bos> words <eos>`` as token ids, padded to ``length``; a ``ValueError`` if it does not fit."""
    ids = [BOS, *(TOKEN_IDS[w] for w in words), EOS]
    if len(ids) > length:
        raise ValueError(f"{len(ids)} tokens do not fit in {length}")
    return torch.tensor(ids + [PAD] * (length - len(ids)), dtype=torch.int64)


def decode(ids: torch.Tensor | list[int]) -> list[str]:
    """Token ids back to words, without <bos>, stopping at <eos> or padding; other specials kept as text."""
    out = []
    for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        if i in (EOS, PAD):
            break
        if i != BOS:
            out.append(VOCAB[i])
    return out


def documents(n: int, seed: int, grammar: Grammar = Grammar()) -> torch.Tensor:
    """``(n, DOC_LEN)`` pretraining documents: two sentences each, bit-identical for a seed."""
    rng = random.Random(seed)
    out = torch.empty(n, DOC_LEN, dtype=torch.int64)
    for i in range(n):
        while True:  # a rare pair too long for the window is redrawn
            words = grammar.sentence(rng)[0] + grammar.sentence(rng)[0]
            if len(words) + 2 <= DOC_LEN:
                out[i] = encode(words, DOC_LEN)
                break
    return out


def agreement_set(n: int, seed: int, grammar: Grammar = Grammar()) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` single sentences ``(n, SENTENCE_LEN)`` and labels (1 = grammatical, 0 = main verb's number flipped).

    Exactly half (rounded down) are flipped, at random positions; a flipped sentence is never accepted.
    """
    rng = random.Random(seed)
    flip = torch.zeros(n, dtype=torch.bool)
    flip[rng.sample(range(n), n // 2)] = True
    x = torch.empty(n, SENTENCE_LEN, dtype=torch.int64)
    for i in range(n):
        while True:
            words, verb_at = grammar.sentence(rng)
            if len(words) + 2 <= SENTENCE_LEN:
                break
        if flip[i]:
            words[verb_at] = _flip_number(words[verb_at])
        x[i] = encode(words, SENTENCE_LEN)
    return x, (~flip).long()


def _flip_number(verb: str) -> str:
    for pair in (*INTRANSITIVE, *TRANSITIVE):
        if verb in pair:
            return pair[1 - pair.index(verb)]
    raise ValueError(f"{verb!r} is not a verb")


def pool_size(labelled: int, factor: float) -> int:
    """The unlabelled pool for ``labelled`` downstream samples; a factor below the minimum is refused."""
    if factor < MIN_PRETRAIN_FACTOR:
        raise ValueError(f"the pretraining pool must be at least {MIN_PRETRAIN_FACTOR}x the labelled set, got {factor}")
    return math.ceil(labelled * factor)


@functools.lru_cache(maxsize=4)
def pool(group: str, n: int, seed: int) -> torch.Tensor | ImageSet:
    """``n`` unlabelled pretraining samples of ``group``: documents (language) or images with captions."""
    if group == "language":
        return documents(n, seed)
    if group in ("vision", "joint"):
        return image_set(n, seed)
    raise ValueError(f"unknown group {group!r}; valid choices: language, vision, joint")
