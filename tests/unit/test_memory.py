"""measure_memory on CPU against known sizes, and the memory and params metrics."""

from __future__ import annotations

import time

import pytest
import torch

from bench.metrics import MetricContext
from bench.metrics import memory as mem
from bench.metrics.memory import MB, measure_memory, memory_metric
from bench.metrics.params import params_metric
from bench.registry import METRICS
from bench.spec import CellKey, CellSpec, Profile, Variant

BIG = 16 * 2**20  # float32 elements: 64 MB


class Allocates64MB(torch.nn.Module):
    """A tiny model whose forward holds a 64 MB tensor for a moment (``hold_s``)."""

    def __init__(self, hold_s: float = 0.0) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.bn = torch.nn.BatchNorm1d(8)  # buffers: running stats and an int64 counter
        self.hold_s = hold_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(BIG)
        if self.hold_s:
            time.sleep(self.hold_s)  # long enough for a 1 ms sampler to see it
        return self.bn(self.lin(x)) + big[:1]


def exact_weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def expected_method() -> str:
    return "rss_hwm" if mem.reset_peak_rss() else "rss_sampled"


def test_large_forward_allocation_shows_in_activations():
    model, x = Allocates64MB(hold_s=0.02), torch.randn(4, 8)
    m = measure_memory(model, x)
    assert m.method == expected_method()
    assert 50 <= m.activations_mb < 200
    assert m.weights_mb == exact_weight_bytes(model) / MB
    assert m.inputs_mb == x.numel() * 4 / MB
    assert m.peak_mb == pytest.approx(m.weights_mb + m.inputs_mb + m.activations_mb)
    assert m.reserved_mb is None and m.peak_rss_mb is not None and m.peak_rss_mb > m.activations_mb
    assert (m.device, m.mode) == ("cpu", "infer")


def test_sampling_fallback_when_the_peak_cannot_be_reset(monkeypatch):
    monkeypatch.setattr(mem, "reset_peak_rss", lambda: False)
    m = measure_memory(Allocates64MB(hold_s=0.05), torch.randn(4, 8))
    assert m.method == "rss_sampled"
    assert 50 <= m.activations_mb < 200


def test_train_step_counts_gradients_and_optimizer_state():
    model = torch.nn.Linear(2048, 2048)  # 16 MB of weights
    m = measure_memory(model, torch.randn(2, 2048), mode="train")
    assert m.weights_mb == exact_weight_bytes(model) / MB
    # AdamW keeps two moments per parameter, and backward makes a gradient: 3x the weights.
    assert m.activations_mb >= 0.9 * 3 * m.weights_mb
    assert model.training


def test_weights_count_shared_tensors_once():
    lin = torch.nn.Linear(64, 64)
    model = torch.nn.Sequential(lin, lin)
    m = measure_memory(model, torch.randn(1, 64))
    assert m.weights_mb == (64 * 64 + 64) * 4 / MB


def test_bad_runs():
    with pytest.raises(ValueError, match="runs"):
        measure_memory(torch.nn.Linear(2, 2), torch.randn(1, 2), runs=0)


_RESET_PROBE = """
import torch
from bench.metrics import memory as mem
if not mem.reset_peak_rss():
    print("unsupported"); raise SystemExit
x = torch.ones(16 * 2**20)
x.fill_(2.0)
del x
gap_before = mem.read_status_bytes("VmHWM") - mem.read_status_bytes("VmRSS")
mem.reset_peak_rss()
gap_after = mem.read_status_bytes("VmHWM") - mem.read_status_bytes("VmRSS")
print(gap_before, gap_after)
"""


def test_reset_peak_rss_resets_the_high_water_mark():
    # In a fresh process: glibc raises its mmap threshold after a large free, so in a long-lived
    # test process a freed 64 MB tensor may stay resident and the high-water gap never opens.
    import os
    import subprocess
    import sys
    from pathlib import Path

    import bench

    env = {**os.environ, "PYTHONPATH": str(Path(bench.__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", _RESET_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "unsupported":
        pytest.skip("this kernel does not let a process reset its VmHWM")
    before, after = (int(x) for x in out.stdout.split())
    assert before >= 50 * 2**20  # the freed tensor's pages were the peak
    assert after < 8 * 2**20  # ... and the reset brought the mark down to the current RSS


def cell() -> CellSpec:
    key = CellKey(suite="toy", tier="t", family="mlp", model="m", device="cpu", dtype="fp32", batch_size=4,
                  input_shape=(8,))  # fmt: skip
    variant = Variant(family="mlp", model="m", builder="x:y", model_args=(), target_params=1, achieved_params=1,
                      tolerance=1.0)  # fmt: skip
    return CellSpec(key=key, variant=variant, input_kind="image", input_args=(), profile=Profile(name="p"))


def context(model: torch.nn.Module, phases: list[str], baseline: dict[str, float]) -> MetricContext:
    return MetricContext(cell=cell(), model=model, inputs=(torch.randn(4, 8),), device=torch.device("cpu"),
                         dtype=torch.float32, report_phase=phases.append, baseline=baseline)  # fmt: skip


def test_memory_metric():
    assert METRICS.get("memory") is memory_metric
    phases: list[str] = []
    out = memory_metric(context(Allocates64MB(hold_s=0.02), phases, {"rss_bytes": mem.rss_bytes()}))
    assert phases == ["memory"]
    assert out["memory_method"] == expected_method()
    assert out["reserved_mb"] is None
    assert out["peak_memory_mb"] >= 50 and out["activations_mb"] >= 50
    assert out["peak_memory_mb"] == pytest.approx(out["weights_mb"] + 4 * 8 * 4 / MB + out["activations_mb"])
    assert out["peak_rss_above_baseline_mb"] >= 50
    assert memory_metric(context(Allocates64MB(), [], {}))["peak_rss_above_baseline_mb"] is None


def test_params_metric():
    assert METRICS.get("params") is params_metric
    shared = torch.nn.Linear(10, 10)  # 110 parameters, counted once
    frozen = torch.nn.Linear(10, 2).requires_grad_(False)  # 22
    model = torch.nn.Sequential(shared, shared, frozen, torch.nn.BatchNorm1d(2))  # bn: 4 params, 5 buffer elements
    phases: list[str] = []
    out = params_metric(context(model, phases, {}))
    assert out == {"params": 110 + 22 + 4, "trainable_params": 110 + 4, "buffers": 2 + 2 + 1}
    assert phases == ["params"]
