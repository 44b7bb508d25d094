"""Latency and memory on a CUDA device (skipped without one, see tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from bench.metrics.latency import measure_latency
from bench.metrics.memory import MB, measure_memory

pytestmark = pytest.mark.cuda

BIG = 16 * 2**20  # float32 elements: 64 MB


class Allocates64MB(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(BIG, device=x.device)
        return self.lin(x) + big[:1]


class Spins(torch.nn.Module):
    """Keeps the GPU busy for at least ``cycles`` clock cycles per call, with no CPU cost."""

    def __init__(self, cycles: int) -> None:
        super().__init__()
        self.cycles = cycles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.cuda._sleep(self.cycles)
        return x + 1


def test_latency_on_cuda_times_the_gpu():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 256))
    m = measure_latency(model, torch.randn(8, 256), device="cuda", warmup_s=0.05, min_run_time_s=0.1)
    assert m.device.startswith("cuda") and next(model.parameters()).is_cuda
    assert m.n >= 1 and all(s > 0 for s in m.samples_ms)
    assert m.number_per_sample > 1  # sub-millisecond calls are batched so events and syncs cost little


def test_cuda_events_see_asynchronous_work():
    # ~50 M cycles is over 10 ms on any current GPU; a host timer without synchronising would see ~0.
    m = measure_latency(Spins(50_000_000), torch.zeros(1, device="cuda"), warmup_s=0.0, min_run_time_s=0.05)
    assert m.median_ms > 5.0


def test_train_step_on_cuda_updates_parameters():
    model = torch.nn.Linear(32, 32).cuda()
    before = model.weight.detach().clone()
    m = measure_latency(model, torch.randn(4, 32, device="cuda"), mode="train", warmup_s=0.02, min_run_time_s=0.05)
    assert m.mode == "train" and not torch.equal(before, model.weight)


def test_memory_on_cuda_uses_the_allocator():
    model, x = Allocates64MB().cuda(), torch.randn(4, 8, device="cuda")
    m = measure_memory(model, x)
    assert m.method == "cuda_allocator"
    assert m.weights_mb == (8 * 8 + 8) * 4 / MB
    assert m.activations_mb >= 64.0  # the caching allocator counts the 64 MB tensor exactly
    assert m.peak_mb >= m.weights_mb + m.inputs_mb + 64.0
    assert m.reserved_mb is not None and m.reserved_mb >= m.peak_mb
    assert m.peak_rss_mb is None


def test_train_memory_on_cuda_counts_gradients_and_optimizer_state():
    model = torch.nn.Linear(2048, 2048).cuda()
    m = measure_memory(model, torch.randn(2, 2048, device="cuda"), mode="train")
    assert m.activations_mb >= 3 * m.weights_mb  # gradient + two AdamW moments
