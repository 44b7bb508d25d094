"""bench.stats.Summary against closed forms and against torch.utils.benchmark's Measurement."""

from __future__ import annotations

import dataclasses
import math

import pytest
from torch.utils.benchmark import Measurement, TaskSpec

from bench.stats import NOISY_IQR_OVER_MEDIAN, Summary


def test_one_to_hundred_linear_percentiles():
    s = Summary.of(range(1, 101))
    # numpy's linear percentile reads sorted x at index q/100 * (n - 1).
    assert s.n == 100
    assert s.median == 50.5
    assert s.mean == 50.5
    assert s.min == 1.0 and s.max == 100.0
    assert s.q1 == pytest.approx(25.75)  # index 24.75: 25 + 0.75
    assert s.q3 == pytest.approx(75.25)  # index 74.25: 75 + 0.25
    assert s.p90 == pytest.approx(90.1)  # index 89.1
    assert s.p99 == pytest.approx(99.01)  # index 98.01
    assert s.iqr == pytest.approx(49.5)
    assert s.std == pytest.approx(math.sqrt(100 * 101 / 12))  # sample std of 1..n: sqrt(n(n+1)/12)
    assert s.iqr_over_median == pytest.approx(49.5 / 50.5)
    assert s.noisy


def test_order_does_not_matter():
    assert Summary.of([3.0, 1.0, 2.0, 5.0, 4.0]) == Summary.of([1.0, 2.0, 3.0, 4.0, 5.0])


def test_constant_samples_have_no_spread():
    s = Summary.of([7.0] * 10)
    assert (s.median, s.std, s.iqr, s.iqr_over_median, s.noisy) == (7.0, 0.0, 0.0, 0.0, False)


def test_single_sample():
    s = Summary.of([4.2])
    assert (s.n, s.median, s.mean, s.min, s.max, s.p99, s.std) == (1, 4.2, 4.2, 4.2, 4.2, 4.2, 0.0)


def test_noisy_threshold_is_strict():
    assert NOISY_IQR_OVER_MEDIAN == 0.1
    at = Summary.of([9.0, 10.0, 11.0])  # q1 9.5, q3 10.5: IQR/median exactly 0.1
    assert at.iqr_over_median == pytest.approx(0.1)
    assert not at.noisy
    assert Summary.of([8.9, 10.0, 11.1]).noisy  # 0.11


def test_zero_median():
    assert Summary.of([0.0, 0.0, 0.0]).iqr_over_median == 0.0
    assert Summary.of([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]).iqr_over_median == math.inf


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_rejects_empty_and_non_finite(bad):
    with pytest.raises(ValueError):
        Summary.of(bad)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Summary.of([1.0]).median = 2.0  # type: ignore[misc]


def test_agrees_with_torch_utils_benchmark():
    times = [0.012, 0.0105, 0.011, 0.013, 0.0101, 0.0118, 0.0122, 0.0099, 0.0131]
    ref = Measurement(number_per_run=1, raw_times=times, task_spec=TaskSpec(stmt="x", setup=""))
    s = Summary.of(times)
    assert s.median == pytest.approx(ref.median, rel=1e-12)
    assert s.iqr == pytest.approx(ref.iqr, rel=1e-12)
    assert s.mean == pytest.approx(ref.mean, rel=1e-12)
