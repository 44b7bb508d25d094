"""Hardware efficiency (issue 16): bytes moved from the counter, the derived efficiency columns (achieved GFLOP/s,
MFU, bandwidth use, roofline bound) and the energy metric's bookkeeping."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from torch import nn

from bench import catalogue, peak, runner
from bench.flops import count_flops
from bench.metrics import energy
from bench.metrics.efficiency import efficiency, roofline

F32 = 4


# --------------------------------------------------------------------------------------------- bytes moved


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bytes_moved_of_a_linear_layer_is_input_output_and_weight_bytes(dtype: torch.dtype) -> None:
    b, i, o = 8, 64, 32
    size = torch.empty((), dtype=dtype).element_size()
    c = count_flops(nn.Linear(i, o, bias=False).to(dtype), torch.randn(b, i, dtype=dtype))
    assert c.bytes_moved == size * (b * i + b * o + i * o)
    assert c.bytes_by_operator == {"aten::mm": c.bytes_moved}
    assert c.arith_intensity == 2 * b * i * o / c.bytes_moved
    with_bias = count_flops(nn.Linear(i, o).to(dtype), torch.randn(b, 5, i, dtype=dtype))  # views cost nothing
    assert with_bias.bytes_moved == size * (b * 5 * i + b * 5 * o + i * o + o)


def test_bytes_count_distinct_tensors_broadcasts_once_and_in_place_ops_read_and_write() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            a = x * x  # x read once
            b = a + y.expand(4, 16)  # the broadcast row is 16 values, not 64
            return torch.cat([b.relu_(), b], dim=0)  # in place: read and written; cat moves memory

    c = count_flops(M(), (torch.randn(4, 16), torch.randn(1, 16)))
    n = 64 * F32
    assert c.bytes_by_operator == {"aten::mul": 2 * n, "aten::add": 2 * n + 16 * F32, "aten::relu_": 2 * n,
                                   "aten::cat": n + 2 * n}  # fmt: skip
    assert c.macs == 0 and c.arith_intensity == 0


def test_an_elementwise_only_model_is_memory_bound() -> None:
    c = count_flops(nn.Sequential(nn.ReLU(), nn.Hardswish()), torch.randn(64, 1000))
    assert c.macs == 0 and c.bytes_moved == 4 * 64_000 * F32
    values = {"flops": c.flops, "bytes_moved": c.bytes_moved, "latency_p50_ms": 0.1, "device": "cpu", "dtype": "fp32"}
    out = efficiency(values, _run(gflops=100.0, gbs=20.0))
    assert out["bound"] == "memory" and out["achieved_gflops"] == 0 and out["attainable_gflops"] == 0
    assert out["bandwidth_util"] == pytest.approx(c.bytes_moved / 1e-4 / 1e9 / 20.0)


# --------------------------------------------------------------------------------------------- derived columns


def _run(gflops: float | None = 200.0, gbs: float | None = 40.0, dtype: str = "fp32") -> dict:
    entry: dict = {"threads": 2}
    if gflops is not None:
        entry["gemm"] = {dtype: {"gflops": gflops}}
    if gbs is not None:
        entry["bandwidth"] = {"gbs": gbs}
    return {"env": {"peak": {"cpu": entry}}}


def test_the_efficiency_formulas() -> None:
    v = {"flops": 2e9, "bytes_moved": 1e8, "latency_p50_ms": 20.0, "device": "cpu", "dtype": "fp32", "mode": "infer"}
    out = efficiency(v, _run())
    assert out == pytest.approx({"achieved_gflops": 100.0, "mfu": 0.5, "bandwidth_util": 5.0 / 40.0,
                                 "attainable_gflops": 200.0, "bound": "compute"})  # fmt: skip
    # intensity 20 FLOP/B under a ridge of 200 / 5 = 40 FLOP/B: memory-bound, roof 20 x 5 = 100 GFLOP/s
    assert efficiency(v, _run(gbs=5.0))["bound"] == "memory" and roofline(20.0, 200.0, 5.0)["attainable_gflops"] == 100
    assert efficiency(v, {"env": {}}) == {"achieved_gflops": 100.0}  # no peak: nothing invented
    assert efficiency(v, _run(dtype="bf16")) == {"achieved_gflops": 100.0, "bandwidth_util": 0.125}
    assert efficiency({**v, "bytes_moved": None}, _run()) == {"achieved_gflops": 100.0, "mfu": 0.5}
    train = efficiency({**v, "mode": "train"}, _run())  # forward + backward ~ 3x forward; bytes not counted
    assert train == pytest.approx({"achieved_gflops": 300.0, "mfu": 1.5})
    assert efficiency({**v, "latency_p50_ms": math.nan}, _run()) == {}


def test_derive_skips_cells_without_what_the_metric_needs() -> None:
    assert catalogue.derive({"flops": 2e9, "latency_p50_ms": None}, _run()) == {}
    got = catalogue.derive(
        MappingProxyType({"flops": 2e9, "latency_p50_ms": 20.0, "device": "cpu", "dtype": "fp32"}), _run()
    )
    assert got == {"achieved_gflops": 100.0, "mfu": 0.5}
    assert catalogue.timed("mfu") and catalogue.column("mfu").header == "MFU"


def _best_s(fn, n: int = 15) -> float:
    """The fastest of ``n`` calls: the peak is the best timed block too, so both see the machine at its least
    loaded (a median here against a best-of peak made MFU fall with other work on the machine: 0.89 quiet,
    0.46-0.49 beside a test run)."""
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


#: The bar is low on purpose: this is a timed test on a shared machine (load only lowers MFU; 0.497 was seen
#: at load 5 on 2 cores). It catches a unit or peak bug (an MFU of 0.01 or 100), not a 10% change.
MIN_MFU = 0.3


def test_one_big_matmul_runs_near_the_measured_gemm_peak() -> None:
    """MFU of a model that is one 64 x 2048 x 2048 GEMM at batch 64, on 1 CPU thread, against the GEMM peak
    measured the same way (the faster of torch.mm and oneDNN, bench.peak). The GEMM runs as
    ``nn.Linear`` (the BLAS behind torch.mm) and as a 1x1 convolution over a 1x1 image (oneDNN); both MFUs are
    printed, the better one is asserted (above ``MIN_MFU``). Latencies are best-of-15, as the peak is a best block; load only
    lowers MFU: the best of three tries counts."""
    linear = nn.Linear(2048, 2048, bias=False).eval()
    conv = nn.Conv2d(2048, 2048, 1, bias=False).eval()
    x = torch.randn(64, 2048)
    models = {"Linear": (linear, x), "1x1 conv": (conv, x[:, :, None, None])}
    counts = {name: count_flops(m, inp) for name, (m, inp) in models.items()}
    assert counts["Linear"].flops == counts["1x1 conv"].flops == 2 * 64 * 2048 * 2048
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mfus: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(3):
            p = peak.measure_peak("cpu", ("fp32",), threads=1, budget_s=1.0)
            for name, (model, inp) in models.items():
                with torch.inference_mode():
                    seconds = _best_s(lambda model=model, inp=inp: model(inp))
                values = {"flops": counts[name].flops, "bytes_moved": counts[name].bytes_moved,
                          "latency_p50_ms": seconds * 1e3, "device": "cpu", "dtype": "fp32"}  # fmt: skip
                mfus[name].append(efficiency(values, {"env": {"peak": {"cpu": p}}})["mfu"])
            if max(max(v) for v in mfus.values()) > MIN_MFU:
                break
    finally:
        torch.set_num_threads(threads)
    shown = "; ".join(f"{name} {', '.join(f'{m:.2f}' for m in v)}" for name, v in mfus.items())
    print(f"one-matmul MFU at batch 64, 1 thread: {shown} (peak kernel {p['gemm']['fp32']['kernel']})")
    assert max(max(v) for v in mfus.values()) > MIN_MFU


# --------------------------------------------------------------------------------------------- energy


def test_rapl_reads_package_domains_with_wraparound(tmp_path: Path) -> None:
    for name, idx in (("package-0", "0"), ("package-1", "1")):
        d = tmp_path / f"intel-rapl:{idx}"
        d.mkdir()
        (d / "name").write_text(name)
        (d / "max_energy_range_uj").write_text("1000000")
        (d / "energy_uj").write_text("999000")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a subzone (core): inside its package, never added again
    read, source = energy.rapl_meter(tmp_path)
    assert source == "rapl:package-0,package-1" and read() == 0.0
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("1000")  # wrapped: 1000 + 1 + 1000 uJ later
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("999500")
    assert read() == pytest.approx((2001 + 500) / 1e6)
    assert energy.rapl_meter(tmp_path / "none") == (None, f"unavailable: no RAPL domains under {tmp_path / 'none'}")


def _ctx(batch: int = 4):
    from bench.metrics import MetricContext

    cell = runner.expand(_suite(batch), runner.RunSettings(devices=("cpu",)))[0]
    model = nn.Linear(8, 4)
    return MetricContext(cell=cell, model=model, inputs=(torch.randn(batch, 8),), device=torch.device("cpu"),
                         dtype=torch.float32, results=MappingProxyType({"latency_p50_ms": 100.0}))  # fmt: skip


def _suite(batch: int):
    from bench.spec import Profile, Suite, Tier, VariantSpec, freeze

    lin = VariantSpec(
        family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4})
    )
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(lin,))
    prof = Profile(name="quick", metrics=("params", "latency", "energy"), batch_sizes=(batch,))
    return Suite(
        name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,), default_profile="quick"
    )


def test_energy_is_joules_per_sample_over_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = iter([10.0, 13.0])
    monkeypatch.setattr(energy, "rapl_meter", lambda: (lambda: next(reads), "rapl:package-0"))
    ctx = _ctx(batch=4)
    out = energy.energy_metric(ctx)
    calls = math.ceil(energy.WINDOW_S / 0.1)  # the window at the measured median: 10 steps of 4 samples
    assert out["energy_j_per_sample"] == pytest.approx(3.0 / (calls * 4))
    assert (
        out["avg_power_w"] == pytest.approx(3.0 / out["energy_window_s"]) and out["energy_source"] == "rapl:package-0"
    )


def test_energy_is_absent_not_zero_where_the_counter_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(energy, "rapl_meter", lambda: (None, "unavailable: RAPL energy_uj is readable by root only"))
    ctx = _ctx()
    out = energy.energy_metric(ctx)
    assert out["energy_j_per_sample"] is None and out["avg_power_w"] is None
    assert out["energy_source"].startswith("unavailable") and ctx.notes == [
        "energy: not measured: RAPL energy_uj is readable by root only"
    ]
