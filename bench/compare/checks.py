"""One check class per way of judging a metric (``MetricSpec.kind``): each turns one cell's pair of values
into a ``MetricComparison``.

A metric's kind is declared in the metric catalogue (``bench.catalogue.Judge``), so a new metric is judged by
one of these without touching compare.

* ``SampledCheck`` (latency) -- raw samples: Mann-Whitney U + bootstrap CI, judged relative to the
  machine-speed reference; its tests wait (``Pending``) for the multiple-testing correction over the
  whole report (``resolve``).
* ``ThresholdCheck`` (memory) -- one measurement per run: the threshold alone, beyond the CPU RSS noise.
* ``ExactCheck`` (macs, params) -- exact counts: any change beyond the threshold, either way, regresses.
* ``PointsCheck`` (accuracy) -- percentage points; a drop must also exceed the CI of the difference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from bench.compare.loading import _clean, _samples, _value
from bench.compare.model import EnvChange, MetricComparison, Verdict
from bench.compare.stats import (
    N_BOOTSTRAP,
    UNSTABLE_IQR_OVER_MEDIAN,
    SampleShift,
    cell_seed,
    min_p_value,
    sample_shift,
)
from bench.compare.thresholds import MetricSpec, Threshold
from bench.numbers import percent_scale
from bench.spec import CellKey
from bench.stats import UNSTEADY_SPEED_DRIFT

#: a machine-speed reference that moved more than this during one measurement: "too noisy".
UNSTABLE_SPEED_DRIFT = UNSTEADY_SPEED_DRIFT
#: How differently from the machine-speed reference a model may respond to the same change of machine
#: speed: across 20-25% slowdowns on the 2-core VM, models moved 0.55-1.5 times as much as the
#: reference (densenet121 +36% when the reference moved +23%). So when the reference moved by x%,
#: a change relative to it must exceed the threshold by SPEED_SENSITIVITY * x% before it can count;
#: inside that band it is "too noisy" -- the machine changed too much to tell.
SPEED_SENSITIVITY = 0.5


@dataclass(frozen=True)
class Judging:
    """The settings every check of one comparison shares."""

    alpha: float = 0.05
    correction: str = "holm"
    n_boot: int = N_BOOTSTRAP
    seed: int = 0
    speed_adjust: bool = True  # as asked (``--no-speed-adjust`` turns it off)
    env_changes: tuple[EnvChange, ...] = ()
    env_changed: bool = False  # the machines differ and that is not allowed: verdicts are marked, never fail

    @property
    def adjust(self) -> bool:
        """Judge latency relative to the machine-speed reference: asked for, and the environment is the same.

        Across an environment change the reference moves with the change (1 thread makes it slower
        too), so letting it veto would hide exactly what changed.
        """
        return self.speed_adjust and not self.env_changes


@dataclass(frozen=True)
class CellPair:
    """One cell that is ok on both sides: its key and both ``load_results`` rows."""

    key: CellKey
    baseline: Mapping[str, Any]
    current: Mapping[str, Any]


@dataclass(frozen=True)
class Pending:
    """A test that waits for the rest of the report (latency: the multiple-testing correction)."""

    key: CellKey
    shift: SampleShift
    baseline: float  # median of the samples
    current: float
    speed_drift: float  # the larger |after/before - 1| of the two sides' machine-speed references
    per_process: bool = False  # tested over per-process medians (``run --repeat``), not the pooled samples


@dataclass(frozen=True)
class Check:
    """How one metric is judged; ``judge`` sees the values of ``spec.column``, present on both sides."""

    kind: ClassVar[str]
    spec: MetricSpec
    threshold: Threshold
    judging: Judging

    def judge(self, pair: CellPair, b: float, c: float) -> MetricComparison | Pending | None:
        """A verdict, a test waiting for ``resolve``, or None (nothing to judge)."""
        raise NotImplementedError

    def resolve(self, pending: Sequence[Pending]) -> list[MetricComparison]:
        """The verdicts of every ``Pending`` this check returned, in their order, once all cells are judged."""
        return []

    def notes(self, pending: Sequence[Pending]) -> list[str]:
        """What the report should say about this metric as a whole."""
        return []

    def _result(self, b: float | None, c: float | None, change: float | None, verdict: Verdict, method: str,
                **kw: Any) -> MetricComparison:  # fmt: skip
        return MetricComparison(self.spec.name, b, c, change, verdict, self.threshold, method,
                                env_changed=self.judging.env_changed, **kw)  # fmt: skip

    def _direction(self, change: float) -> Verdict:
        worse = change > 0 if self.spec.higher_is_worse else change < 0
        return Verdict.REGRESSED if worse else Verdict.IMPROVED


def _rel_change(b: float, c: float) -> float | None:
    if b == 0:
        return 0.0 if c == 0 else None
    return (c - b) / abs(b) * 100.0


class ExactCheck(Check):
    """Exact counts (macs, params): a fixed model whose count moves is a changed model or counter."""

    kind = "exact"

    def judge(self, pair: CellPair, b: float, c: float) -> MetricComparison:
        change = _rel_change(b, c)
        # Either direction regresses: the baseline must be re-saved on purpose.
        regressed = change is None or self.threshold.exceeded_by(change)
        note = f"{self.spec.name} changed by {c - b:+,.0f}" if c != b else None
        return self._result(b, c, change, Verdict.REGRESSED if regressed else Verdict.UNCHANGED, "exact count",
                            note=note)  # fmt: skip


class ThresholdCheck(Check):
    """One measurement per run (memory): the threshold alone decides, beyond the CPU RSS noise floor."""

    kind = "threshold"

    def judge(self, pair: CellPair, b: float, c: float) -> MetricComparison:
        spec, floor = self.spec, self.noise_floor(pair)
        change = _rel_change(b, c)
        method = "threshold only (single measurement, no significance test)"
        note = "baseline is 0: relative change undefined" if change is None else None
        beyond = change is not None and self.threshold.exceeded_by(change)
        if beyond and abs(c - b) <= floor:
            beyond, note = False, f"{c - b:+.1f} {spec.unit} is within the {floor:g} {spec.unit} noise of CPU RSS"
        if floor:
            method += f"; CPU RSS: changes within {floor:g} {spec.unit} are noise"
        verdict = self._direction(change) if beyond and change is not None else Verdict.UNCHANGED
        return self._result(b, c, change, verdict, method, note=note)

    def noise_floor(self, pair: CellPair) -> float:
        """The spec's RSS noise floor when this cell's value was rebuilt from the process RSS, else 0."""
        return self.spec.rss_noise_floor if self.spec.rss_noise_floor and _rss_based(pair) else 0.0


def _rss_based(pair: CellPair) -> bool:
    """Whether a cell's peak memory was rebuilt from the process RSS (CPU) rather than read from an allocator."""
    methods = [_clean(r.get("memory_method")) for r in (pair.baseline, pair.current)]
    if all(m is None for m in methods):
        return pair.key.device == "cpu"
    return any(str(m).startswith("rss") for m in methods if m is not None)


class PointsCheck(Check):
    """Accuracy in percentage points: a change beyond the threshold must also exceed the CI of the difference."""

    kind = "points"

    def judge(self, pair: CellPair, b_raw: float, c_raw: float) -> MetricComparison:
        # Accuracy may be stored as a fraction (0..1) or in percent; it is shown and judged in points.
        scale = percent_scale((b_raw, c_raw))
        b, c = b_raw * scale, c_raw * scale
        diff = c - b
        col = self.spec.column
        hb, hc = _halfwidth(pair.baseline, scale, col), _halfwidth(pair.current, scale, col)
        ci = None
        if hb is not None and hc is not None:
            half = math.hypot(hb, hc)  # CI of a difference of two independent estimates
            ci = (diff - half, diff + half)
            method = "threshold in points and CI of the difference"
        else:
            method = "threshold in points (no CI stored)"
        if not self.threshold.exceeded_by(diff):
            verdict = Verdict.UNCHANGED
        elif ci is not None and ci[0] <= 0 <= ci[1]:
            verdict = Verdict.NOISY
        else:
            verdict = self._direction(diff)
        return self._result(b, c, diff, verdict, method, ci=ci)


def _halfwidth(row: Mapping[str, Any], scale: float, column: str) -> float | None:
    """Half-width of the 95% interval of ``column`` (``<base>_mean``): ``<base>_ci_low``/``_ci_high`` or ``<base>_ci95``."""
    base = column.removesuffix("_mean")
    lo, hi = _value(row, f"{base}_ci_low"), _value(row, f"{base}_ci_high")
    if lo is not None and hi is not None:
        return (hi - lo) / 2 * scale
    half = _value(row, f"{base}_ci95")
    return half * scale if half is not None else None


def speed_refs(brow: Mapping[str, Any], crow: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """Both sides' machine-speed reference samples when they timed the same workload, else None."""
    rb, rc = _samples(brow, "speed_ref_ms_samples"), _samples(crow, "speed_ref_ms_samples")
    kb, kc = _clean(brow.get("speed_ref_kind")), _clean(crow.get("speed_ref_kind"))
    return (rb, rc) if rb and rc and kb is not None and kb == kc else None


def process_medians(brow: Mapping[str, Any], crow: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """Both sides' per-process latency medians (``run --repeat``, ``bench.repeat``) when each has at least two
    processes, else None (the pooled samples are tested, as for runs without ``--repeat``)."""
    from bench.repeat import PROCESS_SAMPLES

    b, c = _samples(brow, f"{PROCESS_SAMPLES}_samples"), _samples(crow, f"{PROCESS_SAMPLES}_samples")
    return (b, c) if len(b) >= 2 and len(c) >= 2 else None


def process_refs(brow: Mapping[str, Any], crow: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """Both sides' per-process machine-speed reference medians, when both have them."""
    from bench.repeat import REF_PROCESS_SAMPLES

    b, c = _samples(brow, f"{REF_PROCESS_SAMPLES}_samples"), _samples(crow, f"{REF_PROCESS_SAMPLES}_samples")
    return (b, c) if b and c else None


def _detectable(shift: SampleShift, alpha: float, family: int) -> str:
    """How big a change these processes could tell, at their spread (``stats.detectable_change``)."""
    from bench.compare.stats import detectable_change

    spread = max(shift.spread_baseline, shift.spread_current)
    mde = detectable_change(spread, shift.n_baseline, shift.n_current, alpha / max(1, family))
    return (f"the processes' medians spread {spread:.0%} (IQR/median): {shift.n_baseline}/{shift.n_current} "
            f"processes tell a change of about {mde:.0f}% or more; for less, a steadier machine, a larger --repeat "
            "or --metric instructions")  # fmt: skip


def _steadiness(row: Mapping[str, Any], per_process: bool) -> float:
    """How far the machine-speed reference moved during a cell's measurement (0 when unknown).

    Tested over per-process medians, a cell is unsteady when its median process was (``bench.repeat``'s
    ``speed_ref_drift_median``), not when any one process was: that process is one value of K in the test.
    """
    from bench.repeat import judged_drift

    drift = judged_drift(row)[0] if per_process else _value(row, "speed_ref_drift")
    return drift or 0.0


class SampledCheck(Check):
    """Latency from the raw samples of both runs (see ``bench.compare``'s docstring for the whole rule)."""

    kind = "sampled"

    def judge(self, pair: CellPair, b: float, c: float) -> MetricComparison | Pending:
        """The test, waiting for the correction; without raw samples, a verdict that cannot fail."""
        import numpy as np

        column = self.spec.samples or "latency_samples"
        bs, cs = _samples(pair.baseline, column), _samples(pair.current, column)
        if not (bs and cs):
            change = _rel_change(b, c)
            beyond = change is None or self.threshold.exceeded_by(change)
            return self._result(b, c, change, Verdict.NOISY if beyond else Verdict.UNCHANGED,
                                "no raw samples stored: the noise cannot be judged", n_baseline=len(bs),
                                n_current=len(cs))  # fmt: skip
        j = self.judging
        refs = speed_refs(pair.baseline, pair.current) if j.adjust else None
        per_process = process_medians(pair.baseline, pair.current) if column == "latency_samples" else None
        if per_process is not None:  # run --repeat: one value per process, so a per-process shift counts once
            bs, cs = per_process
            refs = process_refs(pair.baseline, pair.current) if refs else None
        # Even 1 or 2 samples go through the test: it then cannot be significant, which is the honest
        # answer ("too noisy"); a threshold-only verdict would turn one slow sample into a failure.
        shift = sample_shift(bs, cs, alpha=j.alpha, n_boot=j.n_boot, seed=cell_seed(pair.key.id, j.seed),
                             ref_baseline=refs[0] if refs else None, ref_current=refs[1] if refs else None)  # fmt: skip
        drift = max(abs(_steadiness(r, per_process is not None)) for r in (pair.baseline, pair.current))
        return Pending(pair.key, shift, float(np.median(bs)), float(np.median(cs)), drift, per_process is not None)

    def resolve(self, pending: Sequence[Pending]) -> list[MetricComparison]:
        """One family of tests: every latency comparison of the report, corrected together."""
        from bench.compare.stats import adjust_pvalues

        adjusted = adjust_pvalues([p.shift.p_both for p in pending], self.judging.correction)
        out = []
        for p, p_adj in zip(pending, adjusted, strict=True):
            m = replace(self._verdict(p.shift, p_adj, len(pending), p.speed_drift, p.per_process),
                        baseline=p.baseline, current=p.current)  # fmt: skip
            out.append(m)
        return out

    def _verdict(self, shift: SampleShift, p_adj: float, family: int, speed_drift: float,
                 per_process: bool = False) -> MetricComparison:  # fmt: skip
        """One latency verdict from the test (``p_adj``: its corrected ``p_both``) and the threshold.

        With a reference, the change relative to the machine can veto a verdict (it must also be beyond
        the threshold, in the same direction, and significant) but never makes one.
        """
        th, alpha, correction = self.threshold, self.judging.alpha, self.judging.correction
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
            note = (f"the machine's speed changed x{shift.speed_factor:.3f}, and models follow it only roughly: a "
                    f"change relative to it must exceed {th.value + band:.1f}% to tell; rerun on a steady machine")  # fmt: skip
        elif significant and speed_drift > UNSTABLE_SPEED_DRIFT:
            verdict = Verdict.NOISY
            note = (f"the machine changed speed during a measurement (reference moved {speed_drift:.0%}, over "
                    f"{UNSTABLE_SPEED_DRIFT:.0%}): rerun on a quiet machine")  # fmt: skip
        elif significant and shift.unstable:
            verdict = Verdict.NOISY
            note = (f"unstable measurement (IQR/median {shift.spread_baseline:.2f} baseline, "
                    f"{shift.spread_current:.2f} current; over {UNSTABLE_IQR_OVER_MEDIAN:g}): rerun on a quiet machine")  # fmt: skip
        elif significant:
            verdict = self._direction(change)
        else:
            verdict = Verdict.NOISY
            # Say when no outcome could have been significant: too few samples, not a noisy machine.
            floor = min_p_value(shift.n_baseline, shift.n_current) * (family if correction == "holm" else 1)
            if floor >= alpha:
                what, fix = ("processes", "run with a larger --repeat") if per_process else (
                    "samples", "use a profile that takes more samples")  # fmt: skip
                note = (f"only {shift.n_baseline}/{shift.n_current} {what}: no test can reach alpha {alpha:g} "
                        f"(best corrected p {min(1.0, floor):.2g}); {fix}")  # fmt: skip
        if per_process and verdict is Verdict.NOISY and th.exceeded_by(change):
            note = f"{note}; {_detectable(shift, alpha, family)}" if note else _detectable(shift, alpha, family)
        method = f"Mann-Whitney U ({correction}-corrected) + bootstrap CI of the median ratio"
        if per_process:
            method += f" over per-process medians ({shift.n_baseline}/{shift.n_current} processes)"
        if shift.speed_factor is not None:
            method += "; the change relative to the machine-speed reference must agree"
        return self._result(None, None, change, verdict, method, p_value=shift.p_value, p_adjusted=p_adj,
                            ci=(shift.ci_low, shift.ci_high), n_baseline=shift.n_baseline, n_current=shift.n_current,
                            note=note, speed_factor=shift.speed_factor, machine_change=machine)  # fmt: skip

    def notes(self, pending: Sequence[Pending]) -> list[str]:
        """What the machine-speed reference said, for the top of the report."""
        shifts = [p.shift for p in pending]
        factors = sorted(s.speed_factor for s in shifts if s.speed_factor is not None)
        if not shifts:
            return []
        if not self.judging.speed_adjust:
            return ["latency not adjusted for machine speed (--no-speed-adjust)"]
        if self.judging.env_changes:
            return ["latency not adjusted for machine speed: the environment changed, and the reference moves with it"]
        if not factors:
            return [
                "latency not adjusted for machine speed: the runs carry no machine-speed reference of the same kind"
            ]
        med = statistics.median(factors)
        how = "slower" if med > 1 else "faster"
        text = (f"machine speed: the reference ran {abs(med - 1):.1%} {how} in current (median of {len(factors)} "
                f"cells, range x{factors[0]:.3f}-x{factors[-1]:.3f}); a latency change counts only if it also holds "
                "relative to it")  # fmt: skip
        if len(factors) < len(shifts):
            text += f"; {len(shifts) - len(factors)} cells without a reference are not adjusted"
        return [text]


#: ``MetricSpec.kind`` -> the check that judges it
CHECKS: dict[str, type[Check]] = {c.kind: c for c in (SampledCheck, ThresholdCheck, ExactCheck, PointsCheck)}


def check_for(spec: MetricSpec, threshold: Threshold, judging: Judging) -> Check:
    """The check that judges ``spec`` with this threshold and these settings."""
    return CHECKS[spec.kind](spec, threshold, judging)
