"""Very large sample counts: compare's bootstrap no longer grows with the samples, and nothing overflows.

An 89 MB file (a million latency samples per cell) kept ``compare`` busy for over 300 s: each of the
2000 bootstrap resamples was built sample by sample (O(resamples x samples)), and the smallest possible
p-value was computed as 2 / C(2n, n), a million-digit integer that then overflowed a float. The timings
on a generated 90 MB file are in ``benchmarks/large_results.py``; these tests check the algorithm, not
the clock.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _runfiles import record, run_file

from bench.compare import (
    N_BOOTSTRAP,
    RESAMPLE_MAX,
    Verdict,
    _boot_medians,
    compare,
    load_side,
    min_p_value,
    sample_shift,
)


@pytest.mark.parametrize("n", [20_000, 200_000])
def test_bootstrap_work_does_not_grow_with_the_sample_count(n: int, monkeypatch) -> None:
    """Above RESAMPLE_MAX a bootstrap median costs O(1) (drawn from its distribution after one sort), not O(n)."""
    import bench.compare.stats

    work = [0]
    real = bench.compare.stats._boot_medians

    def counted(x, k, rng, sorted_x=None):
        work[0] += k if sorted_x is not None else k * len(x)  # random numbers drawn and values touched
        return real(x, k, rng, sorted_x)

    monkeypatch.setattr(bench.compare.stats, "_boot_medians", counted)
    rng = np.random.default_rng(0)
    b, c = rng.lognormal(0, 0.05, n), rng.lognormal(0.02, 0.05, n)
    shift = sample_shift(b, c, n_boot=N_BOOTSTRAP)
    assert 0 < work[0] <= 2 * N_BOOTSTRAP  # building the resamples: 2 x N_BOOTSTRAP x n
    assert shift.ci_low < shift.ratio < shift.ci_high and shift.ci_high - shift.ci_low < 0.005


@pytest.mark.parametrize("n", [RESAMPLE_MAX + 1, RESAMPLE_MAX + 2, 51, 50])
def test_drawn_medians_have_the_distribution_of_resampled_ones(n: int) -> None:
    """The order-statistic draw is the bootstrap itself, not an approximation: same distribution (odd and even n)."""
    x = np.random.default_rng(n).lognormal(0, 1, n)
    k = 20_000 if n < 100 else 2_000
    resampled = _boot_medians(x, k, np.random.default_rng(1))
    drawn = _boot_medians(x, k, np.random.default_rng(2), np.sort(x))
    grid = np.union1d(resampled, drawn)
    cdf = [np.searchsorted(np.sort(m), grid, side="right") / k for m in (resampled, drawn)]
    assert np.abs(cdf[0] - cdf[1]).max() < 5 / math.sqrt(k)  # a two-sample KS bound far beyond chance
    if n % 2:
        assert set(np.unique(drawn)) <= set(x)  # an odd resample's median is one of the samples


def test_min_p_value_for_large_counts_does_not_overflow() -> None:
    assert min_p_value(4, 4) == 2 / 70
    exact = 2 / math.comb(1000, 500)
    log_form = 2 * math.exp(-(math.lgamma(1001) - 2 * math.lgamma(501)))
    assert log_form == pytest.approx(exact, rel=1e-9)
    assert min_p_value(600, 600) == pytest.approx(2 * math.exp(-(math.lgamma(1201) - 2 * math.lgamma(601))))
    assert min_p_value(1_000_000, 1_000_000) == 0.0  # underflows to 0 in an instant; C(2n, n) took seconds


def test_a_noisy_change_with_many_samples_gets_a_verdict(tmp_path: Path) -> None:
    """+6% but far too noisy to tell, with 600 samples a side: 'too noisy' (it raised OverflowError)."""
    b = np.random.default_rng(3).lognormal(2, 1.0, 600)
    c = np.random.default_rng(4).permutation(b) * 1.06
    report = compare(load_side(run_file(tmp_path / "b", [record("m", list(b))])),
                     load_side(run_file(tmp_path / "c", [record("m", list(c))])))  # fmt: skip
    (lat,) = [m for m in report.cells[0].metrics if m.metric == "latency"]
    assert lat.verdict is Verdict.NOISY and lat.change == pytest.approx(6.0)


def test_compare_with_200k_samples_per_cell(tmp_path: Path) -> None:
    """A modest large file end to end (2 cells x 200k samples a side): the old bootstrap drew 1.6e9 numbers here."""
    rng = np.random.default_rng(5)
    base = [record(m, list(rng.lognormal(np.log(10), 0.02, 200_000))) for m in ("m1", "m2")]
    cur = [record("m1", list(rng.lognormal(np.log(10), 0.02, 200_000))),
           record("m2", list(rng.lognormal(np.log(11), 0.02, 200_000)))]  # fmt: skip
    report = compare(load_side(run_file(tmp_path / "b", base)), load_side(run_file(tmp_path / "c", cur)))
    verdicts = {c.key.model: next(m for m in c.metrics if m.metric == "latency") for c in report.cells}
    assert verdicts["m1"].verdict is Verdict.UNCHANGED
    assert verdicts["m2"].verdict is Verdict.REGRESSED and verdicts["m2"].change == pytest.approx(10.0, abs=0.1)
    assert verdicts["m2"].n_baseline == 200_000 and report.exit_code == 1
