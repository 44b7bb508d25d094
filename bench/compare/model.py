"""The verdict model of ``compare``: frozen values that know their verdicts, ``to_dict()`` and ``exit_code``.

Comparison is data (pytest-benchmark's ``RegressionCheck`` idea): a ``ComparisonReport`` holds one
``CellComparison`` per join key, each with one ``MetricComparison`` per metric; renderers only read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bench.compare.thresholds import METRICS, Threshold
from bench.errors import EXIT_OK, EXIT_REGRESSION
from bench.numbers import finite
from bench.result import Status
from bench.spec import CellKey


class Verdict(str, Enum):
    """What happened to one metric of one cell."""

    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NOISY = "too noisy"

    def __str__(self) -> str:
        return self.value


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
        newly_failed = self.status == FAILED and self.baseline_status == Status.OK and not self.env_changed
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
    """One side of a comparison: its cells as ``load_results`` rows (``CellResult.row``), env and origin.

    compare reads the rows as they are; ``frame`` builds the pandas frame only for a caller that wants one.
    """

    info: RunInfo
    env: Mapping[str, Any]
    rows: tuple[Mapping[str, Any], ...] = field(repr=False)

    @property
    def frame(self) -> Any:  # -> pandas.DataFrame, as ``bench.store.load_results`` returns it
        from bench.store import frame_of_rows

        return frame_of_rows(self.rows)


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


def _num(x: Any) -> float | None:
    """JSON-safe number: NaN and infinities become None (``bench.numbers.finite``)."""
    return finite(x)
