"""The pretraining suite's generated data: deterministic per seed, captions and grammar as documented."""

from __future__ import annotations

import random

import pytest
import torch

from bench.pretraining import data


def test_image_world_is_deterministic_per_seed() -> None:
    a, b, c = data.image_set(40, seed=3), data.image_set(40, seed=3), data.image_set(40, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.attrs, b.attrs) and torch.equal(a.captions, b.captions)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == torch.uint8


def test_rendering_follows_the_attributes() -> None:
    g = torch.Generator().manual_seed(0)
    # a large solid red circle at the top left against one at the bottom right: the red sits where it says
    attrs = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 1, 0, 3]])
    img = data.render(attrs, g)
    red = img[:, 0] - img[:, 1]
    assert red[0, :16, :16].mean() > 0.3 > red[0, 16:, 16:].mean()
    assert red[1, 16:, 16:].mean() > 0.3 > red[1, :16, :16].mean()
    large, small = data.render(torch.tensor([[1, 0, 1, 0, 0], [1, 0, 0, 0, 0]]), g)
    assert (large[0] - large[1] > 0.3).sum() > (small[0] - small[1] > 0.3).sum()


def test_captions_are_generated_from_the_same_attributes() -> None:
    s = data.image_set(8, seed=1)
    for a, cap in zip(s.attrs, s.captions, strict=True):
        words = [data.CAPTION_VOCAB[i] for i in cap.tolist() if i]
        assert words == data.caption_words(a)
        assert data.SHAPES[int(a[0])] in words and data.COLOURS[int(a[1])] in words


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_caption_corruption_rate_is_exact(fraction: float) -> None:
    attrs = data.random_attributes(200, torch.Generator().manual_seed(0))
    new, corrupted = data.corrupt_attributes(attrs, fraction, torch.Generator().manual_seed(1))
    assert int(corrupted.sum()) == round(fraction * 200)
    wrong = (new != attrs).any(1)
    assert torch.equal(wrong, corrupted)  # exactly the chosen captions are wrong, and about the shape
    assert bool((new[corrupted, 0] != attrs[corrupted, 0]).all())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.corrupt_attributes(attrs, 1.5, torch.Generator())


def test_generated_sentences_are_accepted_and_agree() -> None:
    g, rng = data.Grammar(), random.Random(0)
    lengths = []
    for _ in range(300):
        words, verb = g.sentence(rng)
        assert g.accepts(words), words
        lengths.append(verb)
        flipped = list(words)
        flipped[verb] = data._flip_number(words[verb])
        assert not g.accepts(flipped), flipped  # the main verb agrees with the head noun, not the attractor
    assert max(lengths) >= 6  # some subjects are long: the agreement reaches across a modifier


def test_acceptor_rejects_non_sentences() -> None:
    g = data.Grammar()
    for text in ("the dog runs", "dog runs .", "the dogs near the cat runs .", "the dog that the cats sees runs .",
                 "the old old old dog runs .", "the dog runs . .", ""):  # fmt: skip
        assert not g.accepts(text.split()), text
    for text in ("the dogs near the cat run .", "the fox that the birds see chases the cats ."):
        assert g.accepts(text.split()), text


def test_language_sets_are_deterministic_and_labelled() -> None:
    assert torch.equal(data.documents(30, 5), data.documents(30, 5))
    assert not torch.equal(data.documents(30, 5), data.documents(30, 6))
    x, y = data.agreement_set(60, 2)
    x2, y2 = data.agreement_set(60, 2)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert int((y == 0).sum()) == 30
    g = data.Grammar()
    for ids, label in zip(x, y, strict=True):
        assert g.accepts(data.decode(ids)) == bool(label)


def test_documents_are_two_sentences_within_the_window() -> None:
    docs = data.documents(50, 0)
    assert docs.shape == (50, data.DOC_LEN) and bool((docs[:, 0] == data.BOS).all())
    for d in docs:
        words = data.decode(d)
        assert words.count(".") == 2 and words[-1] == "."


def test_the_pool_is_at_least_ten_times_the_labelled_set() -> None:
    assert data.pool_size(1000, 10.0) == 10_000
    with pytest.raises(ValueError, match="at least 10x"):
        data.pool_size(1000, 5.0)
