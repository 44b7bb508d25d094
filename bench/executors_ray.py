"""``--executor ray``: each cell a Ray task on a cluster, results written by the driver as they complete.

- Resources match the cell: ``num_cpus`` = its ``--threads`` (1 when not given: give ``--threads`` on a
  cluster), ``num_gpus=1`` for a CUDA cell (Ray sets the task's ``CUDA_VISIBLE_DEVICES``).
- Isolation as locally: the task runs in a fresh Ray worker process that serves one task only
  (``max_calls=1``) and measures the cell in a spawned child under the profile's stall timeout and hard cap
  (``bench.executors.measure_in_subprocess``), so a crash, an OOM kill or a hang costs one cell.
- A Ray worker or node that dies: the cell runs once more (``RETRIES``); its record notes the retry; a second
  death is a ``failed`` record and the run goes on. The driver also cancels a task past the cell's hard cap (a stuck host): a ``timeout`` record, not retried.
- Each record carries ``host_env``: the fingerprint of the host that measured it (``bench.env.host_fingerprint``).
- The runner writes each record into the run file as it arrives, so ``--resume`` after a killed driver runs
  only the missing cells.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import ray

from bench.executors import POLL_S, CellDone, EventCallback, cap_factor
from bench.spec import CellSpec
from bench.worker import base_record

#: How many times a cell whose Ray worker or node died runs again before it is recorded ``failed``.
RETRIES = 1
#: Extra seconds past a cell's hard cap before the driver cancels its task (the worker's own limit fires first).
GRACE_S = 60.0


def measure_on_host(cell: CellSpec) -> dict[str, Any]:
    """The body of a Ray task: measure ``cell`` in a spawned child on this host; add this host's fingerprint."""
    from bench.env import host_fingerprint
    from bench.executors import measure_in_subprocess

    rec = measure_in_subprocess(cell)
    rec["host_env"] = host_fingerprint()
    return rec


def resources(cell: CellSpec) -> dict[str, Any]:
    """Ray options of the task that measures ``cell``."""
    return {"num_cpus": cell.threads or 1, "num_gpus": 1 if cell.key.device == "cuda" else 0}


class RayExecutor:
    """Cells as Ray tasks (``resources``), ``max_in_flight`` at once (None: as many as the cluster takes)."""

    def __init__(self, address: str | None = None, max_in_flight: int | None = None, retries: int = RETRIES,
                 task: Any = None, grace_s: float = GRACE_S) -> None:  # fmt: skip
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self._task = task or ray.remote(max_calls=1, max_retries=0)(measure_on_host)
        self._max = max_in_flight
        self._retries = retries
        self._pending: deque[tuple[CellSpec, EventCallback | None, int]] = deque()
        self._running: dict[Any, tuple[CellSpec, EventCallback | None, int, float]] = {}
        self._cancelled: set[Any] = set()  # tasks this driver cancelled past their hard cap: timeouts, not deaths
        self._grace_s = grace_s
        self._closed = False

    def submit(self, cell: CellSpec, on_event: EventCallback | None = None) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed executor")
        self._pending.append((cell, on_event, 0))

    def _launch(self) -> None:
        while self._pending and (self._max is None or len(self._running) < self._max):
            cell, on_event, attempt = self._pending.popleft()
            ref = self._task.options(**resources(cell)).remote(cell)
            self._running[ref] = (cell, on_event, attempt, time.monotonic())
            if on_event and attempt == 0:
                on_event("start", cell, {"host": "ray"})

    def as_completed(self) -> Iterator[CellDone]:
        while self._pending or self._running:
            self._launch()
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                cell, on_event, attempt, t0 = self._running.pop(ref)
                try:
                    rec = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.TaskCancelledError) as e:  # fmt: skip
                    if ref in self._cancelled:  # cancelled here past its cap: a timeout, never retried
                        self._cancelled.discard(ref)
                        rec = base_record(cell, "timeout", f"hard timeout: the Ray task ran {time.monotonic() - t0:.0f} "
                                                           f"s, past the cell's {self._cap(cell):g} s cap and grace, and "
                                                           "was cancelled by the driver (a stuck host or worker)")  # fmt: skip
                        yield CellDone(cell, rec)
                        continue
                    if attempt < self._retries:
                        self._pending.appendleft((cell, on_event, attempt + 1))
                        continue
                    rec = base_record(cell, "failed", f"Ray worker died: {type(e).__name__}")
                except ray.exceptions.RayError as e:  # the task's own error (not the cell's: that is a record)
                    rec = base_record(cell, "failed", f"Ray task failed: {' '.join(str(e).split())[-400:]}")
                if attempt:
                    rec["notes"] = [*rec.get("notes", []), f"retried {attempt}x after its Ray worker died"]
                yield CellDone(cell, rec)
            now = time.monotonic()
            for ref, (cell, _, _, t0) in list(self._running.items()):
                if ref not in self._cancelled and now - t0 > self._cap(cell) + self._grace_s:
                    self._cancelled.add(ref)  # the worker's own hard cap should have fired: a stuck host
                    ray.cancel(ref, force=True)

    @staticmethod
    def _cap(cell: CellSpec) -> float:
        return cap_factor(cell) * cell.profile.timeout_s

    def close(self) -> None:
        self._closed = True
        self._pending.clear()
        for ref in list(self._running):
            ray.cancel(ref, force=True)
        self._running.clear()
