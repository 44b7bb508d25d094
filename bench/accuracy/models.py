"""Models the accuracy tiers need that the suites do not already build, and the feature-input adapter.

* :func:`features_input` lets a token model (``nn.Embedding`` first) read float features ``(B, T, F)``,
  so the sequence families of ``bench.models.seq`` train on MNIST-1D and the adding problem unchanged.
* :func:`cnn1d`: the MNIST-1D paper's small 1-D CNN (Greydanus & Kobak 2024, ``ConvBase``), the reference
  row of the MNIST-1D table, with the seq suite's interface (token ids in, logits out, ``.backbone``).
* :func:`googlenet_micro`: torchvision's GoogLeNet with every width scaled, for a ~1M-parameter Inception
  (timm's Inception v3 needs 75 px or more; torchvision's GoogLeNet only scales its reduction widths).
"""

from __future__ import annotations

import torch
from torch import nn


def features_input(model: nn.Module, num_features: int) -> nn.Module:
    """Swap ``model``'s token embedding for ``nn.Linear(num_features, width)``, in place; returns ``model``.

    The token embedding is the first ``nn.Embedding`` registered in the model (the ``bench.models.seq``
    layout: ``embed`` or ``embed.tokens``; a learned positional table comes after it and is kept). A linear
    map of the features is what an embedding lookup is for one-hot inputs, so the backbone and head are
    exactly the ones the suite times. Build the model under the training seed first: the new layer draws
    its initial weights from the same generator.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.Linear(num_features, module.embedding_dim))
            return model
    raise TypeError(f"{type(model).__name__} has no nn.Embedding to replace: it cannot read float features; "
                    "give the task as tokens or build a model that takes (B, T, F) floats")  # fmt: skip


class CNN1d(nn.Module):
    """Token embedding -> three strided ``Conv1d`` + ReLU -> pool to ``pool`` positions -> flatten -> linear.

    With ``width=25`` and a 40-step input this is the MNIST-1D paper's ``ConvBase`` (kernels 5/3/3, stride 2,
    40 -> 19 -> 10 -> 5 positions, 125 features into the classifier); the adaptive pool only matters for
    other lengths, so the model accepts any ``T``.
    """

    def __init__(self, width: int, vocab_size: int, num_classes: int, pool: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.backbone = nn.Sequential(
            nn.Conv1d(width, width, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(pool),
        )  # fmt: skip
        self.head = nn.Linear(width * pool, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids).transpose(1, 2)  # (B, width, T): channels first for Conv1d
        return self.head(self.backbone(x).flatten(1))


def cnn1d(width: int = 25, pool: int = 5, vocab_size: int = 256, num_classes: int = 10) -> nn.Module:
    """The MNIST-1D paper's 1-D CNN (``width=25``: ``ConvBase``) behind a token embedding."""
    return CNN1d(width, vocab_size, num_classes, pool)


cnn1d.input_kind = "tokens"  # type: ignore[attr-defined]  # read by the seq suite's input maker


def googlenet_micro(width: float = 0.375, num_classes: int = 10) -> nn.Module:
    """torchvision's GoogLeNet (no auxiliary heads) with every convolution's width scaled by ``width``.

    Each channel count becomes ``max(1, round(c * width))``. A block's input width is taken from what the
    previous layer actually outputs (the sum of its rounded branch widths), not from torchvision's
    hard-coded number, so any ``width`` builds; the classifier reads the last block's width likewise.
    Blocks are built in forward order by ``GoogLeNet.__init__``, which is what makes the tracking valid.
    """
    from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception, InceptionAux

    if width <= 0:
        raise ValueError(f"googlenet_micro: width must be positive, got {width}")
    last = {"out": 3}

    def s(c: int) -> int:
        return max(1, round(c * width))

    def conv(cin: int, cout: int, **kw: object) -> nn.Module:
        layer = BasicConv2d(last["out"], s(cout), **kw)
        last["out"] = s(cout)
        return layer

    def block(cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> nn.Module:
        layer = Inception(last["out"], s(c1), s(c3r), s(c3), s(c5r), s(c5), s(pool), conv_block=BasicConv2d)
        last["out"] = s(c1) + s(c3) + s(c5) + s(pool)
        return layer

    model = GoogLeNet(num_classes=num_classes, aux_logits=False, init_weights=False,
                      blocks=[conv, block, InceptionAux])  # fmt: skip
    model.fc = nn.Linear(last["out"], num_classes)
    return model


def resnet_widths(width: int) -> dict[str, object]:
    """Knob derive for a ResNet: stage widths (w, 2w, 4w, 8w) and a stem as wide as the first stage (64 canonical)."""
    return {"channels": (width, 2 * width, 4 * width, 8 * width), "stem_width": width}


def vit_micro_width(dim: int) -> dict[str, object]:
    """Knob derive for the micro ViT/DeiT: ``embed_dim`` and the head count whose head dim is nearest 32.

    The full-size tiers keep ViT's head dim of 64; at a ~0.5M budget (width ~80) that would leave a single
    head, so the micro tier uses 32, among ``dim``'s divisors (ties to fewer heads).
    """
    heads = min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(dim / h - 32), h))
    return {"embed_dim": dim, "num_heads": heads}
