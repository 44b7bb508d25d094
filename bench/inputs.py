"""Input makers: synthetic example inputs for a cell, by the suite's ``input_kind``.

Each maker takes ``(cell, batch_size, device, dtype)`` and returns a tuple of positional inputs.
Suites with other kinds of input register their own with ``@register_inputs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from bench.registry import register_inputs

if TYPE_CHECKING:
    from bench.spec import CellSpec


def torch_dtype(name: str) -> torch.dtype:
    """``"fp32"`` / ``"bf16"`` / ``"fp16"`` -> torch dtype."""
    from bench.spec import DTYPES

    return getattr(torch, DTYPES[name])


@register_inputs("image")
def image_inputs(
    cell: CellSpec, batch_size: int, device: str | torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor]:
    """A batch of random images shaped ``(B, *input_shape)``; seeded so every run sees the same data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *cell.key.input_shape), generator=g)
    return (x.to(device=device, dtype=dtype),)
