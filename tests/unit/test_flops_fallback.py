"""bench.count_flops on real tensors (fallback or ``device=None``) leaves the model and the process as they were.

A model that cannot be copied (it holds a ``threading.Lock``) fails on meta (the meta copy is a deepcopy)
and falls back to real tensors in eval and train mode alike; what a real forward changes -- buffers such
as batch-norm statistics, the RNG that dropout draws from -- is put back.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from bench.flops import count_flops


class Locked(nn.Module):
    """Holds a lock: deepcopy (and so the meta copy) fails with a TypeError."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            return self.drop(self.bn(self.fc(x)))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_uncopyable_model_falls_back_in_train_mode_too(train: bool) -> None:
    model = Locked().train(train)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 4)
    rng = torch.get_rng_state()
    count = count_flops(model, x)  # train mode: was a bare TypeError (cannot pickle lock)
    assert count.macs == 5 * 4 * 3 and count.method.startswith("fallback:real tensors")
    assert "cannot pickle" in count.method
    assert model.training == train and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's draws are undone too


def test_real_counting_leaves_buffers_and_rng_as_they_were() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.3)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 4)
    rng = torch.get_rng_state()
    assert count_flops(model, x, device=None).macs == 6 * 4 * 3
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
