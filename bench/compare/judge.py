"""``compare``: join two sides cell by cell and let each metric's check give its verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bench.compare.checks import CellPair, Check, Judging, Pending, check_for
from bench.compare.hosts import mark_host_changes
from bench.compare.loading import _clean, _rows_by_key, _value, allocator_changes, env_changes
from bench.compare.model import (
    ADDED,
    COMPARED,
    FAILED,
    NOT_COMPARED,
    REMOVED,
    CellComparison,
    ComparisonReport,
    MetricComparison,
    RunSet,
)
from bench.compare.stats import CORRECTIONS, N_BOOTSTRAP
from bench.compare.thresholds import METRICS, Threshold, parse_fail_on
from bench.errors import UsageError
from bench.result import Status
from bench.spec import CellKey


def compare(
    baseline: RunSet,
    current: RunSet,
    *,
    thresholds: Sequence[Threshold] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    allow_env_change: bool = False,
    allow_execution_change: bool = False,
    allow_host_change: bool = False,
    speed_adjust: bool = True,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> ComparisonReport:
    """Compare every cell of ``current`` with the same cell (join key) of ``baseline``.

    ``speed_adjust``: judge latency relative to the machine-speed reference (see ``bench.compare``);
    applied only where the environments match. Cells join on their whole key, execution included; two sides
    that share no execution (eager against compile) are refused (``UsageError``, exit 2) unless
    ``allow_execution_change``, which judges the current side's one execution against the baseline's one.
    A cell measured on different hosts on the two sides (Ray records' ``host_env``) has its machine-dependent
    verdicts marked, never failing, unless ``allow_host_change`` (``bench.compare.hosts``).
    """
    _check_settings(alpha, correction)
    ths = _thresholds(thresholds, baseline, current)
    changes = env_changes(baseline.env, current.env) + allocator_changes(baseline, current)
    judging = Judging(alpha, correction, n_boot, seed, speed_adjust, changes, bool(changes) and not allow_env_change)
    checks = [check_for(METRICS[name], th, judging) for name, th in ths.items()]
    brows, crows = _rows_by_key(baseline), _rows_by_key(current)
    brows, execution_note = _match_executions(brows, crows, allow_execution_change)
    keys = sorted(set(brows) | set(crows), key=lambda k: k.id)
    cells, check_notes = _judge_cells([_cell(k, brows.get(k), crows.get(k), judging.env_changed) for k in keys],
                                      brows, crows, checks)  # fmt: skip
    cells, host_notes = mark_host_changes(cells, brows, crows, allow_host_change)
    notes = _side_notes(baseline, current) + execution_note + check_notes + host_notes
    return ComparisonReport(baseline.info, current.info, tuple(ths.values()), alpha, correction, changes,
                            allow_env_change, cells, tuple(notes))  # fmt: skip


def _match_executions(
    brows: dict[CellKey, Any], crows: Mapping[CellKey, Any], allow: bool
) -> tuple[dict[CellKey, Any], list[str]]:
    """The baseline's rows keyed for the join, and a note when executions were judged against each other.

    Sides that share an execution join as they are (cells of other executions are added or removed). Sides
    that share none are refused unless ``allow``: then each must hold one execution, and the baseline's cells
    are judged as if they had the current one.
    """
    b = sorted({k.execution for k in brows})
    c = sorted({k.execution for k in crows})
    if not b or not c or set(b) & set(c):
        return brows, []
    if not allow:
        raise UsageError(f"the baseline ran execution {'+'.join(b) if len(b) == 1 else ', '.join(b)} and the current "
                         f"run {', '.join(c)}: compare judges cells of the same execution only (pass "
                         "--allow-execution-change to judge one against the other)")  # fmt: skip
    if len(b) > 1 or len(c) > 1:
        raise UsageError(f"--allow-execution-change judges one execution against one; the baseline has {', '.join(b)}"
                         f" and the current run {', '.join(c)} (select one with `aigc-bench run --execution`)")  # fmt: skip
    return {replace(k, execution=c[0]): v for k, v in brows.items()}, [
        f"execution changed: the baseline's {b[0]} cells are judged against the current {c[0]} cells "
        "(--allow-execution-change)"
    ]


def _check_settings(alpha: float, correction: str) -> None:
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r}; valid choices: {', '.join(CORRECTIONS)}")


def _thresholds(given: Sequence[Threshold] | None, *sides: RunSet) -> dict[str, Threshold]:
    """One threshold per metric, in ``METRICS`` order: the given ones, the default (not gating) for the rest.

    An optional metric (``instructions``) not named as gating is left out unless a side measured it.
    """
    named = {t.metric: t for t in (given or parse_fail_on(None))}
    out = {n: named.get(n) or Threshold(n, s.default, s.threshold_unit, gating=False) for n, s in METRICS.items()}
    return {n: t for n, t in out.items() if not METRICS[n].optional or t.gating or _measured(METRICS[n].column, sides)}


def _measured(column: str, sides: Sequence[RunSet]) -> bool:
    return any(_value(row, column) is not None for side in sides for row in side.rows)


def _judge_cells(
    cells: Sequence[CellComparison],
    brows: Mapping[CellKey, Mapping[str, Any]],
    crows: Mapping[CellKey, Mapping[str, Any]],
    checks: Sequence[Check],
) -> tuple[tuple[CellComparison, ...], list[str]]:
    """Run every check on every compared cell, then resolve the tests that wait for all cells (the correction).

    Returns the cells with their metrics (in ``METRICS`` order) and the checks' notes for the report.
    """
    waiting: list[list[Pending]] = [[] for _ in checks]
    judged: dict[CellKey, list[MetricComparison]] = {}
    out = []
    for cell in cells:
        if cell.status == COMPARED:
            judged[cell.key], notes = _judge(CellPair(cell.key, brows[cell.key], crows[cell.key]), checks, waiting)
            cell = replace(cell, notes=notes)
        out.append(cell)
    for check, pending in zip(checks, waiting, strict=True):
        for p, m in zip(pending, check.resolve(pending), strict=True):
            judged[p.key].append(m)
    order = {name: i for i, name in enumerate(METRICS)}
    final = tuple(replace(c, metrics=tuple(sorted(judged.get(c.key, ()), key=lambda m: order[m.metric]))) for c in out)
    return final, [n for check, pending in zip(checks, waiting, strict=True) for n in check.notes(pending)]


def _cell(key: CellKey, b: Mapping[str, Any] | None, c: Mapping[str, Any] | None, env_changed: bool) -> CellComparison:
    """The cell's status from both sides' records; ``compared`` (ok on both) is judged metric by metric after."""
    if b is None or c is None:
        status, row = (ADDED, c) if b is None else (REMOVED, b)
        return CellComparison(key, status, b["status"] if b else None, c["status"] if c else None,
                              error=_clean(row.get("error")) if row else None)  # fmt: skip
    bst, cst = b["status"], c["status"]
    if Status(cst).broken:
        return CellComparison(key, FAILED, bst, cst, error=_clean(c.get("error")), env_changed=env_changed)
    if bst != Status.OK or cst != Status.OK:
        error = _clean(c.get("error")) or _clean(b.get("error"))
        return CellComparison(key, NOT_COMPARED, bst, cst, error=error, notes=(f"baseline {bst}, current {cst}",))
    return CellComparison(key, COMPARED, bst, cst, env_changed=env_changed)


def _judge(
    pair: CellPair, checks: Sequence[Check], waiting: Sequence[list[Pending]]
) -> tuple[list[MetricComparison], tuple[str, ...]]:
    """Every metric both sides have, by its check (tests that wait for the correction go to ``waiting``)."""
    metrics: list[MetricComparison] = []
    notes: list[str] = []
    for check, pending in zip(checks, waiting, strict=True):
        bv, cv = _value(pair.baseline, check.spec.column), _value(pair.current, check.spec.column)
        if bv is None or cv is None:
            if (bv is None) != (cv is None):
                notes.append(f"{check.spec.name} only in {'baseline' if cv is None else 'current'}")
            continue
        out = check.judge(pair, bv, cv)
        if isinstance(out, Pending):
            pending.append(out)
        elif out is not None:
            metrics.append(out)
    return metrics, tuple(notes)


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
