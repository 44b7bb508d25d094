"""Joint image-text objectives: ``clip`` (symmetric InfoNCE on paired captions), ``align-noisy``, ``random-init``.

The backbone is a pair of encoders (``.backbone["image"]``: the vision group's timm ViT at ``depth`` blocks;
``.backbone["text"]``: an ``nn.TransformerEncoder`` of ``text_layers`` pre-norm layers over the caption tokens,
mean-pooled over real tokens). Linear projections to a shared 64-d space, the caption embeddings and the
learnable temperature are heads. The temperature starts at ``tau = 0.07`` (CLIP's) and is learned as
``logit_scale = log(1 / tau)``, clamped to at most ``log(100)``.

``align-noisy`` trains exactly like ``clip`` on a pool where exactly ``round(noise x n)`` captions were
replaced by captions of a different object (``data.corrupt_attributes``): ALIGN's noisy web pairs, with the
noise rate stated rather than unknown.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.pretraining import data
from bench.pretraining.objective import Objective, masked_mean, register
from bench.pretraining.vision import HEADS, PROJ, vit

CLIP_TAU = 0.07
MAX_LOGIT_SCALE = math.log(100.0)
ALIGN_NOISE = 0.3


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: image-to-text and text-to-image cross-entropy over the batch, averaged."""
    logits = logit_scale.exp() * F.normalize(img, dim=1) @ F.normalize(txt, dim=1).t()
    target = torch.arange(img.shape[0], device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


@register("clip", "joint")
class Clip(Objective):
    name = "clip"
    group = "joint"

    def __init__(self, width: int, depth: int = 3, text_layers: int = 2, tau: float = CLIP_TAU) -> None:
        super().__init__()
        self.width = width
        layer = nn.TransformerEncoderLayer(width, HEADS, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.backbone = nn.ModuleDict({"image": vit(width, depth),
                                       "text": nn.TransformerEncoder(layer, text_layers, enable_nested_tensor=False)})  # fmt: skip
        self.embed = nn.Embedding(len(data.CAPTION_VOCAB), width)
        self.pos = nn.Parameter(torch.randn(1, data.CAPTION_LEN, width) * 0.02)
        self.text_norm = nn.LayerNorm(width)
        self.image_proj = nn.Linear(width, PROJ, bias=False)
        self.text_proj = nn.Linear(width, PROJ, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone["image"](images)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_proj(self.features(images))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        real = tokens != 0
        h = self.backbone["text"](self.embed(tokens) + self.pos[:, : tokens.shape[1]], src_key_padding_mask=~real)
        return self.text_proj(self.text_norm(masked_mean(h, real)))

    def batch(self, pool: data.ImageSet, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return pool.floats(idx), pool.captions[idx]

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE)
        return clip_loss(self.encode_image(images), self.encode_text(captions), scale)


@register("align-noisy", "joint")
class AlignNoisy(Clip):
    name = "align-noisy"

    def __init__(self, width: int, depth: int = 3, text_layers: int = 2, tau: float = CLIP_TAU,
                 noise: float = ALIGN_NOISE) -> None:  # fmt: skip
        super().__init__(width, depth, text_layers, tau)
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"caption noise must be in [0, 1], got {noise}")
        self.noise = noise

    def prepare_pool(self, pool: data.ImageSet, seed: int) -> data.ImageSet:
        g = torch.Generator().manual_seed(10_000 + seed)
        attrs, _ = data.corrupt_attributes(pool.attrs, self.noise, g)
        return data.ImageSet(images=pool.images, attrs=pool.attrs, captions=data.captions(attrs))


@register("random-init-joint", "joint")
class RandomInitJoint(Clip):
    """The floor: the image-text encoders as initialised, never trained."""

    name = "random-init"
    trains = False
