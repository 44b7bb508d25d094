"""measure_latency, the latency metric and the shared training step.

Timings are never asserted tightly (the machine may be shared); where a number is checked it is a
lower bound no scheduler can break (a call that sleeps 30 ms takes at least 30 ms).
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from bench.metrics import MetricContext
from bench.metrics import latency as lat
from bench.metrics._malloc import glibc
from bench.metrics._step import make_step, scalar_loss
from bench.metrics.latency import LatencyMeasurement, latency_metric, measure_latency
from bench.registry import METRICS
from bench.spec import CellKey, CellSpec, Profile, Variant


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


class Sleeper(torch.nn.Module):
    """Each call takes at least ``seconds``: a timing oracle that load can only lengthen."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.lin(x)


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
        return {"sum": self.a(x) + y, "pair": (x.mean(), y.long())}


QUICK = {"warmup_s": 0.02, "min_run_time_s": 0.05}


def test_returns_raw_samples_and_provenance():
    m = measure_latency(tiny(), torch.randn(2, 16), **QUICK)
    assert isinstance(m, LatencyMeasurement)
    assert m.n == len(m.samples_ms) >= 1
    assert all(s > 0 for s in m.samples_ms)
    assert m.number_per_sample >= 1
    assert m.warmup_iters >= lat.MIN_WARMUP_CALLS
    assert (m.device, m.mode, m.threads) == ("cpu", "infer", torch.get_num_threads())
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.mode = "train"  # type: ignore[misc]


def test_runs_at_least_min_run_time():
    t0 = time.perf_counter()
    # max_samples out of reach: on a loaded machine a slow warm-up picks 1 call per block, and 2,000 fast blocks
    # (the default cap) can end before 0.3 s -- the cap working, not the clock failing.
    measure_latency(tiny(), torch.randn(2, 16), warmup_s=0.0, min_run_time_s=0.3, max_samples=10**7)
    assert time.perf_counter() - t0 >= 0.3


def test_max_samples_caps_the_run():
    m = measure_latency(tiny(), torch.randn(2, 16), warmup_s=0.0, min_run_time_s=5.0, max_samples=5)
    assert m.n == 5


def test_slow_calls_are_timed_one_by_one():
    m = measure_latency(Sleeper(0.03), torch.randn(1, 4), warmup_s=0.0, min_run_time_s=0.05)
    assert m.number_per_sample == 1
    assert m.median_ms >= 30.0


class FakeClock:
    """A block timer whose calls take ``per_call`` seconds of a clock it also serves as ``lat._now``."""

    def __init__(self, per_call: float | list[float]) -> None:
        self.t = 0.0
        self.per_call = iter(per_call) if isinstance(per_call, list) else None
        self.fixed = per_call

    def now(self) -> float:
        return self.t

    def block(self, fn, number: int) -> float:
        dt = (next(self.per_call) if self.per_call else self.fixed) * number
        self.t += dt
        return dt


@pytest.mark.parametrize(
    ("per_call", "min_run", "max_samples", "n"),
    [
        (0.5, 1.0, 2000, lat.MIN_SAMPLES),  # time spent after 2 blocks, but MIN_SAMPLES wanted: 5 s
        (2.0, 1.0, 2000, 3),  # MIN_SAMPLES would take 20 s: given up at 5 x min_run_time
        (0.5, 1.0, 4, 4),  # max_samples wins
        (0.25, 8.0, 2000, 32),  # plain min_run_time
        (10.0, 1.0, 2000, lat.FLOOR_SAMPLES),  # however slow, a few samples for the quartiles
        (1.0, 0.0, 2, 2),  # ... unless max_samples says fewer
    ],
)
def test_measurement_stopping_rule(monkeypatch, per_call, min_run, max_samples, n):
    clock = FakeClock(per_call)
    monkeypatch.setattr(lat, "_now", clock.now)
    samples = lat._measure(clock.block, lambda: None, 1, min_run, max_samples)
    assert len(samples) == n
    assert samples == [per_call * 1e3] * n


def test_samples_are_per_call():
    clock = FakeClock(0.002)
    assert lat._measure(clock.block, lambda: None, 5, 0.0, 10) == [pytest.approx(2.0)] * lat.FLOOR_SAMPLES


def test_block_size():
    assert lat._block_size(0.02, 1.0) == 1  # long calls: one per block
    assert lat._block_size(1e-4, 1.0) == 100  # short calls fill TARGET_BLOCK_S (10 ms)
    assert lat._block_size(1e-4, 0.05) == 50  # ... but leave room for MIN_SAMPLES blocks
    assert lat._block_size(0.0, 1.0) >= 1


def test_warm_up_stops_when_medians_settle(monkeypatch):
    clock = FakeClock([0.1, 0.05, 0.02, 0.011, 0.011, 0.011, 0.011, 0.011, 0.011, 0.011])
    monkeypatch.setattr(lat, "_now", clock.now)
    warm = lat._warm_up(clock.block, lambda: None, warmup_s=100.0)
    # After call 8 the last three (0.011) and the three before (0.02, 0.011, 0.011) share a median.
    assert len(warm) == 8


def test_warm_up_windows_span_at_least_the_block_target(monkeypatch):
    clock = FakeClock(0.001)  # 1 ms calls: windows of 10 calls, so 20 calls before "stable"
    monkeypatch.setattr(lat, "_now", clock.now)
    assert len(lat._warm_up(clock.block, lambda: None, warmup_s=100.0)) == 20


def test_warm_up_ends_when_time_is_spent(monkeypatch):
    clock = FakeClock([0.1 * (i % 2 + 1) for i in range(100)])  # never settles
    monkeypatch.setattr(lat, "_now", clock.now)
    assert len(lat._warm_up(clock.block, lambda: None, warmup_s=1.0)) == 7  # 0.1+0.2+... >= 1.0 s
    clock = FakeClock(0.1)
    monkeypatch.setattr(lat, "_now", clock.now)
    assert len(lat._warm_up(clock.block, lambda: None, warmup_s=0.0)) == lat.MIN_WARMUP_CALLS


def test_tuple_inputs_and_structured_outputs():
    m = measure_latency(TwoInputs(), (torch.randn(2, 8), torch.randn(2, 8)), **QUICK)
    assert m.n >= 1


def test_infer_sets_eval_mode():
    model = tiny().train()
    measure_latency(model, torch.randn(2, 16), **QUICK)
    assert not model.training


def test_train_mode_updates_parameters():
    model = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    m = measure_latency(model, torch.randn(2, 16), mode="train", **QUICK)
    assert m.mode == "train" and model.training
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none=True)


def test_threads_are_set_and_restored():
    before = torch.get_num_threads()
    m = measure_latency(tiny(), torch.randn(2, 16), threads=1, **QUICK)
    assert m.threads == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "eval"}, "mode"), ({"max_samples": 0}, "max_samples"),
                                               ({"threads": 0}, "threads"), ({"device": "meta"}, "device")])  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure_latency(tiny(), torch.randn(2, 16), **kwargs)


def test_statistics_and_metrics_are_derived_from_samples():
    m = LatencyMeasurement(samples_ms=(4.0, 1.0, 3.0, 2.0, 5.0), number_per_sample=1, device="cpu", mode="infer",
                           warmup_iters=3, threads=2)  # fmt: skip
    assert (m.n, m.median_ms, m.mean_ms, m.iqr_ms) == (5, 3.0, 3.0, 2.0)
    assert m.throughput(8) == pytest.approx(8 / 0.003)
    d = m.to_metrics(8)
    assert d["latency_p50_ms"] == 3.0 and d["latency_n"] == 5
    assert d["throughput"] == pytest.approx(8 / 0.003)
    assert d["latency_noisy"] is True  # IQR 2 ms over a 3 ms median
    assert {"latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "latency_iqr_ms"} <= d.keys()


def test_scalar_loss_walks_structures():
    out = {"a": torch.ones(3), "b": (torch.full((2,), 2.0), [torch.tensor([4.0, 6.0])]), "ids": torch.arange(3)}
    assert scalar_loss(out).item() == pytest.approx(1 + 2 + 5)
    with pytest.raises(ValueError, match="floating-point"):
        scalar_loss((torch.arange(3), "text"))


def test_make_step_rejects_frozen_models_in_train_mode():
    model = tiny().requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        make_step(model, (torch.randn(1, 16),), "train")


def cell(seq_len: int | None = None, mode: str = "infer", threads: int | None = None) -> CellSpec:
    key = CellKey(suite="toy", tier="t", family="mlp", model="tiny", device="cpu", dtype="fp32", batch_size=2,
                  input_shape=(16,), seq_len=seq_len, mode=mode)  # fmt: skip
    variant = Variant(family="mlp", model="tiny", builder="x:y", model_args=(), target_params=1, achieved_params=1,
                      tolerance=1.0)  # fmt: skip
    prof = Profile(name="quick", warmup_s=0.02, min_run_time_s=0.05)
    return CellSpec(key=key, variant=variant, input_kind="image", input_args=(), profile=prof, threads=threads)


def context(c: CellSpec, phases: list[str]) -> MetricContext:
    return MetricContext(cell=c, model=tiny(), inputs=(torch.randn(2, 16),), device=torch.device("cpu"),
                         dtype=torch.float32, report_phase=phases.append)  # fmt: skip


def test_latency_metric_records_samples_and_tokens_per_s():
    assert METRICS.get("latency") is latency_metric
    phases: list[str] = []
    ctx = context(cell(seq_len=7, threads=1), phases)
    out = latency_metric(ctx)
    assert phases == ["latency"]
    assert ctx.samples["latency_ms"] and len(ctx.samples["latency_ms"]) == out["latency_n"]
    assert out["latency_threads"] == 1
    assert out["throughput"] == pytest.approx(2 / (out["latency_p50_ms"] / 1e3))
    assert out["tokens_per_s"] == pytest.approx(2 * 7 / (out["latency_p50_ms"] / 1e3))
    # The machine-speed reference brackets the measurement, at the cell's threads.
    ref = ctx.samples["speed_ref_ms"]
    assert len(ref) >= 2 * lat.FLOOR_SAMPLES and all(x > 0 for x in ref)
    assert out["speed_ref_kind"] == "refnet fp32 cpu 1t v1"
    assert min(ref) <= out["speed_ref_ms"] <= max(ref) and out["speed_ref_drift"] > -1.0
    assert "tokens_per_s" not in latency_metric(context(cell(), []))


@pytest.mark.parametrize("regime", ["system", "steady"])
def test_latency_metric_times_model_and_reference_under_the_cells_regime(monkeypatch, regime):
    seen: list[tuple[str, str]] = []
    fake = LatencyMeasurement(samples_ms=(1.0, 1.0, 1.0), number_per_sample=1, device="cpu", mode="infer",
                              warmup_iters=3, threads=1)  # fmt: skip

    def timed(*a, allocator, **k):
        seen.append(("model", allocator))
        return fake

    def ref(*a, allocator, **k):
        seen.append(("reference", allocator))
        return [5.0, 5.0, 5.0]

    monkeypatch.setattr(lat, "measure_latency", timed)
    monkeypatch.setattr(lat, "measure_speed_reference", ref)
    latency_metric(context(dataclasses.replace(cell(), allocator=regime), []))
    assert seen == [("reference", regime), ("model", regime), ("reference", regime)]


def test_speed_reference_times_a_fixed_network(monkeypatch):
    calls: list[tuple[torch.Size, int, bool]] = []
    real_forward = lat.ReferenceNet.forward

    def spy(self, x):
        calls.append((x.shape, torch.get_num_threads(), self.training))
        return real_forward(self, x)

    monkeypatch.setattr(lat.ReferenceNet, "forward", spy)
    before, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    samples = lat.measure_speed_reference("cpu", threads=1, budget_s=0.02)
    assert samples and all(s > 0 for s in samples)
    assert set(calls) == {(torch.Size([1, 3, 224, 224]), 1, False)}
    assert torch.get_num_threads() == before and torch.equal(torch.random.get_rng_state(), rng_state)
    assert sum(p.numel() for p in lat.ReferenceNet().parameters()) == 3_788_584
    assert lat.speed_reference_kind(torch.device("cpu"), 2) == "refnet fp32 cpu 2t v1"
    assert lat.speed_reference_kind(torch.device("cuda", 0), 1) == "refnet fp32 cuda 1t v1"


_FAULTS_SCRIPT = """
import resource, torch
from bench.metrics._malloc import steady_malloc

torch.set_num_threads(1)  # one malloc arena: intra-op threads have their own, which a loaded machine reshuffles

def step():  # a 24 MiB activation, touched: larger than anything this fresh process holds in its heap
    return torch.ones(6 << 20).sum().item()

def faults_per_call(calls=10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls

churn = faults_per_call()  # MALLOC_MMAP_THRESHOLD_=131072: every 24 MiB block is mapped and faulted in afresh
with steady_malloc() as how:
    for _ in range(3):  # the heap grows (in some address-space layouts glibc only settles on a later call)
        step()
    steady = faults_per_call()
print(how, churn, steady)
"""


@pytest.mark.skipif(glibc() is None, reason="malloc tuning is glibc-only")
def test_steady_malloc_stops_the_page_faults_of_large_activations():
    """Under a fixed 128 KiB mmap threshold (the user's, from the environment) a 24 MiB activation is
    mmapped and faulted in on every call (6,144 pages); inside steady_malloc it is reused from the heap.
    In a fresh process: a clean heap. (That the user's setting is put back after is tested with a fake
    libc in test_side_effects.py: whether glibc can then trim the heap depends on where the kernel put it.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MALLOC_MMAP_THRESHOLD_": "131072"}  # fmt: skip
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    how, churn, steady = out.stdout.rsplit(maxsplit=2)
    assert how == "glibc mmap_threshold=32MiB no_trim"
    assert float(churn) > 3000 and float(steady) < 10, (churn, steady)


def test_measurements_record_how_malloc_was_set():
    m = measure_latency(tiny(), torch.randn(2, 16), allocator="steady", **QUICK)
    assert m.malloc == ("system" if glibc() is None else "glibc mmap_threshold=32MiB no_trim")
    assert m.allocator == ("system" if glibc() is None else "steady")
    assert m.to_metrics(2)["latency_malloc"] == m.malloc
    # The API's default touches nothing and records malloc as it is now: "system", or steady when an earlier
    # test in this process put the whole process under steady (as a worker does).
    from bench.metrics import _malloc

    m = measure_latency(tiny(), torch.randn(2, 16), **QUICK)
    assert m.malloc == _malloc.current_label()
    assert m.allocator in ("system", "steady")


def test_unknown_allocator_regime_is_rejected_before_measuring():
    with pytest.raises(ValueError, match="unknown allocator regime 'jemalloc'; valid: 'system', 'steady'"):
        measure_latency(tiny(), torch.randn(2, 16), allocator="jemalloc", **QUICK)


def test_latency_metric_notes_noisy_measurements(monkeypatch):
    noisy = LatencyMeasurement(samples_ms=(1.0, 2.0, 3.0, 4.0), number_per_sample=1, device="cpu", mode="infer",
                               warmup_iters=3, threads=1)  # fmt: skip
    monkeypatch.setattr(lat, "measure_latency", lambda *a, **k: noisy)
    # A steady machine: the real reference on a loaded machine may move and add a note of its own.
    monkeypatch.setattr(lat, "measure_speed_reference", lambda *a, **k: [5.0, 5.0, 5.0])
    ctx = context(cell(), [])
    assert latency_metric(ctx)["latency_noisy"] is True
    assert len(ctx.notes) == 1 and "IQR/median" in ctx.notes[0]
