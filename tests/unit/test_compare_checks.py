"""The check classes of ``bench.compare``: one per ``MetricSpec.kind``, usable on their own (no run files)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.compare import (
    CHECKS,
    METRICS,
    CellPair,
    ExactCheck,
    Judging,
    MetricSpec,
    Pending,
    PointsCheck,
    SampledCheck,
    Threshold,
    ThresholdCheck,
    Verdict,
    check_for,
)
from bench.spec import CellKey

KEY = CellKey.from_dict({"suite": "s", "tier": "tiny", "family": "f", "model": "m", "device": "cpu", "dtype": "fp32",
                         "batch_size": 1, "input_shape": [3, 8, 8], "seq_len": None, "mode": "infer"})  # fmt: skip


def _check(name: str, value: float, unit: str = "%", **judging) -> object:
    return check_for(METRICS[name], Threshold(name, value, unit), Judging(**judging))


def test_every_metric_has_the_check_of_its_kind() -> None:
    assert set(CHECKS) == {s.kind for s in METRICS.values()}
    kinds = {n: type(_check(n, 1.0)) for n in METRICS}
    assert kinds == {"latency": SampledCheck, "memory": ThresholdCheck, "macs": ExactCheck, "params": ExactCheck,
                     "accuracy": PointsCheck, "instructions": ThresholdCheck, "probe_acc": PointsCheck,
                     "finetune_acc": PointsCheck, "zeroshot_acc": PointsCheck}  # fmt: skip


def test_a_new_exact_metric_is_judged_without_touching_compare() -> None:
    """A spec alone (kind "exact") is enough: any change of a count regresses, either way."""
    spec = MetricSpec("buffers", "buffers", "", "exact", "%", 0.0)
    check = check_for(spec, Threshold("buffers", 0.0, "%"), Judging())
    pair = CellPair(KEY, {"buffers": 4136}, {"buffers": 4200})
    up, down = check.judge(pair, 4136.0, 4200.0), check.judge(pair, 4136.0, 4000.0)
    assert up.verdict is down.verdict is Verdict.REGRESSED and up.note == "buffers changed by +64"
    assert check.judge(pair, 4136.0, 4136.0).verdict is Verdict.UNCHANGED


@pytest.mark.parametrize(
    ("method", "verdict"), [("rss_hwm", Verdict.UNCHANGED), ("cuda_max_allocated", Verdict.REGRESSED)]
)
def test_memory_threshold_ignores_rss_noise_only_for_rss_peaks(method: str, verdict: Verdict) -> None:
    """+6% of 40 MB is 2.4 MB: beyond 5%, but within the 16 MB noise of a peak rebuilt from RSS."""
    pair = CellPair(KEY, {"memory_method": method}, {"memory_method": method})
    m = _check("memory", 5.0).judge(pair, 40.0, 42.4)
    assert m.verdict is verdict and m.change == pytest.approx(6.0)


def test_accuracy_in_points_from_fractions_or_percent() -> None:
    check = _check("accuracy", 1.0, "pt")
    frac = check.judge(CellPair(KEY, {}, {}), 0.95, 0.93)
    pct = check.judge(CellPair(KEY, {}, {}), 95.0, 93.0)
    assert frac.change == pytest.approx(-2.0) and pct.change == pytest.approx(-2.0)
    assert frac.verdict is pct.verdict is Verdict.REGRESSED
    wide = CellPair(KEY, {"accuracy_ci95": 0.03}, {"accuracy_ci95": 0.03})  # CI of the difference +-4.2 pt
    assert check.judge(wide, 0.95, 0.93).verdict is Verdict.NOISY


def test_latency_tests_wait_for_the_correction_over_every_cell() -> None:
    """``judge`` returns a Pending test; ``resolve`` corrects the family together (Holm: x family size)."""
    base = 10.0 + np.random.default_rng(1).normal(0, 0.05, 30)
    check = _check("latency", 5.0, n_boot=200)
    pending = [check.judge(CellPair(KEY, {"latency_samples": list(base)}, {"latency_samples": list(base * f)}), 10, 10)
               for f in (1.10, 1.0)]  # fmt: skip
    assert all(isinstance(p, Pending) for p in pending)
    slower, same = check.resolve(pending)
    assert slower.verdict is Verdict.REGRESSED and same.verdict is Verdict.UNCHANGED
    assert slower.p_adjusted == pytest.approx(min(1.0, 2 * slower.p_value))  # the smaller p, times 2 cells
    assert slower.baseline == pytest.approx(float(np.median(base)))
