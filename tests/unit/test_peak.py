"""The machine's measured peak (``bench.peak``): positive numbers with raw samples, state restored, stored once per
run in ``env.peak``, validated on load and read back defensively."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _published import V1_RUNS

from bench import peak, runner
from bench.errors import StoreError
from bench.peak import Peak, measure_peak, measured, peak_of, summary
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_run
from bench.store.schema import validate

PUBLISHED = sorted((Path(__file__).resolve().parents[2] / "results").glob("*/*.json"))


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small GEMMs and arrays: the test is about the bookkeeping, not about this machine's speed."""
    monkeypatch.setitem(peak.GEMM_SIZES, "cpu", (64, 128))
    monkeypatch.setitem(peak.BANDWIDTH_BYTES, "cpu", 4 << 20)


def test_peak_is_positive_with_raw_samples_and_restores_threads_and_rng(small: None) -> None:
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    p = measure_peak("cpu", ("fp32", "bf16"), threads=1, budget_s=0.4)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert p["threads"] == 1 and p["device"] == "cpu" and p["float32_matmul_precision"]
    for dtype in ("fp32", "bf16"):
        g = p["gemm"][dtype]
        assert g["gflops"] > 0 and g["size"] in (64, 128)
        assert all(s["samples"] and min(s["samples"]) > 0 for s in g["sizes"])
        assert g["gflops"] == max(s["gflops"] for s in g["sizes"])  # the best size's median
        # CPU times the BLAS GEMM and the same GEMM through oneDNN (a 1x1 convolution); the peak is the faster
        assert set(g["kernels"]) == {"mm", "conv1x1"} and g["kernel"] in g["kernels"]
        assert g["gflops"] == max(k["gflops"] for k in g["kernels"].values()) == g["kernels"][g["kernel"]]["gflops"]
    bw = p["bandwidth"]
    assert bw["gbs"] == max(bw["copy"]["gbs"], bw["triad"]["gbs"]) > 0
    assert bw["copy"]["bytes"] == 2 * (4 << 20) and bw["triad"]["bytes"] == 3 * (4 << 20)  # read + write
    assert all(len(bw[k]["samples"]) >= 1 and min(bw[k]["samples"]) > 0 for k in ("copy", "triad"))
    with pytest.raises(ValueError, match="budget_s"):
        measure_peak("cpu", budget_s=0)


def test_a_stored_peak_is_read_back_and_anything_else_reads_as_not_measured() -> None:
    env = {"peak": {"cpu": {"threads": 2, "gemm": {"fp32": {"gflops": 200.0}}, "bandwidth": {"gbs": 40.0}}}}
    p = peak_of(env, "cpu", "fp32")
    assert p == Peak("cpu", "fp32", 200.0, 40.0, 2) and p.ridge == 5.0
    assert peak_of(env, "cuda:0", "fp32") is None and peak_of(env, "cpu", "bf16") == Peak("cpu", "bf16", None, 40.0, 2)
    assert summary(env) == "peak cpu (2 threads): fp32 GEMM 200 GFLOP/s, bandwidth 40 GB/s"
    for bad in ("fast", -1.0, math.nan, math.inf, True, None, [1]):
        hostile = {"peak": {"cpu": {"gemm": {"fp32": {"gflops": bad}}, "bandwidth": {"gbs": bad}}}}
        assert peak_of(hostile, "cpu", "fp32") is None and measured(hostile) == []
    for env in ({}, None, {"peak": "x"}, {"peak": {"cpu": "x"}}):
        assert peak_of(env, "cpu", "fp32") is None
    assert summary({}) == "peak not measured in this run"
    assert summary({"peak": {"cuda": {"error": "timed out"}}}) == "peak cuda not measured (timed out)"


@pytest.mark.parametrize("path", V1_RUNS, ids=lambda p: p.stem)
def test_runs_stored_before_the_peak_still_load(path: Path) -> None:
    assert "peak" not in load_run(path)["env"] and measured(load_run(path)["env"]) == []


@pytest.mark.parametrize(("peak_", "field"), [
    ({"cpu": "fast"}, "env.peak.cpu: expected an object"),
    ({"cpu": {"gemm": {"fp32": {"gflops": "fast"}}}}, "env.peak.cpu.gemm.fp32.gflops"),
    ({"cpu": {"bandwidth": {"gbs": 1.0, "copy": {"samples": [1.0, -2.0]}}}}, "env.peak.cpu.bandwidth.copy.samples[1]"),
    ({"cpu": {"threads": 0}}, "env.peak.cpu.threads"),
])  # fmt: skip
def test_a_malformed_peak_is_one_line_naming_the_field(peak_: dict, field: str) -> None:
    doc = json.loads(PUBLISHED[0].read_text())
    doc["env"]["peak"] = peak_
    with pytest.raises(StoreError, match="malformed results file") as e:
        validate(doc, "run.json")
    assert field in str(e.value) and "\n" not in str(e.value)


def _suite() -> Suite:
    lin = VariantSpec(
        family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4})
    )
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(lin,))
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), default_profile="quick",
                 profiles=(Profile(name="quick", metrics=("params",), dtypes=("fp32", "bf16")),))  # fmt: skip


def test_the_runner_measures_the_peak_once_per_new_run_into_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake(devices, dtypes, threads, budget_s):
        calls.append((list(devices), list(dtypes), threads, budget_s))
        return {"cpu": {"threads": 3, "gemm": {"fp32": {"gflops": 10.0}}, "bandwidth": {"gbs": 2.0}}}

    monkeypatch.setattr(peak, "measure_run_peak", fake)
    measure = lambda cell, on_event: {"key": cell.key.to_dict(), "status": "ok", "metrics": {"params": 36}}  # noqa: E731
    settings = runner.RunSettings(devices=("cpu",), threads=3, peak_budget_s=2.5)
    first = runner.run(_suite(), settings, tmp_path, measure=measure)
    assert calls == [(["cpu"], ["fp32", "bf16"], 3, 2.5)]
    assert peak_of(load_run(first.path)["env"], "cpu", "fp32") == Peak("cpu", "fp32", 10.0, 2.0, 3)
    runner.run(_suite(), settings, tmp_path, resume=first.path, measure=measure)  # a resumed run keeps its peak
    runner.run(_suite(), runner.RunSettings(devices=("cpu",)), tmp_path / "off", measure=measure)  # 0: not measured
    assert len(calls) == 1
    # not given (the CLI's default): scaled to the profile, 2.5 x its min run time per cell (1 s here)
    runner.run(_suite(), runner.RunSettings(devices=("cpu",), peak_budget_s=None), tmp_path / "auto", measure=measure)
    assert calls[-1][3] == 2.5


def test_the_peak_budget_scales_with_the_profile() -> None:
    """The quick profile (0.5 s per cell) spends 1.25 s on the peak, the default (2 s) 5 s; bounded 1-5 s."""
    from bench.registry import get_suite

    profiles = {p.name: p for p in get_suite("cv-backbones").profiles}
    assert runner.auto_peak_budget(profiles["quick"]) == 1.25
    assert runner.auto_peak_budget(profiles["default"]) == 5.0
    assert runner.auto_peak_budget(profiles["full"]) == 5.0
    assert runner.auto_peak_budget(Profile(name="x", min_run_time_s=0.1)) == 1.0


@pytest.mark.slow
def test_a_run_peak_is_measured_in_a_spawned_process() -> None:
    out = peak.measure_run_peak(["cpu"], ["fp32"], threads=1, budget_s=0.5)
    assert out["cpu"]["gemm"]["fp32"]["gflops"] > 0 and out["cpu"]["bandwidth"]["gbs"] > 0
    assert out["cpu"]["threads"] == 1 and torch.cuda.is_initialized() is False


def test_run_refuses_a_bad_peak_budget(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    for bad in ("-1", "nan", "61", "soon"):
        with pytest.raises(SystemExit) as e:
            main(["run", "cv-backbones", "--peak-budget", bad])
        assert e.value.code == 2 and "--peak-budget" in capsys.readouterr().err


def test_the_conv1x1_kernel_counts_the_flops_of_its_gemm() -> None:
    """(side^2 x n) @ (n x n) as a 1x1 convolution: 2 * side^2 * n^2 FLOPs, the same output as the matmul."""
    call, gflop = peak._gemm_call(torch.device("cpu"), torch.float32, "conv1x1", 16)
    assert gflop == 2 * peak.CONV_SIDE**2 * 16 * 16 / 1e9
    out = call()
    assert out.shape == (1, 16, peak.CONV_SIDE, peak.CONV_SIDE)
    _, mm_gflop = peak._gemm_call(torch.device("cpu"), torch.float32, "mm", 16)
    assert mm_gflop == 2 * 16**3 / 1e9
