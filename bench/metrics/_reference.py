"""The machine-speed reference network timed around every latency measurement (``bench.metrics.latency``).

Changing it changes ``bench.metrics.latency.SPEED_REF_VERSION`` (part of ``speed_ref_kind``): compare
only uses references of the same kind.
"""

from __future__ import annotations

import torch


class ReferenceNet(torch.nn.Module):
    """The machine-speed reference: a fixed small vision network built from ``torch.nn`` only.

    A patchifying conv stem (224 -> 14x14 tokens of width 256) and four pre-norm Transformer encoder
    layers: 3.8 M parameters, ~0.9 GMACs at 1x3x224x224. It mixes what the suites' models do (convs,
    GEMMs, attention, norms) at their scale, and it does not depend on timm or on this package's
    models, so a change to those never moves it. Fixed seed; fp32; eval mode.
    """

    def __init__(self, width: int = 256, depth: int = 4) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 4, stride=4), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, width, 3, 2, 1),
        )  # fmt: skip
        layer = dict(d_model=width, nhead=4, dim_feedforward=4 * width, batch_first=True, norm_first=True)
        self.blocks = nn.Sequential(*[nn.TransformerEncoderLayer(**layer) for _ in range(depth)])
        self.head = nn.Linear(width, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(tokens).mean(1))
