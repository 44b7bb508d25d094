"""The run's remaining time, from the cells left and the durations of those finished, by kind of cell.

Fed by the runner's events (``bench.runner.run``'s ``on_event``); the progress view shows ``remaining_s``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bench.spec import CellSpec

#: metrics that train models (for accuracy, or pretraining objectives): their cells take minutes, not seconds
TRAINING_METRICS = frozenset({"accuracy", "pretrain"})


def cell_kind(cell: CellSpec) -> str:
    """What a cell's duration is like, for the ETA: ``train:<tier>`` when it trains models for accuracy,
    ``cost:<tier>`` when it measures costs only (params, MACs, latency, memory)."""
    acc = cell.profile.accuracy
    trains = acc is not None and bool(TRAINING_METRICS & set(cell.profile.metrics)) and cell.key.tier in acc.tiers
    return f"{'train' if trains else 'cost'}:{cell.key.tier}"


def estimate_remaining_s(seconds_by_kind: Mapping[str, Sequence[float]], left: Iterable[str]) -> float | None:
    """Seconds the cells ``left`` (given by kind, see ``cell_kind``) will take, each at the mean duration of
    the finished cells of its kind; a kind not seen yet takes the mean of its class (``train`` or ``cost``,
    any tier), else of every finished cell. None before any cell has finished: nothing to go by."""
    means = {k: sum(v) / len(v) for k, v in seconds_by_kind.items() if v}
    if not means:
        return None
    by_class: dict[str, list[float]] = defaultdict(list)
    for k, v in seconds_by_kind.items():
        by_class[k.split(":", 1)[0]].extend(v)
    everything = [x for v in seconds_by_kind.values() for x in v]
    overall = sum(everything) / len(everything)
    total = 0.0
    for kind in left:
        if kind in means:
            total += means[kind]
        else:
            same = by_class.get(kind.split(":", 1)[0])
            total += sum(same) / len(same) if same else overall
    return total


class EtaEstimator:
    """The run's remaining time from the cells left and the durations of those finished, by kind.

    Feed it the runner's events (``on_event``); ``remaining_s()`` counts each running cell as its estimate
    less the time it has run (never below zero). With several cells in flight (``--jobs``, Ray) the cells
    left are spread over ``parallel`` lanes: the sum is divided by it. ``clock`` is injectable for tests.
    """

    def __init__(self, cells: Iterable[CellSpec], clock: Callable[[], float] = time.monotonic,
                 parallel: int = 1) -> None:  # fmt: skip
        self._clock = clock
        self._parallel = max(1, parallel)
        self._left: dict[str, str] = {c.key.id: cell_kind(c) for c in cells}  # cell id -> kind, not finished
        self._seconds: dict[str, list[float]] = defaultdict(list)
        self._running: dict[str, float] = {}  # cell id -> started at

    def on_event(self, event: str, cell: CellSpec, payload: Any) -> None:
        cid = cell.key.id
        if event == "start":
            self._running[cid] = self._clock()
        elif event in ("done", "resumed"):
            kind = self._left.pop(cid, cell_kind(cell))
            status = payload.get("status") if isinstance(payload, Mapping) else None
            started = self._running.pop(cid, None)
            # A skipped cell ends at once: its time says nothing about the cells that run.
            if event == "done" and started is not None and status != "skipped":
                self._seconds[kind].append(self._clock() - started)

    @property
    def running(self) -> int:
        """How many cells are in flight now."""
        return len(self._running)

    def remaining_s(self) -> float | None:
        """Estimated seconds to the end of the run, or None before any cell has finished."""
        rest = estimate_remaining_s(self._seconds, (k for cid, k in self._left.items() if cid not in self._running))
        if rest is None:
            return None
        now = self._clock()
        for cid, started in self._running.items():
            if cid in self._left:
                current = estimate_remaining_s(self._seconds, [self._left[cid]]) or 0.0
                rest += max(0.0, current - (now - started))
        return rest / self._parallel
