"""Summary statistics of raw timing samples.

Percentiles use numpy's default ("linear") interpolation: the q-th percentile of the sorted samples
``x[0..n-1]`` is read at the fractional index ``q/100 * (n - 1)``. This is also what
``torch.quantile`` (and hence ``torch.utils.benchmark.Measurement``) uses, so medians and IQRs agree
with it. The standard deviation is the sample one (``ddof=1``), as pandas reports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: IQR/median above which a measurement is flagged noisy (torch.utils.benchmark warns at the same ratio).
NOISY_IQR_OVER_MEDIAN = 0.1
#: |after/before - 1| of the machine-speed reference around one latency measurement
#: (``speed_ref_drift``) above which the machine changed speed during it: the samples mix two machines.
UNSTEADY_SPEED_DRIFT = 0.1


@dataclass(frozen=True)
class Summary:
    """Statistics of one set of samples, in the samples' unit (ms for latency)."""

    n: int
    median: float
    mean: float
    std: float  # sample standard deviation (ddof=1); 0.0 for a single sample
    min: float
    max: float
    p90: float
    p99: float
    q1: float  # 25th percentile
    q3: float  # 75th percentile

    @classmethod
    def of(cls, samples: Iterable[float]) -> Summary:
        """Summarise ``samples``; raises ``ValueError`` when there are none or one is not finite."""
        x = np.asarray(list(samples), dtype=np.float64)
        if x.size == 0:
            raise ValueError("cannot summarise an empty set of samples")
        if not np.all(np.isfinite(x)):
            raise ValueError("samples must be finite numbers")
        p25, p50, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
        return cls(
            n=int(x.size),
            median=float(p50),
            mean=float(x.mean()),
            # One sample shows no spread; 0.0 rather than NaN keeps records valid JSON.
            std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
            min=float(x.min()),
            max=float(x.max()),
            p90=float(p90),
            p99=float(p99),
            q1=float(p25),
            q3=float(p75),
        )

    @property
    def iqr(self) -> float:
        """Interquartile range, ``q3 - q1``."""
        return self.q3 - self.q1

    @property
    def iqr_over_median(self) -> float:
        """Relative spread; ``inf`` when the median is 0 but the IQR is not."""
        if self.median == 0:
            return 0.0 if self.iqr == 0 else float("inf")
        return self.iqr / self.median

    @property
    def noisy(self) -> bool:
        """True when IQR/median exceeds :data:`NOISY_IQR_OVER_MEDIAN` (0.1)."""
        return self.iqr_over_median > NOISY_IQR_OVER_MEDIAN
