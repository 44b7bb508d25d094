"""``run --repeat K``: each latency cell measured in K fresh worker processes, rounds interleaved across cells.

Why processes and not more samples: back-to-back runs of the same code differ mostly *between* processes
(where the heap, the threads and the code land differ per process: vit_tiny +7.5% in one A/A pair with the
machine-speed reference steady), while the samples inside one process agree. A test over the samples of
one process each counts such a shift hundreds of times; a test over K processes per side counts it once
(pyperf's runs, asv's processes). So the first round measures every cell as a run without ``--repeat`` does
(and is written at once, so an interrupted run keeps ordinary one-process records); rounds 2..K measure
latency only, each cell in a fresh worker, round by round (cell 1, cell 2, ..., cell 1, cell 2, ...) so
that a slow stretch of the machine touches every cell's processes alike. When a cell's last round is in,
its record is replaced by the combined one (:func:`combine`):

* ``samples.latency_ms`` and ``samples.speed_ref_ms``: every process's samples, pooled (the statistics
  ``latency_p50_ms``... are recomputed over them);
* ``samples.latency_process_ms``: the median of each process's samples, in round order (what ``compare``
  tests when both sides have them: ``bench.compare.checks.SampledCheck``), and
  ``samples.speed_ref_process_ms`` the median of each process's machine-speed reference;
* ``metrics.latency_processes``: K; ``speed_ref_drift``: the largest drift of any process;
  ``speed_ref_drift_median``: the drift of the median process (by size): what ``compare`` and
  ``bench.validity`` judge a repeated cell's steadiness by. One disturbed process is one value of K in a
  test over per-process medians, so it must not void the whole cell; a machine that moved in most
  processes does;
* every other metric (params, MACs, memory, ...) is the first round's.

A round that failed or timed out makes the cell's record that failure (a note names the round), so a flaky
cell is not hidden by its other processes.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bench.spec import CellSpec

#: the per-process medians of a record with several processes (``samples``; ``load_results``: ``<name>_samples``)
PROCESS_SAMPLES = "latency_process_ms"
REF_PROCESS_SAMPLES = "speed_ref_process_ms"
#: the number of processes a record's latency was measured in (absent: one)
PROCESSES_METRIC = "latency_processes"
#: the machine-speed drift of a repeated cell's median process (by size), see the module docstring
DRIFT_METRIC = "speed_ref_drift_median"
#: ``--repeat`` bound: more than this many processes per cell is a typo
MAX_REPEAT = 100
#: the repeat the quick profile's regression checks use (docs/ci.md, benchmarks/compare_aa_ab.py): with 10
#: processes a side, complete separation gives p = 1.1e-5, so a shift survives Holm's correction over
#: hundreds of cells; 5 a side (p >= 0.0079) could not survive it over 7 cells.
QUICK_REPEAT = 10

_LATENCY_STATS = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms",
                  "latency_iqr_ms", "latency_n", "latency_noisy")  # fmt: skip


def judged_drift(metrics: Mapping[str, Any]) -> tuple[float | None, bool]:
    """The machine-speed drift a cell's steadiness is judged by, and whether it is its median process's.

    A repeated cell (``DRIFT_METRIC`` present) is judged by its median process, see the module docstring;
    any other by its one measurement's ``speed_ref_drift``. None when neither was recorded.
    """
    from bench.numbers import finite

    typical = finite(metrics.get(DRIFT_METRIC))
    return (typical, True) if typical is not None else (finite(metrics.get("speed_ref_drift")), False)


def measures_latency(cell: CellSpec) -> bool:
    """Whether the cell's profile times latency (only such cells are repeated)."""
    return "latency" in cell.profile.metrics


def latency_round(cell: CellSpec) -> CellSpec:
    """The cell of a later round: the same key and model, its profile measuring latency only."""
    return replace(cell, profile=replace(cell.profile, metrics=("latency",)))


class Rounds:
    """Collects each cell's records round by round; ``add`` returns the combined record once all are in."""

    def __init__(self, repeat: int, cells: Sequence[CellSpec]) -> None:
        self.repeat = repeat
        self._expected = {c.key.id: repeat if measures_latency(c) else 1 for c in cells}
        self._got: dict[str, list[dict[str, Any]]] = {}

    def later_rounds(self, cells: Sequence[CellSpec]) -> list[CellSpec]:
        """The cells to submit after the first round, round by round (interleaved across cells)."""
        repeated = [latency_round(c) for c in cells if self._expected.get(c.key.id, 1) > 1]
        return [c for _ in range(self.repeat - 1) for c in repeated]

    def add(self, cell_id: str, record: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Record one round of a cell: (its round number, 1-based; the combined record when it was the last)."""
        got = self._got.setdefault(cell_id, [])
        got.append(record)
        if len(got) < self._expected.get(cell_id, 1) or len(got) == 1:
            return len(got), None
        return len(got), combine(got)


def round_events(on_event: Any, repeat: int) -> Any:
    """The event callback of a later round: its start is a phase of the cell (already counted done), not a new
    cell, so progress displays and the ETA count each cell once."""
    if on_event is None:
        return None

    def forward(event: str, cell: CellSpec, payload: Any) -> None:
        if event == "start":
            on_event("phase", cell, f"latency in another process (--repeat {repeat})")
        elif event == "phase":
            on_event(event, cell, payload)

    return forward


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def combine(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One record from a cell's rounds (stored form, first round first); see the module docstring."""
    first = dict(records[0])
    k = len(records)
    broken = next(((i, r) for i, r in enumerate(records) if r["status"] in ("failed", "timeout")), None)
    if broken is not None:
        i, r = broken
        return {**r, "notes": [*(r.get("notes") or []), f"latency: process {i + 1} of {k} {r['status']}"]}
    timed = [r for r in records if r["status"] == "ok" and (r.get("samples") or {}).get("latency_ms")]
    if first["status"] != "ok" or len(timed) < 2:
        return first
    return _combine_ok(first, timed)


def _combine_ok(first: dict[str, Any], timed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    from bench.metrics.latency import LatencyMeasurement
    from bench.stats import UNSTEADY_SPEED_DRIFT

    m0 = first["metrics"]
    pooled = [float(x) for r in timed for x in r["samples"]["latency_ms"]]
    per = [_median(r["samples"]["latency_ms"]) for r in timed]
    lm = LatencyMeasurement(tuple(pooled), int(m0.get("latency_number_per_sample") or 1), "", first["key"].get("mode")
                            or "infer", int(m0.get("latency_warmup_iters") or 0), int(m0.get("latency_threads") or 1))  # fmt: skip
    batch = int(first["key"]["batch_size"])
    metrics = dict(m0)
    stats = lm.to_metrics(batch)
    metrics.update({name: stats[name] for name in (*_LATENCY_STATS, "throughput")})
    if first["key"].get("seq_len") is not None and "tokens_per_s" in m0:
        metrics["tokens_per_s"] = batch * first["key"]["seq_len"] / (lm.median_ms / 1e3)
    samples = dict(first.get("samples") or {})
    samples["latency_ms"] = pooled
    samples[PROCESS_SAMPLES] = per
    refs = [r["samples"].get("speed_ref_ms") or [] for r in timed]
    if all(refs):
        samples["speed_ref_ms"] = [float(x) for ref in refs for x in ref]
        samples[REF_PROCESS_SAMPLES] = [_median(ref) for ref in refs]
        metrics["speed_ref_ms"] = _median(samples["speed_ref_ms"])
        drifts = [r["metrics"].get("speed_ref_drift") for r in timed]
        drifts = [float(d) for d in drifts if isinstance(d, int | float)]
        if drifts:
            metrics["speed_ref_drift"] = max(drifts, key=abs)
            by_size = sorted(drifts, key=abs)
            metrics[DRIFT_METRIC] = by_size[(len(by_size) - 1) // 2]  # the lower median: an actual process's
    metrics[PROCESSES_METRIC] = len(timed)
    notes = list(dict.fromkeys(n for r in timed for n in (r.get("notes") or [])))
    spread = (max(per) - min(per)) / _median(per) if _median(per) else 0.0
    notes.append(f"latency: {len(timed)} processes, per-process medians {min(per):.4g}-{max(per):.4g} ms "
                 f"({spread:.1%} apart)")  # fmt: skip
    if abs(metrics.get("speed_ref_drift") or 0.0) > UNSTEADY_SPEED_DRIFT:
        notes.append("latency: the machine-speed reference moved during at least one process")
    duration = sum(float(r.get("duration_s") or 0.0) for r in timed)
    return {**first, "metrics": metrics, "samples": samples, "notes": notes, "duration_s": round(duration, 3)}
