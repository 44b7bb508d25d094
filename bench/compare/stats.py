"""The statistics of ``compare`` (pure): Mann-Whitney U, the bootstrap of a median ratio, Holm / BH.

Nothing here knows about cells, metrics or verdicts: samples in, numbers out (``SampleShift``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.errors import UsageError
from bench.stats import NOISY_IQR_OVER_MEDIAN

CORRECTIONS = ("holm", "bh")
N_BOOTSTRAP = 2000
#: Above this many samples, a side's bootstrap medians are drawn straight from their exact distribution
#: (the resample's middle order statistics, O(1) each after one sort) rather than by building each
#: resample (O(n) each: 2000 resamples of a million samples per cell kept ``compare`` busy for minutes).
#: Below it the resamples are built as before, so results on ordinary runs are unchanged.
RESAMPLE_MAX = 10_000
#: IQR/median above which a side's latency samples are unstable (torch.utils.benchmark's warning
#: level): a machine disturbed during the run, whose samples are not the independent draws the test
#: assumes. Such a change is "too noisy", never a regression.
UNSTABLE_IQR_OVER_MEDIAN = NOISY_IQR_OVER_MEDIAN


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Multiple-testing correction: Holm's step-down (family-wise error) or Benjamini-Hochberg (FDR).

    NaN entries (no test) are left NaN and do not count towards the family size.
    """
    if method not in CORRECTIONS:
        raise UsageError(f"unknown correction {method!r}; valid choices: {', '.join(CORRECTIONS)}")
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    order = sorted(idx, key=lambda i: pvalues[i])
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):  # smallest p first, multiplied by m, m-1, ...
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):  # largest p first: q_(k) = min_{j>=k} m/j p_(j)
            i = order[rank]
            running = min(running, m / (rank + 1) * pvalues[i])
            out[i] = min(1.0, running)
    return out


@dataclass(frozen=True)
class SampleShift:
    """Two sets of raw latency samples compared: Mann-Whitney p-value and bootstrap CI of the median ratio.

    With machine-speed references (``speed_factor`` set), ``machine_*`` are the same quantities for
    the current samples divided by ``speed_factor``: the change relative to the machine.
    """

    p_value: float
    ratio: float  # median(current) / median(baseline)
    ci_low: float
    ci_high: float
    n_baseline: int
    n_current: int
    spread_baseline: float = 0.0  # IQR / median of each side's samples
    spread_current: float = 0.0
    speed_factor: float | None = None  # median reference time, current / baseline (None: no reference)
    machine_ratio: float | None = None  # ratio relative to the machine: ratio / speed_factor
    machine_ci: tuple[float, float] | None = None
    machine_p_value: float | None = None

    @property
    def unstable(self) -> bool:
        """Either side's samples spread more than ``UNSTABLE_IQR_OVER_MEDIAN``: the machine was disturbed."""
        return max(self.spread_baseline, self.spread_current) > UNSTABLE_IQR_OVER_MEDIAN

    @property
    def p_both(self) -> float:
        """The p-value to correct: with a reference, the larger of the raw and machine-relative ones.

        A change must be significant both ways; rejecting both at ``alpha`` is a valid level-``alpha``
        test of the pair (an intersection-union test).
        """
        return self.p_value if self.machine_p_value is None else max(self.p_value, self.machine_p_value)


def _rank_test(b: Any, c: Any) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 when every sample ties)."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    if np.all(b == b[0]) and np.all(c == b[0]):
        return 1.0  # every sample tied: scipy's normal approximation would divide by zero
    p = float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def sample_shift(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    alpha: float = 0.05,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    ref_baseline: Sequence[float] | None = None,
    ref_current: Sequence[float] | None = None,
) -> SampleShift:
    """Test whether ``current`` samples differ from ``baseline`` (deterministic for a given seed).

    With the machine-speed reference samples of both sides (``ref_*``), the change relative to the
    machine is computed too (``machine_*``): ``current`` divided by ``median(ref_current) /
    median(ref_baseline)`` goes through the same Mann-Whitney test, and its bootstrap ratio is
    ``(mc/mb) / (mrc/mrb)`` with all four resampled, so the interval carries the reference's own noise.
    """
    import numpy as np

    b = np.asarray(baseline, dtype=float)
    raw_c = np.asarray(current, dtype=float)
    rb = rc = None
    factor = None
    if ref_baseline is not None and ref_current is not None and len(ref_baseline) and len(ref_current):
        rb, rc = np.asarray(ref_baseline, dtype=float), np.asarray(ref_current, dtype=float)
        factor = float(np.median(rc) / np.median(rb))
    c = raw_c / factor if factor else raw_c
    rng = np.random.default_rng(seed)
    raw_ratios = np.empty(n_boot)
    ratios = np.empty(n_boot) if rb is not None else None
    sides = [x for x in (b, raw_c, rb, rc) if x is not None]
    big = {id(x): np.sort(x) for x in sides if len(x) > RESAMPLE_MAX}  # sorted once; medians drawn directly
    small = [len(x) for x in sides if id(x) not in big]
    chunk = max(1, 2_000_000 // max(small, default=1))  # bound memory for long sample lists
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        mb = _boot_medians(b, k, rng, big.get(id(b)))
        mc = _boot_medians(raw_c, k, rng, big.get(id(raw_c)))
        with np.errstate(divide="ignore", invalid="ignore"):
            raw_ratios[start : start + k] = mc / mb
            if ratios is not None:
                mrb = _boot_medians(rb, k, rng, big.get(id(rb)))
                mrc = _boot_medians(rc, k, rng, big.get(id(rc)))
                ratios[start : start + k] = mc / mb / (mrc / mrb)
    med_b = float(np.median(b))
    raw_ratio = float(np.median(raw_c)) / med_b if med_b else math.inf
    raw_lo, raw_hi = (float(x) for x in np.nanquantile(raw_ratios, [alpha / 2, 1 - alpha / 2]))
    shift = SampleShift(_rank_test(b, raw_c), raw_ratio, raw_lo, raw_hi, len(b), len(c), _spread(b), _spread(raw_c))
    if factor is None:
        return shift
    lo, hi = (float(x) for x in np.nanquantile(ratios, [alpha / 2, 1 - alpha / 2]))
    ratio = float(np.median(c)) / med_b if med_b else math.inf
    return replace(shift, speed_factor=factor, machine_ratio=ratio, machine_ci=(lo, hi),
                   machine_p_value=_rank_test(b, c))  # fmt: skip


def _boot_medians(x: Any, k: int, rng: Any, sorted_x: Any = None) -> Any:
    """The medians of ``k`` bootstrap resamples of ``x`` (each ``len(x)`` draws with replacement).

    Without ``sorted_x``: built resample by resample (O(n) each). With ``sorted_x`` (``x`` sorted): drawn
    from their exact distribution in O(1) each. A resample is ``sorted_x[floor(n U_i)]`` for n uniforms
    U_i, so its j-th smallest value is ``sorted_x[floor(n U_(j))]`` where U_(j), the j-th smallest of n
    uniforms, is Beta(j, n - j + 1); the next one up is U_(j) + (1 - U_(j)) Beta(1, n - j). The median is
    the middle one (odd n) or the mean of the middle two (even n), as ``numpy.median`` takes it.
    """
    import numpy as np

    n = len(x)
    if sorted_x is None:
        return np.median(x[rng.integers(0, n, size=(k, n))], axis=1)
    m = (n + 1) // 2  # 1-based rank of the (lower) middle value
    u = rng.beta(m, n - m + 1, size=k)
    lo = sorted_x[np.minimum((u * n).astype(np.int64), n - 1)]
    if n % 2:
        return lo
    v = u + (1.0 - u) * rng.beta(1, n - m, size=k)
    return (lo + sorted_x[np.minimum((v * n).astype(np.int64), n - 1)]) / 2


def _spread(x: Any) -> float:
    import numpy as np

    q1, med, q3 = np.percentile(x, [25, 50, 75])  # linear interpolation, as bench.stats
    return float((q3 - q1) / med) if med else 0.0


def cell_seed(key_id: str, seed: int = 0) -> int:
    """A per-cell bootstrap seed: stable across runs, independent of which other cells are compared."""
    return (int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "little") + seed) % 2**63


def detectable_change(spread: float, n_baseline: int, n_current: int, alpha: float, power: float = 0.8) -> float:
    """About the smallest relative change (in %) that a Mann-Whitney test at ``alpha`` finds ``power`` of the
    time, for values that spread ``spread`` (IQR / median) and these counts.

    The normal approximation: (z(1 - alpha/2) + z(power)) x sigma x sqrt(1/nb + 1/nc), with sigma = IQR/1.349
    (a normal's) and Mann-Whitney's efficiency 3/pi against the t-test. For per-process medians, which are
    independent draws; a rough guide for "is this machine steady enough for that threshold", not a bound.
    """
    from scipy.stats import norm

    if n_baseline < 1 or n_current < 1 or not 0.0 < alpha < 1.0:
        return math.inf
    z = float(norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power))
    sigma = spread / 1.349
    return 100.0 * z * sigma * math.sqrt(1.0 / n_baseline + 1.0 / n_current) / math.sqrt(3.0 / math.pi)


def min_p_value(n_baseline: int, n_current: int) -> float:
    """The smallest two-sided Mann-Whitney p-value possible with these sample counts (complete separation)."""
    if n_baseline + n_current <= 1000:
        return min(1.0, 2.0 / math.comb(n_baseline + n_current, n_baseline))
    # 2 / C(nb + nc, nb) in logs: the binomial itself takes seconds to build for large counts and overflows
    # a float beyond about 1030 samples in all (OverflowError).
    log_comb = math.lgamma(n_baseline + n_current + 1) - math.lgamma(n_baseline + 1) - math.lgamma(n_current + 1)
    return min(1.0, 2.0 * math.exp(-log_comb))
