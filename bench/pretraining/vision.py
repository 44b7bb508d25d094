"""Vision objectives on the image world: ``mae``, ``rotnet``, ``simclr``, ``moco``, ``supervised``, ``random-init``.

Every objective's backbone is the same timm ``VisionTransformer`` (32x32 inputs, 4x4 patches, no class
token, mean-pooled; ``depth`` blocks of 4 heads, MLP 4x), built with ``pretrained=False``; the width is
the suite's knob. Heads are outside ``.backbone``.

* ``mae``: exactly ``round(75% x 64)`` = 48 of the 64 patches of each image are hidden (a per-image random
  choice); the encoder sees the 16 visible ones, a one-block decoder of half the width gets mask tokens at
  the hidden positions and regresses their pixels (mean squared error on the hidden patches only).
* ``rotnet``: each image is rotated by a random multiple of 90 degrees; a linear head predicts which (4-way).
* ``simclr``: two augmented views per image (random crop after 4-pixel padding, horizontal flip, per-channel
  brightness jitter, which also changes colours); a 2-layer projection; NT-Xent at temperature ``tau``.
* ``moco``: MoCo v2: the query encoder is trained, the key encoder (a copy) follows it by
  ``k <- m k + (1 - m) q`` after each step; keys go into a FIFO queue of ``queue`` negatives; InfoNCE at ``tau``.
* ``supervised``: cross-entropy on colour x size, a labelled task disjoint from the downstream shape task.
* ``random-init``: the backbone as initialised, never trained (the floor).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from bench.pretraining import data
from bench.pretraining.objective import Objective, register

PATCH = 4
HEADS = 4
MAE_RATIO = 0.75
SIMCLR_TAU = 0.2
MOCO_TAU, MOCO_MOMENTUM, MOCO_QUEUE, PROJ = 0.2, 0.99, 1024, 64


def vit(width: int, depth: int = 4) -> nn.Module:
    """The group's backbone: timm's VisionTransformer, 32x32, patch 4, mean-pooled, ``num_classes=0``."""
    return VisionTransformer(img_size=data.IMAGE_SIZE, patch_size=PATCH, embed_dim=width, depth=depth, num_heads=HEADS,
                             num_classes=0, class_token=False, global_pool="avg")  # fmt: skip


class _Image(Objective):
    group = "vision"

    def __init__(self, width: int, depth: int = 4) -> None:
        super().__init__()
        self.width = width
        self.backbone = vit(width, depth)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def batch(self, pool: data.ImageSet, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (pool.floats(idx),)


def patchify(images: torch.Tensor, p: int = PATCH) -> torch.Tensor:
    """``(n, 3, H, W)`` -> ``(n, H*W/p^2, 3*p*p)`` in the patch order of timm's patch embedding."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def mae_mask(n: int, patches: int, ratio: float = MAE_RATIO, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, patches)`` booleans, True = hidden: exactly ``round(ratio * patches)`` per row, chosen at random."""
    hidden = round(ratio * patches)
    rank = torch.rand(n, patches, device=device).argsort(1).argsort(1)
    return rank < hidden


@register("mae", "vision")
class MaskedAutoencoder(_Image):
    name = "mae"

    def __init__(self, width: int, depth: int = 4) -> None:
        super().__init__(width, depth)
        dec = max(HEADS * 4, width // 2 // HEADS * HEADS)  # half the width, divisible by the heads
        patches = (data.IMAGE_SIZE // PATCH) ** 2
        self.to_decoder = nn.Linear(width, dec)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.decoder_pos = nn.Parameter(torch.randn(1, patches, dec) * 0.02)
        self.decoder = Block(dec, HEADS, mlp_ratio=4.0, qkv_bias=True)
        self.decoder_norm = nn.LayerNorm(dec)
        self.to_pixels = nn.Linear(dec, PATCH * PATCH * 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        v = self.backbone
        x = v.patch_embed(images) + v.pos_embed
        n, patches, width = x.shape
        hidden = mae_mask(n, patches, device=images.device)
        visible = x[~hidden].reshape(n, -1, width)
        z = self.to_decoder(v.fc_norm(v.norm(v.blocks(visible))))
        full = self.mask_token.expand(n, patches, -1).clone()
        full[~hidden] = z.reshape(-1, z.shape[-1])
        pred = self.to_pixels(self.decoder_norm(self.decoder(full + self.decoder_pos)))
        return F.mse_loss(pred[hidden], patchify(images)[hidden])


def rotate(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each image rotated by ``k[i]`` x 90 degrees (counter-clockwise)."""
    return torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(images, k, strict=True)])


@register("rotnet", "vision")
class RotNet(_Image):
    name = "rotnet"

    def __init__(self, width: int, depth: int = 4) -> None:
        super().__init__(width, depth)
        self.head = nn.Linear(width, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        k = torch.randint(0, 4, (images.shape[0],), device=images.device)
        return F.cross_entropy(self.head(self.backbone(rotate(images, k))), k)


def augment(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """One random view per image: crop after reflect-padding, horizontal flip, per-channel brightness."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    off = torch.randint(0, 2 * pad + 1, (n, 2)).tolist()
    crops = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(off)])
    flip = torch.rand(n, device=images.device) < 0.5
    crops = torch.where(flip.view(n, 1, 1, 1), crops.flip(-1), crops)
    return (crops * (0.6 + 0.8 * torch.rand(n, 3, 1, 1, device=images.device))).clamp(0.0, 1.0)


def projection(width: int, out: int = PROJ) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each view's positive is its pair among the other ``2n - 1`` (cosine / ``tau``)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.t()) / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


@register("simclr", "vision")
class SimCLR(_Image):
    name = "simclr"

    def __init__(self, width: int, depth: int = 4, tau: float = SIMCLR_TAU) -> None:
        super().__init__(width, depth)
        self.tau = tau
        self.project = projection(width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self.project(self.backbone(torch.cat([augment(images), augment(images)])))
        return nt_xent(*views.chunk(2), self.tau)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo's InfoNCE: each query's positive is its key; the queue's keys are the negatives."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.int64, device=q.device))


@register("moco", "vision")
class MoCo(_Image):
    name = "moco"

    def __init__(self, width: int, depth: int = 4, tau: float = MOCO_TAU, momentum: float = MOCO_MOMENTUM,
                 queue: int = MOCO_QUEUE) -> None:  # fmt: skip
        super().__init__(width, depth)
        self.tau, self.momentum = tau, momentum
        self.project = projection(width)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_project = copy.deepcopy(self.project).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue, PROJ), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        q = self.project(self.backbone(augment(images)))
        with torch.no_grad():
            k = self.key_project(self.key_backbone(augment(images)))
        loss = info_nce(q, k, self.queue.clone(), self.tau)
        self.enqueue(F.normalize(k, dim=1))
        return loss

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` at the queue pointer (wrapping around) and advance it: the oldest keys leave first."""
        size, n = self.queue.shape[0], keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n) + ptr) % size
        self.queue[idx] = keys
        self.queue_ptr.fill_((ptr + n) % size)

    @torch.no_grad()
    def after_step(self) -> None:
        """The momentum update of the key encoder: ``k <- m k + (1 - m) q``."""
        pairs = ((self.backbone, self.key_backbone), (self.project, self.key_project))
        for online, target in pairs:
            for p, t in zip(online.parameters(), target.parameters(), strict=True):
                t.mul_(self.momentum).add_(p.detach(), alpha=1.0 - self.momentum)


@register("supervised", "vision")
class Supervised(_Image):
    name = "supervised"

    def __init__(self, width: int, depth: int = 4, classes: int = len(data.COLOURS) * len(data.SIZES)) -> None:
        super().__init__(width, depth)
        self.head = nn.Linear(width, classes)

    def batch(self, pool: data.ImageSet, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return pool.floats(idx), pool.colour_size_labels[idx]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.backbone(images)), labels)


@register("random-init", "vision")
class RandomInitImage(_Image):
    """The floor: the backbone as initialised, never trained."""

    name = "random-init"
    trains = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).pow(2).mean()
