"""Regression checks: join two sets of runs cell by cell and give every metric a verdict.

Comparison is data (pytest-benchmark's ``RegressionCheck`` idea): ``compare`` returns a frozen
``ComparisonReport`` that knows its verdicts, ``to_dict()`` and ``exit_code``; the CLI only renders it.

How a verdict is reached, per metric:

* **latency** -- from the raw samples of both runs: a two-sided Mann-Whitney U test (p-values
  corrected for the number of cells compared, Holm by default, Benjamini-Hochberg optionally) and a
  seeded bootstrap confidence interval of the ratio of medians. A change is *significant* when the
  corrected p-value is below ``alpha`` and the interval excludes 1. It is a regression (or an
  improvement) only when it is significant **and** the median moved by more than the ``--fail-on``
  threshold; beyond the threshold but not significant is "too noisy"; significant but within the
  threshold is "unchanged". Samples whose IQR/median exceeds 0.1 on either side (the machine was
  disturbed during the run) make a change "too noisy" even when it is significant.
  **Machine speed.** Every latency measurement is bracketed by a fixed reference network (the
  machine-speed reference, ``bench.metrics.latency.ReferenceNet``). Between runs of the same
  environment, a latency change is also computed relative to it (current samples divided by the
  cell's reference ratio, the references resampled in the bootstrap). The reference can only
  *veto* a verdict, never make one: a change counts only when it also holds relative to the
  machine, in the same direction, beyond the threshold and significant (the larger p-value of the
  two is the one corrected). So a machine that is 15% slower today (a busy neighbour VM, a lower
  clock) is not a 15% regression of every model, while a code change, which does not move the
  reference, still shows. When the reference moved by x%, a change relative to it must also exceed
  the threshold by ``SPEED_SENSITIVITY * x%``, else it is "too noisy" (models follow the machine only
  roughly). A reference that moved more than ``UNSTABLE_SPEED_DRIFT`` during one
  measurement makes that cell "too noisy". Across an environment change (threads, CPU, torch) the
  reference moves with the change itself, so nothing is adjusted there; ``--no-speed-adjust``
  turns the adjustment off.
* **memory** -- one measurement per run, so the threshold alone decides (no test is possible); on
  CPU, where the peak is rebuilt from RSS, the change must also exceed ``RSS_NOISE_FLOOR_MB``.
* **macs**, **params** -- exact counts: any change beyond the threshold (``0%``: any change at all,
  in either direction) is a regression, because a fixed model whose count moves is a changed model
  or a changed counter, and the baseline must be re-saved on purpose.
* **accuracy** -- in percentage points; when both runs carry a confidence interval, a drop beyond
  the threshold must also exceed the interval of the difference, else it is "too noisy".

When the machines differ (``bench.env.COMPARABLE``), the verdicts are computed and shown but marked
environment-changed and never fail the build, unless the caller allows environment changes.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from bench.env import COMPARABLE
from bench.errors import EXIT_OK, EXIT_REGRESSION, UsageError
from bench.spec import CellKey
from bench.stats import NOISY_IQR_OVER_MEDIAN, UNSTEADY_SPEED_DRIFT

#: the join key of two runs, in the order the schema lists it
KEY_FIELDS = ("suite", "tier", "family", "model", "device", "dtype", "batch_size", "input_shape", "seq_len", "mode")
CORRECTIONS = ("holm", "bh")
DEFAULT_FAIL_ON = "latency:5%,memory:5%,macs:0%,accuracy:1pt"
#: CPU peak memory is rebuilt from RSS (``memory_method`` ``rss_*``), which moves between identical
#: runs even with malloc's thresholds fixed (bench.metrics._malloc): across 18 processes each,
#: densenet121 tiny read 34.6-46.6 MB, vgg11 tiny 41.2-48.7 MB, resnet10t 30.7-35.5 MB. Changes
#: smaller than this are noise whatever the percentage. CUDA peaks come from the allocator: no floor.
RSS_NOISE_FLOOR_MB = 16.0
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
#: a machine-speed reference that moved more than this during one measurement: "too noisy".
UNSTABLE_SPEED_DRIFT = UNSTEADY_SPEED_DRIFT
#: How differently from the machine-speed reference a model may respond to the same change of machine
#: speed: across 20-25% slowdowns on the 2-core VM, models moved 0.55-1.5 times as much as the
#: reference (densenet121 +36% when the reference moved +23%). So when the reference moved by x%,
#: a change relative to it must exceed the threshold by SPEED_SENSITIVITY * x% before it can count;
#: inside that band it is "too noisy" -- the machine changed too much to tell.
SPEED_SENSITIVITY = 0.5


class Verdict(str, Enum):
    """What happened to one metric of one cell."""

    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NOISY = "too noisy"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class MetricSpec:
    """How one comparable metric is read from a results row and judged."""

    name: str  # the name --fail-on uses
    column: str  # the load_results column
    unit: str  # unit of the values shown
    kind: str  # "sampled" | "single" | "exact" | "points"
    threshold_unit: str  # "%" (relative change) or "pt" (percentage points)
    default: float  # threshold used when --fail-on does not name the metric
    higher_is_worse: bool = True


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("latency", "latency_p50_ms", "ms", "sampled", "%", 5.0),
        MetricSpec("memory", "peak_memory_mb", "MB", "single", "%", 5.0),
        MetricSpec("macs", "macs", "", "exact", "%", 0.0),
        MetricSpec("params", "params", "", "exact", "%", 0.0),
        MetricSpec("accuracy", "accuracy_mean", "pt", "points", "pt", 1.0, higher_is_worse=False),
    )
}

_FAIL_ON_SYNTAX = (
    "expected comma-separated METRIC:VALUE with VALUE in % for latency, memory, macs, params and in pt for "
    f"accuracy, e.g. --fail-on {DEFAULT_FAIL_ON}"
)


@dataclass(frozen=True)
class Threshold:
    """The smallest change of one metric that counts: ``value`` in ``unit`` (``%`` relative, ``pt`` points).

    ``gating``: whether a regression of this metric fails the build (metrics that ``--fail-on`` does
    not name are still compared, with their default threshold, but only reported).
    """

    metric: str
    value: float
    unit: str
    gating: bool = True

    def exceeded_by(self, change: float) -> bool:
        """Whether a change (in this threshold's unit, either sign) is beyond the threshold."""
        return abs(change) > self.value

    def __str__(self) -> str:
        return f"{self.metric}:{self.value:g}{self.unit}"


def parse_fail_on(text: str | None) -> tuple[Threshold, ...]:
    """``"latency:5%,macs:0%"`` -> one ``Threshold`` per metric (named ones gate, the rest only report).

    Raises ``UsageError`` (exit 2) with the syntax and the valid metrics on any fault.
    """
    text = DEFAULT_FAIL_ON if text is None else text
    named: dict[str, Threshold] = {}
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"([A-Za-z_]+)\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pt)", part)
        if not m:
            raise UsageError(f"bad --fail-on entry {part!r}: {_FAIL_ON_SYNTAX}")
        name, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3)
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"bad --fail-on metric {name!r}{hint}: valid metrics are {', '.join(METRICS)}; {_FAIL_ON_SYNTAX}"
            )
        if unit != METRICS[name].threshold_unit:
            raise UsageError(
                f"bad --fail-on entry {part!r}: {name} takes {METRICS[name].threshold_unit}; {_FAIL_ON_SYNTAX}"
            )
        if name in named:
            raise UsageError(f"bad --fail-on: {name} given twice; {_FAIL_ON_SYNTAX}")
        named[name] = Threshold(name, value, unit)
    return tuple(named.get(n) or Threshold(n, s.default, s.threshold_unit, gating=False) for n, s in METRICS.items())


# --------------------------------------------------------------------------- statistics (pure)


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


# --------------------------------------------------------------------------- the report (values)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one cell, baseline against current, with its verdict and how it was reached."""

    metric: str
    baseline: float | None
    current: float | None
    change: float | None  # in threshold.unit: percent (relative) or points
    verdict: Verdict
    threshold: Threshold
    method: str  # how the verdict was reached, in words
    p_value: float | None = None
    p_adjusted: float | None = None
    ci: tuple[float, float] | None = None  # latency: CI of the median ratio; accuracy: of the difference (pt)
    n_baseline: int | None = None
    n_current: int | None = None
    env_changed: bool = False
    note: str | None = None
    speed_factor: float | None = None  # latency: machine-speed reference, current / baseline
    machine_change: float | None = None  # latency: the change in % relative to the machine (ratio / speed_factor)

    @property
    def fails(self) -> bool:
        """Whether this comparison fails the build."""
        return self.verdict is Verdict.REGRESSED and self.threshold.gating and not self.env_changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": METRICS[self.metric].unit,
            "baseline": _num(self.baseline),
            "current": _num(self.current),
            "change": _num(self.change),
            "change_unit": self.threshold.unit,
            "verdict": self.verdict.value,
            "fails": self.fails,
            "threshold": str(self.threshold),
            "gating": self.threshold.gating,
            "method": self.method,
            "p_value": _num(self.p_value),
            "p_adjusted": _num(self.p_adjusted),
            "ci": [_num(x) for x in self.ci] if self.ci else None,
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "env_changed": self.env_changed,
            "note": self.note,
            "speed_factor": _num(self.speed_factor),
            "machine_change": _num(self.machine_change),
        }


#: CellComparison.status values
COMPARED, ADDED, REMOVED, FAILED, NOT_COMPARED = "compared", "added", "removed", "failed", "not compared"


@dataclass(frozen=True)
class CellComparison:
    """One cell (join key) of the two sides.

    ``status``: ``compared`` (ok on both sides), ``added`` (only in current), ``removed`` (only in
    baseline), ``failed`` (failed or timed out in current), ``not compared`` (skipped, or not ok in
    the baseline).
    """

    key: CellKey
    status: str
    baseline_status: str | None
    current_status: str | None
    metrics: tuple[MetricComparison, ...] = ()
    error: str | None = None
    env_changed: bool = False
    notes: tuple[str, ...] = ()

    @property
    def fails(self) -> bool:
        """A regressed gating metric, or a cell that was ok in the baseline and now fails."""
        newly_failed = self.status == FAILED and self.baseline_status == "ok" and not self.env_changed
        return newly_failed or any(m.fails for m in self.metrics)

    def metric(self, name: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key.id,
            "key": self.key.to_dict(),
            "status": self.status,
            "baseline_status": self.baseline_status,
            "current_status": self.current_status,
            "error": self.error,
            "fails": self.fails,
            "env_changed": self.env_changed,
            "notes": list(self.notes),
            "metrics": {m.metric: m.to_dict() for m in self.metrics},
        }


@dataclass(frozen=True)
class EnvChange:
    """A ``bench.env.COMPARABLE`` field that differs between the two sides."""

    field: str
    baseline: Any
    current: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.baseline!r} -> {self.current!r}"


@dataclass(frozen=True)
class RunInfo:
    """Where one side of a comparison came from."""

    label: str  # what the user named: a path or a baseline name
    paths: tuple[str, ...]
    run_ids: tuple[str, ...]
    suites: tuple[str, ...]
    profiles: tuple[str, ...]
    suite_hashes: tuple[str, ...]
    host: str | None
    started_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class RunSet:
    """One side of a comparison: its results frame (``bench.store.load_results``), env and origin."""

    info: RunInfo
    env: Mapping[str, Any]
    frame: Any = field(repr=False)  # pandas.DataFrame


@dataclass(frozen=True)
class ComparisonReport:
    """Everything ``compare`` found; render it, serialise it (``to_dict``) or exit with ``exit_code``."""

    baseline: RunInfo
    current: RunInfo
    thresholds: tuple[Threshold, ...]
    alpha: float
    correction: str
    env_changes: tuple[EnvChange, ...]
    allow_env_change: bool
    cells: tuple[CellComparison, ...]
    notes: tuple[str, ...] = ()

    @property
    def env_blocked(self) -> bool:
        """The machines differ and the caller did not allow it: verdicts are shown but cannot fail."""
        return bool(self.env_changes) and not self.allow_env_change

    def _metrics(self, verdict: Verdict) -> list[tuple[CellComparison, MetricComparison]]:
        return [(c, m) for c in self.cells for m in c.metrics if m.verdict is verdict]

    @property
    def regressions(self) -> list[tuple[CellComparison, MetricComparison]]:
        """Regressed metrics (gating or not; see ``MetricComparison.fails``)."""
        return self._metrics(Verdict.REGRESSED)

    @property
    def improvements(self) -> list[tuple[CellComparison, MetricComparison]]:
        return self._metrics(Verdict.IMPROVED)

    @property
    def noisy(self) -> list[tuple[CellComparison, MetricComparison]]:
        return self._metrics(Verdict.NOISY)

    @property
    def explained(self) -> list[tuple[CellComparison, MetricComparison]]:
        """Unchanged metrics that moved beyond the threshold but were explained (e.g. by the machine's speed)."""
        return [(c, m) for c, m in self._metrics(Verdict.UNCHANGED) if m.note]

    def with_status(self, status: str) -> list[CellComparison]:
        return [c for c in self.cells if c.status == status]

    @property
    def n_failing(self) -> int:
        """Failing checks: gating regressed metrics plus newly failed cells."""
        return sum(m.fails for c in self.cells for m in c.metrics) + sum(
            c.status == FAILED and c.fails for c in self.cells
        )

    @property
    def exit_code(self) -> int:
        """``EXIT_REGRESSION`` (1) when any check fails the build, else ``EXIT_OK`` (0)."""
        return EXIT_REGRESSION if any(c.fails for c in self.cells) else EXIT_OK

    def summary(self) -> str:
        """One line: the outcome first, then the counts."""
        n_reg = len([1 for _, m in self.regressions if m.fails])
        n_newly_failed = len([c for c in self.with_status(FAILED) if c.fails])
        if self.exit_code:
            head = f"FAIL: {n_reg} regression{'s' * (n_reg != 1)}"
            if n_newly_failed:
                head += f", {n_newly_failed} newly failing cell{'s' * (n_newly_failed != 1)}"
        elif self.env_blocked:
            head = "NOT COMPARABLE (environment changed; nothing fails)"
        else:
            head = "OK: no regression"
        counts = [
            f"{len(self.with_status(COMPARED))} cells compared",
            f"{len(self.regressions)} regressed",
            f"{len(self.improvements)} improved",
            f"{len(self.noisy)} too noisy",
            f"{len(self.with_status(ADDED))} added",
            f"{len(self.with_status(REMOVED))} removed",
            f"{len(self.with_status(FAILED))} failed",
        ]
        return f"{head} -- " + ", ".join(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "aigc-bench/comparison",
            "summary": self.summary(),
            "exit_code": self.exit_code,
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "thresholds": [
                {"metric": t.metric, "value": t.value, "unit": t.unit, "gating": t.gating} for t in self.thresholds
            ],
            "alpha": self.alpha,
            "correction": self.correction,
            "env_changes": [{"field": e.field, "baseline": e.baseline, "current": e.current} for e in self.env_changes],
            "allow_env_change": self.allow_env_change,
            "env_blocked": self.env_blocked,
            "counts": {
                "compared": len(self.with_status(COMPARED)),
                "regressed": len(self.regressions),
                "failing": self.n_failing,
                "improved": len(self.improvements),
                "too_noisy": len(self.noisy),
                "added": len(self.with_status(ADDED)),
                "removed": len(self.with_status(REMOVED)),
                "failed": len(self.with_status(FAILED)),
            },
            "notes": list(self.notes),
            "cells": [c.to_dict() for c in self.cells],
        }


def _num(x: Any) -> Any:
    """JSON-safe number: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- comparing


def env_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[EnvChange, ...]:
    """The ``COMPARABLE`` environment fields that differ."""
    return tuple(EnvChange(f, baseline.get(f), current.get(f)) for f in COMPARABLE if baseline.get(f) != current.get(f))


def allocator_changes(baseline: RunSet, current: RunSet) -> tuple[EnvChange, ...]:
    """The malloc regime its latency was measured under (``latency_malloc``; ``bench.allocator``), if it
    differs: steady vs system malloc is up to 20% on some models, so it blocks like a change of machine."""
    from bench.allocator import regime_of

    def regimes(side: RunSet) -> str | None:
        col = side.frame["latency_malloc"] if "latency_malloc" in side.frame.columns else ()
        found = sorted({r for r in map(regime_of, col) if r is not None})
        return "+".join(found) or None  # None: no latency measured, or too old to say

    b, c = regimes(baseline), regimes(current)
    return (EnvChange("allocator", b, c),) if b and c and b != c else ()


def _clean(v: Any) -> Any:
    """A frame value as a plain Python value: NaN -> None, whole floats -> int."""
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return int(v) if v.is_integer() else v
    if hasattr(v, "item"):  # numpy scalars
        return _clean(v.item())
    return v


def row_key(row: Mapping[str, Any]) -> CellKey:
    """The ``CellKey`` of a ``load_results`` row."""
    d = {f: _clean(row.get(f)) for f in KEY_FIELDS}
    d["mode"] = d["mode"] or "infer"
    return CellKey.from_dict(d)


def _value(row: Mapping[str, Any], column: str) -> float | None:
    v = _clean(row.get(column))
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _rel_change(b: float, c: float) -> float | None:
    if b == 0:
        return 0.0 if c == 0 else None
    return (c - b) / abs(b) * 100.0


def _direction(spec: MetricSpec, change: float) -> Verdict:
    worse = change > 0 if spec.higher_is_worse else change < 0
    return Verdict.REGRESSED if worse else Verdict.IMPROVED


def _compare_single(
    spec: MetricSpec, th: Threshold, b: float, c: float, env_changed: bool, floor: float = 0.0
) -> MetricComparison:
    """Memory and exact counts: the threshold alone decides (memory: also beyond an absolute noise ``floor``)."""
    change = _rel_change(b, c)
    if spec.kind == "exact":
        method = "exact count"
        if change is None or th.exceeded_by(change):
            # Either direction: a fixed model whose count moves is a changed model or counter.
            verdict = Verdict.REGRESSED
        else:
            verdict = Verdict.UNCHANGED
        note = f"{spec.name} changed by {c - b:+,.0f}" if c != b else None
    else:
        method = "threshold only (single measurement, no significance test)"
        note = "baseline is 0: relative change undefined" if change is None else None
        beyond = change is not None and th.exceeded_by(change)
        if beyond and abs(c - b) <= floor:
            beyond, note = False, f"{c - b:+.1f} {spec.unit} is within the {floor:g} {spec.unit} noise of CPU RSS"
        if floor:
            method += f"; CPU RSS: changes within {floor:g} {spec.unit} are noise"
        verdict = _direction(spec, change) if beyond and change is not None else Verdict.UNCHANGED
    return MetricComparison(spec.name, b, c, change, verdict, th, method, env_changed=env_changed, note=note)


def _rss_based(key: CellKey, *rows: Mapping[str, Any]) -> bool:
    """Whether a cell's peak memory was rebuilt from the process RSS (CPU) rather than read from an allocator."""
    methods = [_clean(r.get("memory_method")) for r in rows]
    if all(m is None for m in methods):
        return key.device == "cpu"
    return any(str(m).startswith("rss") for m in methods if m is not None)


def _accuracy_halfwidth(row: Mapping[str, Any], scale: float) -> float | None:
    lo, hi = _value(row, "accuracy_ci_low"), _value(row, "accuracy_ci_high")
    if lo is not None and hi is not None:
        return (hi - lo) / 2 * scale
    half = _value(row, "accuracy_ci95")
    return half * scale if half is not None else None


def _compare_accuracy(th: Threshold, b_raw: float, c_raw: float, brow: Mapping[str, Any], crow: Mapping[str, Any],
                      env_changed: bool) -> MetricComparison:  # fmt: skip
    # Accuracy may be stored as a fraction (0..1) or in percent; it is shown and judged in points.
    scale = 100.0 if all(abs(x) <= 1.0 for x in (b_raw, c_raw)) else 1.0
    b, c = b_raw * scale, c_raw * scale
    diff = c - b
    hb, hc = _accuracy_halfwidth(brow, scale), _accuracy_halfwidth(crow, scale)
    ci = None
    if hb is not None and hc is not None:
        half = math.hypot(hb, hc)  # CI of a difference of two independent estimates
        ci = (diff - half, diff + half)
        method = "threshold in points and CI of the difference"
    else:
        method = "threshold in points (no CI stored)"
    if not th.exceeded_by(diff):
        verdict = Verdict.UNCHANGED
    elif ci is not None and ci[0] <= 0 <= ci[1]:
        verdict = Verdict.NOISY
    else:
        verdict = _direction(METRICS["accuracy"], diff)
    return MetricComparison("accuracy", b, c, diff, verdict, th, method, ci=ci, env_changed=env_changed)


def _samples(row: Mapping[str, Any], column: str) -> list[float]:
    v = row.get(column)
    return [float(x) for x in v] if isinstance(v, list | tuple) else []


def speed_refs(brow: Mapping[str, Any], crow: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """Both sides' machine-speed reference samples when they timed the same workload, else None."""
    rb, rc = _samples(brow, "speed_ref_ms_samples"), _samples(crow, "speed_ref_ms_samples")
    kb, kc = _clean(brow.get("speed_ref_kind")), _clean(crow.get("speed_ref_kind"))
    return (rb, rc) if rb and rc and kb is not None and kb == kc else None


def _latency_pending(th: Threshold, brow: Mapping[str, Any], crow: Mapping[str, Any], key: CellKey, alpha: float,
                     n_boot: int, seed: int, adjust: bool) -> tuple[MetricComparison | None, SampleShift | None]:  # fmt: skip
    """Latency before the multiple-testing correction: the test, or (no raw samples) a verdict that cannot fail.

    ``adjust``: also judge the change relative to the machine-speed reference, when both sides have one of
    the same kind.
    """
    bs, cs = _samples(brow, "latency_samples"), _samples(crow, "latency_samples")
    if bs and cs:
        refs = speed_refs(brow, crow) if adjust else None
        # Even 1 or 2 samples go through the test: it then cannot be significant, which is the honest
        # answer ("too noisy"); a threshold-only verdict would turn one slow sample into a failure.
        return None, sample_shift(bs, cs, alpha=alpha, n_boot=n_boot, seed=cell_seed(key.id, seed),
                                  ref_baseline=refs[0] if refs else None, ref_current=refs[1] if refs else None)  # fmt: skip
    b, c = _value(brow, "latency_p50_ms"), _value(crow, "latency_p50_ms")
    if b is None or c is None:
        return None, None
    change = _rel_change(b, c)
    beyond = change is None or th.exceeded_by(change)
    mc = MetricComparison("latency", b, c, change, Verdict.NOISY if beyond else Verdict.UNCHANGED, th,
                          "no raw samples stored: the noise cannot be judged", n_baseline=len(bs),
                          n_current=len(cs))  # fmt: skip
    return mc, None


def min_p_value(n_baseline: int, n_current: int) -> float:
    """The smallest two-sided Mann-Whitney p-value possible with these sample counts (complete separation)."""
    if n_baseline + n_current <= 1000:
        return min(1.0, 2.0 / math.comb(n_baseline + n_current, n_baseline))
    # 2 / C(nb + nc, nb) in logs: the binomial itself takes seconds to build for large counts and overflows
    # a float beyond about 1030 samples in all (OverflowError).
    log_comb = math.lgamma(n_baseline + n_current + 1) - math.lgamma(n_baseline + 1) - math.lgamma(n_current + 1)
    return min(1.0, 2.0 * math.exp(-log_comb))


def _latency_verdict(
    th: Threshold,
    shift: SampleShift,
    p_adj: float,
    alpha: float,
    env_changed: bool,
    correction: str,
    family: int,
    speed_drift: float = 0.0,
) -> MetricComparison:
    """One latency verdict from the test (``p_adj``: its corrected ``p_both``) and the threshold.

    ``speed_drift``: the larger |after/before - 1| of the two sides' machine-speed references. With a
    reference, the change relative to the machine can veto a verdict (it must also be beyond the
    threshold, in the same direction, and significant) but never makes one.
    """
    change = (shift.ratio - 1.0) * 100.0
    machine = None if shift.machine_ratio is None else (shift.machine_ratio - 1.0) * 100.0
    # How far a model may stray from the reference when the machine's speed moved (SPEED_SENSITIVITY).
    band = 0.0 if shift.speed_factor is None else SPEED_SENSITIVITY * abs(shift.speed_factor - 1.0) * 100.0
    cis = [(shift.ci_low, shift.ci_high)] + ([shift.machine_ci] if shift.machine_ci else [])
    significant = p_adj < alpha and not any(lo <= 1.0 <= hi for lo, hi in cis)
    note = None
    if not th.exceeded_by(change):
        verdict = Verdict.UNCHANGED  # whatever the p-value: smaller than anyone cares about
    elif machine is not None and not (th.exceeded_by(machine) and (machine > 0) == (change > 0)):
        verdict = Verdict.UNCHANGED
        note = "the machine's, not the code's: not beyond the threshold relative to the machine-speed reference"
    elif machine is not None and abs(machine) <= th.value + band:
        verdict = Verdict.NOISY
        note = (f"the machine's speed changed x{shift.speed_factor:.3f}, and models follow it only roughly: a change "
                f"relative to it must exceed {th.value + band:.1f}% to tell; rerun on a steady machine")  # fmt: skip
    elif significant and speed_drift > UNSTABLE_SPEED_DRIFT:
        verdict = Verdict.NOISY
        note = (f"the machine changed speed during a measurement (reference moved {speed_drift:.0%}, over "
                f"{UNSTABLE_SPEED_DRIFT:.0%}): rerun on a quiet machine")  # fmt: skip
    elif significant and shift.unstable:
        verdict = Verdict.NOISY
        note = (f"unstable measurement (IQR/median {shift.spread_baseline:.2f} baseline, {shift.spread_current:.2f} "
                f"current; over {UNSTABLE_IQR_OVER_MEDIAN:g}): rerun on a quiet machine")  # fmt: skip
    elif significant:
        verdict = _direction(METRICS["latency"], change)
    else:
        verdict = Verdict.NOISY
        # Say when no outcome could have been significant: too few samples, not a noisy machine.
        floor = min_p_value(shift.n_baseline, shift.n_current) * (family if correction == "holm" else 1)
        if floor >= alpha:
            note = (f"only {shift.n_baseline}/{shift.n_current} samples: no test can reach alpha {alpha:g} "
                    f"(best corrected p {min(1.0, floor):.2g}); use a profile that takes more samples")  # fmt: skip
    method = f"Mann-Whitney U ({correction}-corrected) + bootstrap CI of the median ratio"
    if shift.speed_factor is not None:
        method += "; the change relative to the machine-speed reference must agree"
    return MetricComparison("latency", None, None, change, verdict, th, method, p_value=shift.p_value, p_adjusted=p_adj,
                            ci=(shift.ci_low, shift.ci_high), n_baseline=shift.n_baseline, n_current=shift.n_current,
                            env_changed=env_changed, note=note, speed_factor=shift.speed_factor,
                            machine_change=machine)  # fmt: skip


def _rows_by_key(rs: RunSet) -> dict[CellKey, dict[str, Any]]:
    out: dict[CellKey, dict[str, Any]] = {}
    for row in rs.frame.to_dict("records"):
        key = row_key(row)
        if key in out:
            raise UsageError(
                f"cell {key.id} appears twice in {rs.info.label} ({out[key].get('path')} and {row.get('path')}); "
                "merge shards with `aigc-bench merge` or name one run file"
            )
        out[key] = row
    return out


def compare(
    baseline: RunSet,
    current: RunSet,
    *,
    thresholds: Sequence[Threshold] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    allow_env_change: bool = False,
    speed_adjust: bool = True,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> ComparisonReport:
    """Compare every cell of ``current`` with the same cell (join key) of ``baseline``.

    ``speed_adjust``: judge latency relative to the machine-speed reference (see the module docstring);
    applied only where the environments match.
    """
    import numpy as np

    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r}; valid choices: {', '.join(CORRECTIONS)}")
    ths = {t.metric: t for t in (thresholds or parse_fail_on(None))}
    for name, spec in METRICS.items():
        ths.setdefault(name, Threshold(name, spec.default, spec.threshold_unit, gating=False))
    changes = env_changes(baseline.env, current.env) + allocator_changes(baseline, current)
    env_changed = bool(changes) and not allow_env_change
    # Across an environment change the reference moves with the change (1 thread makes it slower too),
    # so letting it veto would hide exactly what changed: use it on the same environment only.
    adjust = speed_adjust and not changes
    brows, crows = _rows_by_key(baseline), _rows_by_key(current)

    cells: dict[CellKey, CellComparison] = {}
    pending: dict[CellKey, list[MetricComparison]] = {}
    shifts: list[tuple[CellKey, SampleShift, float, float, float]] = []  # key, shift, medians, speed drift
    for key in sorted(set(brows) | set(crows), key=lambda k: k.id):
        b, c = brows.get(key), crows.get(key)
        if b is None or c is None:
            status, row = (ADDED, c) if b is None else (REMOVED, b)
            cells[key] = CellComparison(key, status, b["status"] if b else None, c["status"] if c else None,
                                        error=_clean(row.get("error")) if row else None)  # fmt: skip
            continue
        bst, cst = b["status"], c["status"]
        if cst in ("failed", "timeout"):
            cells[key] = CellComparison(key, FAILED, bst, cst, error=_clean(c.get("error")), env_changed=env_changed)
            continue
        if bst != "ok" or cst != "ok":
            why = f"baseline {bst}, current {cst}"
            error = _clean(c.get("error")) or _clean(b.get("error"))
            cells[key] = CellComparison(key, NOT_COMPARED, bst, cst, error=error, notes=(why,))
            continue
        metrics: list[MetricComparison] = []
        notes: list[str] = []
        for name, spec in METRICS.items():
            bv, cv = _value(b, spec.column), _value(c, spec.column)
            if bv is None or cv is None:
                if (bv is None) != (cv is None):
                    notes.append(f"{name} only in {'baseline' if cv is None else 'current'}")
                continue
            if spec.kind == "sampled":
                mc, shift = _latency_pending(ths[name], b, c, key, alpha, n_boot, seed, adjust)
                if mc is not None:
                    metrics.append(replace(mc, env_changed=env_changed))
                elif shift is not None:
                    bmed = float(np.median(b["latency_samples"]))
                    cmed = float(np.median(c["latency_samples"]))
                    drift = max(abs(_value(r, "speed_ref_drift") or 0.0) for r in (b, c))
                    shifts.append((key, shift, bmed, cmed, drift))
            elif spec.kind == "points":
                metrics.append(_compare_accuracy(ths[name], bv, cv, b, c, env_changed))
            else:
                floor = RSS_NOISE_FLOOR_MB if name == "memory" and _rss_based(key, b, c) else 0.0
                metrics.append(_compare_single(spec, ths[name], bv, cv, env_changed, floor))
        pending[key] = metrics
        cells[key] = CellComparison(key, COMPARED, bst, cst, env_changed=env_changed, notes=tuple(notes))

    # One family of tests: every latency comparison of this report.
    adjusted = adjust_pvalues([s.p_both for _, s, _, _, _ in shifts], correction)
    for (key, shift, bmed, cmed, drift), p_adj in zip(shifts, adjusted, strict=True):
        mc = _latency_verdict(ths["latency"], shift, p_adj, alpha, env_changed, correction, len(shifts), drift)
        pending[key].insert(0, replace(mc, baseline=bmed, current=cmed))
    order = list(METRICS)
    final = []
    for key, cell in cells.items():
        ms = tuple(sorted(pending.get(key, ()), key=lambda m: order.index(m.metric)))
        final.append(replace(cell, metrics=ms))

    notes = _side_notes(baseline, current) + _speed_notes([s for _, s, _, _, _ in shifts], speed_adjust, changes)
    return ComparisonReport(baseline.info, current.info, tuple(ths[n] for n in METRICS), alpha, correction, changes,
                            allow_env_change, tuple(final), tuple(notes))  # fmt: skip


def _speed_notes(shifts: Sequence[SampleShift], speed_adjust: bool, changes: Sequence[EnvChange]) -> list[str]:
    """What the machine-speed reference said, for the top of the report."""
    factors = sorted(s.speed_factor for s in shifts if s.speed_factor is not None)
    if not shifts:
        return []
    if not speed_adjust:
        return ["latency not adjusted for machine speed (--no-speed-adjust)"]
    if changes:
        return ["latency not adjusted for machine speed: the environment changed, and the reference moves with it"]
    if not factors:
        return ["latency not adjusted for machine speed: the runs carry no machine-speed reference of the same kind"]
    med = statistics.median(factors)
    how = "slower" if med > 1 else "faster"
    text = (f"machine speed: the reference ran {abs(med - 1):.1%} {how} in current (median of {len(factors)} "
            f"cells, range x{factors[0]:.3f}-x{factors[-1]:.3f}); a latency change counts only if it also holds "
            "relative to it")  # fmt: skip
    if len(factors) < len(shifts):
        text += f"; {len(shifts) - len(factors)} cells without a reference are not adjusted"
    return [text]


def _side_notes(baseline: RunSet, current: RunSet) -> list[str]:
    notes = []
    if set(baseline.info.suite_hashes) != set(current.info.suite_hashes):
        notes.append(
            "the suite definition changed (suite_hash "
            f"{', '.join(baseline.info.suite_hashes)} -> {', '.join(current.info.suite_hashes)}): cells are joined on their key"
        )
    if set(baseline.info.profiles) != set(current.info.profiles):
        notes.append(f"profiles differ ({', '.join(baseline.info.profiles)} -> {', '.join(current.info.profiles)})")
    return notes


# --------------------------------------------------------------------------- loading a side


def load_side(spec: str | Path, baselines_dir: Path | str | None = None) -> RunSet:
    """A run file, a folder of run files, or (where no such path exists) a baseline name.

    Every file is read and validated once (``bench.store.load_runs``): a malformed one, even in a
    folder, is a ``StoreError`` (exit 2), never left out of the comparison.
    """
    from bench.baselines import DEFAULT_DIR, resolve
    from bench.store import load_runs, results_frame, show_path

    runs = load_runs(resolve(spec, baselines_dir or DEFAULT_DIR))
    if not runs:
        raise UsageError(f"{show_path(spec)}: no aigc-bench run files found")
    paths = [p for p, _ in runs]
    docs = [d for _, d in runs]
    frame = results_frame(runs)
    envs = [d.get("env") or {} for d in docs]
    info = RunInfo(
        label=str(spec),
        paths=tuple(str(p) for p in paths),
        run_ids=tuple(d["run_id"] for d in docs),
        suites=tuple(sorted({d["suite"] for d in docs})),
        profiles=tuple(sorted({d["profile"] for d in docs})),
        suite_hashes=tuple(sorted({d["suite_hash"] for d in docs})),
        host=envs[0].get("host"),
        started_at=min((d.get("started_at") or "" for d in docs), default=None) or None,
    )
    return RunSet(info, envs[0], frame)


# --------------------------------------------------------------------------- rendering (strings, no I/O)


def format_value(metric: str, v: float | None) -> str:
    """A metric value for people: ``31.20 ms``, ``4.089 G``, ``25.56 M``, ``93.1 pt``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if metric == "latency":
        return f"{v:.3g} ms" if v < 1 else f"{v:.2f} ms"
    if metric == "memory":
        return f"{v:.1f} MB"
    if metric in ("macs", "params"):
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return f"{v / div:.4g} {suffix}"
        return f"{v:.0f}"
    return f"{v:.2f} pt"


def format_change(m: MetricComparison) -> str:
    """``+10.2%``, ``-1.50 pt``; exact counts that moved by less than 0.05% show the count (``+64``)."""
    if m.change is None:
        return "n/a"
    if m.change == 0:
        return "0"
    if METRICS[m.metric].kind == "exact" and abs(m.change) < 0.05 and m.baseline is not None and m.current is not None:
        return f"{m.current - m.baseline:+,.0f}"
    return f"{m.change:+.2f} pt" if m.threshold.unit == "pt" else f"{m.change:+.1f}%"


def verdict_text(m: MetricComparison) -> str:
    """The verdict plus why it cannot fail the build, when it cannot."""
    text = m.verdict.value if m.verdict is not Verdict.UNCHANGED else "~ unchanged"
    if m.verdict is Verdict.REGRESSED and not m.threshold.gating:
        text += " (not gating)"
    if m.env_changed and m.verdict is not Verdict.UNCHANGED:
        text += " (env changed)"
    return text


_MD_MARK = {Verdict.REGRESSED: "🔴", Verdict.IMPROVED: "🟢", Verdict.NOISY: "❔", Verdict.UNCHANGED: ""}


def cell_label(key: CellKey) -> str:
    """The cell id without the suite (every cell of a comparison shares it)."""
    return key.id.split("/", 1)[1]


def _md_escape(s: str) -> str:
    """Text from the files (errors, notes, run ids) as literal Markdown: no HTML, link, image, mention or cell."""
    from bench.report.escape import md_text

    return md_text(s)


def _md_code(s: str, in_table: bool = True) -> str:
    """A code span that no backtick inside can close early (``bench.report.escape.md_code``)."""
    from bench.report.escape import md_code

    return md_code(s, in_table)


def speed_text(m: MetricComparison) -> str | None:
    """``machine x1.152: +0.4% relative to it`` when the machine-speed reference moved by 0.5% or more."""
    if m.speed_factor is None or m.machine_change is None or abs(m.speed_factor - 1.0) < 0.005:
        return None
    return f"machine x{m.speed_factor:.3f}: {m.machine_change:+.1f}% relative to it"


def _md_stats(m: MetricComparison) -> str:
    parts = []
    if m.p_adjusted is not None:
        parts.append(f"p={m.p_adjusted:.2g}")
    if m.ci is not None:
        if m.metric == "latency":
            parts.append(f"ratio CI [{m.ci[0]:.3f}, {m.ci[1]:.3f}]")
        else:
            parts.append(f"CI [{m.ci[0]:+.2f}, {m.ci[1]:+.2f}] pt")
    if m.n_baseline is not None and m.n_current is not None:
        parts.append(f"n={m.n_baseline}/{m.n_current}")
    if speed := speed_text(m):
        parts.append(speed)
    if m.note:
        parts.append(m.note)
    return ", ".join(parts) or m.method


def to_markdown(report: ComparisonReport, *, max_cells: int = 400) -> str:
    """A pull-request comment: the summary line, the regressions and improvements, then every cell folded."""
    mark = "❌" if report.exit_code else ("⚠️" if report.env_blocked else "✅")
    lines = [f"{mark} **aigc-bench compare** -- {report.summary()}", ""]
    base, cur = report.baseline, report.current  # every string from the files or the user is escaped (a PR comment)
    lines.append(f"Baseline {_md_code(base.label, False)} ({_md_escape(', '.join(base.run_ids))}) vs current "
                 f"{_md_code(cur.label, False)} ({_md_escape(', '.join(cur.run_ids))}). "
                 f"Fail on: {_md_escape(', '.join(str(t) for t in report.thresholds if t.gating))}; "
                 f"alpha {report.alpha:g}, {_md_escape(report.correction)} correction.")  # fmt: skip
    if report.env_changes:
        what = "; ".join(_md_code(str(e), False) for e in report.env_changes)
        lines += ["", f"> **Environment changed** ({what}). "
                  + ("Verdicts are shown but nothing fails; pass `--allow-env-change` to gate anyway."
                     if report.env_blocked else "Compared anyway (`--allow-env-change`).")]  # fmt: skip
    for n in report.notes:
        lines += ["", f"> {_md_escape(n)}"]
    notable = report.regressions + report.improvements + report.noisy + report.explained
    if notable:
        lines += [
            "",
            "| cell | metric | baseline | current | change | verdict | evidence |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for c, m in notable:
            lines.append(f"| {_md_code(cell_label(c.key))} | {m.metric} | {format_value(m.metric, m.baseline)} | "
                         f"{format_value(m.metric, m.current)} | {format_change(m)} | {_MD_MARK[m.verdict]} "
                         f"{verdict_text(m)} | {_md_escape(_md_stats(m))} |")  # fmt: skip
    for status, title in (
        (FAILED, "Failed in current"),
        (ADDED, "Added (only in current)"),
        (REMOVED, "Removed (only in baseline)"),
    ):
        cs = report.with_status(status)
        if cs:
            lines += ["", f"**{title}** ({len(cs)}):"]
            lines += [
                f"- {_md_code(cell_label(c.key), False)}"
                + (f": {_md_escape(c.error)}" if c.error and status == FAILED else "")
                for c in cs
            ]
    lines += ["", f"<details><summary>All {len(report.cells)} cells</summary>", ""]
    lines += ["| cell | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for c in report.cells[:max_cells]:
        if c.status != COMPARED:
            lines.append(f"| {_md_code(cell_label(c.key))} | {c.status} |" + " |" * (len(METRICS) - 1))
            continue
        vals = []
        for name in METRICS:
            m = c.metric(name)
            vals.append("" if m is None else f"{format_change(m)} {_MD_MARK[m.verdict]}".strip())
        lines.append(f"| {_md_code(cell_label(c.key))} | " + " | ".join(vals) + " |")
    if len(report.cells) > max_cells:
        lines.append(f"\n{len(report.cells) - max_cells} more cells not shown (see the JSON output).")
    lines += ["", "</details>", ""]
    return "\n".join(lines)
