"""Efficiency on a CUDA device (issue 16; skipped without one, see tests/conftest.py): the measured GEMM and
bandwidth peak (CUDA events), a one-matmul model's MFU, bytes moved counted the same on CUDA, NVML energy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import peak
from bench.flops import count_flops
from bench.metrics import energy
from bench.metrics.efficiency import efficiency

pytestmark = pytest.mark.cuda


def test_cuda_peak_is_positive_with_raw_samples_and_leaves_the_allocator_clean() -> None:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    rng = torch.cuda.get_rng_state()
    p = peak.measure_peak("cuda", ("fp32", "bf16"), budget_s=3.0)
    assert p["device"].startswith("cuda:") and p["threads"] is None and p["gpu_name"]
    for dtype in ("fp32", "bf16"):
        g = p["gemm"][dtype]
        assert g["gflops"] > 0 and all(min(s["samples"]) > 0 for s in g["sizes"])
    assert p["gemm"]["bf16"]["gflops"] > p["gemm"]["fp32"]["gflops"]  # tensor cores (fp32 runs without TF32)
    assert p["bandwidth"]["gbs"] > 100  # any CUDA GPU of this decade: hundreds of GB/s at least
    assert torch.cuda.memory_allocated() == before and torch.equal(torch.cuda.get_rng_state(), rng)
    print(f"CUDA peak: {p['gpu_name']}: fp32 {p['gemm']['fp32']['gflops']:.0f}, bf16 {p['gemm']['bf16']['gflops']:.0f}"
          f" GFLOP/s, bandwidth {p['bandwidth']['gbs']:.0f} GB/s ({p['seconds']} s)")  # fmt: skip


def test_a_run_peak_on_cuda_comes_from_a_spawned_process() -> None:
    out = peak.measure_run_peak(["cpu", "cuda"], ["bf16"], threads=None, budget_s=2.0)
    assert out["cuda"]["gemm"]["bf16"]["gflops"] > 0 and out["cpu"]["gemm"]["bf16"]["gflops"] > 0


def test_one_big_bf16_matmul_reaches_a_high_mfu_on_cuda() -> None:
    model = nn.Linear(8192, 8192, bias=False).to("cuda", torch.bfloat16).eval()
    x = torch.randn(4096, 8192, device="cuda", dtype=torch.bfloat16)
    count = count_flops(model, x)
    assert count.bytes_moved == 2 * (4096 * 8192 * 2 + 8192 * 8192)  # bytes are counted the same on CUDA
    p = peak.measure_peak("cuda", ("bf16",), budget_s=2.0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(20):
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    ms = sorted(times)[len(times) // 2]
    values = {"flops": count.flops, "bytes_moved": count.bytes_moved, "latency_p50_ms": ms, "device": "cuda",
              "dtype": "bf16"}  # fmt: skip
    out = efficiency(values, {"env": {"peak": {"cuda": p}}})
    print(f"one-matmul bf16 MFU on CUDA: {out['mfu']:.2f}, bound {out['bound']}")
    assert out["mfu"] > 0.5 and out["bound"] == "compute"


def test_nvml_energy_is_read_or_absent_with_the_reason() -> None:
    read, source = energy.nvml_meter(torch.device("cuda", 0))
    if read is None:
        assert source.startswith("unavailable: ")
        pytest.skip(source)
    a = read()
    x = torch.randn(8192, 8192, device="cuda")
    for _ in range(200):
        x = x @ x.T / 8192
    torch.cuda.synchronize()
    assert source == "nvml" and read() > a
