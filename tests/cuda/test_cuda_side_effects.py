"""On CUDA too, the public API leaves the caller's process as it was: flags, RNG (CPU and GPU), device, stream.

The CPU-side checks live in tests/unit/test_side_effects.py; this adds what only a GPU has: TF32 and
cuDNN flags, the CUDA RNG (dropout in a timed training step draws from it), the current device and
stream, and the caller's own tensors in the caching allocator.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import bench

pytestmark = pytest.mark.cuda


def _state() -> dict[str, Any]:
    return {
        "threads": torch.get_num_threads(),
        "grad": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "sdp_flash": torch.backends.cuda.flash_sdp_enabled(),
        "sdp_mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "device": torch.cuda.current_device(),
        "stream": torch.cuda.current_stream().cuda_stream,
        "rng": torch.random.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("rng", "cuda_rng"):
        assert torch.equal(before.pop(key), after.pop(key)), f"{key} moved"
    assert after == before


class Dropper(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.drop = torch.nn.Linear(64, 64), torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.lin(x))


QUICK = dict(warmup_s=0.0, min_run_time_s=0.02, max_samples=5)
CALLS = {
    "latency infer": lambda m, x: bench.measure_latency(m, x, **QUICK),
    "latency train": lambda m, x: bench.measure_latency(m, x, mode="train", **QUICK),
    "latency steady": lambda m, x: bench.measure_latency(m, x, allocator="steady", **QUICK),
    "memory infer": lambda m, x: bench.measure_memory(m, x),
    "memory train": lambda m, x: bench.measure_memory(m, x, mode="train"),
    "flops real": lambda m, x: bench.count_flops(m.eval(), x, device=None),
    "flops meta": lambda m, x: bench.count_flops(m.eval(), x),
}


@pytest.fixture
def unusual_flags():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = not saved[0]
    torch.backends.cuda.matmul.allow_tf32 = not saved[1]
    torch.backends.cudnn.allow_tf32 = not saved[2]
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("call", CALLS)
def test_cuda_calls_leave_flags_rng_device_and_stream_as_they_were(call: str, unusual_flags: None) -> None:
    torch.manual_seed(1)
    model, x = Dropper().cuda().train(), torch.randn(8, 64, device="cuda")
    mine = torch.randn(1 << 20, device="cuda")  # the caller's own tensor: must survive any cache emptying
    checksum = mine.sum().item()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        before = _state()
        CALLS[call](model, x)
        after = _state()
    _assert_same(before, after)
    assert mine.sum().item() == checksum


def test_latency_moves_a_cpu_model_to_cuda_and_times_there() -> None:
    model = torch.nn.Linear(32, 32)
    m = bench.measure_latency(model, torch.randn(4, 32), device="cuda", **QUICK)
    assert m.device.startswith("cuda") and next(model.parameters()).is_cuda
