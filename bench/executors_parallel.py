"""``--jobs N``: several cells at once on one machine, by one scheduling rule (``plan_slots``).

- One cell per GPU at a time: each GPU is a slot whose workers see only it (``CUDA_VISIBLE_DEVICES``).
- CPU timing cells never run at the same time as each other: the CPU is one slot, unless the run has only
  CPU cells and the user asks for ``--jobs N`` anyway (then N CPU slots and a warning: their latencies
  share the cores).
- At most N cells in flight in all. Every record of a ``--jobs`` run says which slot measured it and how
  many other cells ran at the same time at most (``concurrency``: ``jobs``, ``slot``, ``shared_with``); a
  CPU cell that shared the machine with another CPU cell gets a note saying its latency is not that of a
  machine to itself.

Each slot has its own thread and worker pool (``bench.executors.WorkerPool``, so its next worker starts ahead);
events reach ``on_event`` from the thread that iterates ``as_completed``, as the executor seam promises.
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.executors import JOIN_S, POLL_S, CellDone, EventCallback, WorkerPool
from bench.spec import CellSpec
from bench.worker import base_record

#: ``measure(cell, on_event, slot, more, stop) -> record``, called in the slot's thread (tests pass a fake).
SlotMeasure = Callable[[CellSpec, EventCallback | None, "Slot", bool, Callable[[], bool]], dict[str, Any]]


@dataclass(frozen=True)
class Slot:
    """Where one cell at a time runs: a GPU (``cuda:<id>``) or the CPU (``cpu:<i>``), with the worker's env."""

    name: str
    device: str  # "cpu" | "cuda"
    env: dict[str, str] = field(default_factory=dict, hash=False)


def plan_slots(jobs: int, devices: Sequence[str], gpu_ids: Sequence[str]) -> tuple[list[Slot], str | None]:
    """The scheduling rule: the slots of a run with ``jobs`` cells at once on ``devices`` (those its cells
    use), given the GPUs this machine shows; and the warning to print, if any (CPU cells made to share)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    slots = [Slot(f"cuda:{g}", "cuda", {"CUDA_VISIBLE_DEVICES": str(g)}) for g in list(gpu_ids)[:jobs]]
    if "cuda" not in devices:
        slots = []
    warning = None
    if "cpu" in devices:
        n_cpu = jobs if jobs > 1 and "cuda" not in devices else 1
        if n_cpu > 1:
            warning = (f"--jobs {jobs} on CPU: {jobs} CPU timing cells run at once and share the cores, so their "
                       "latencies are not those of a machine to itself; each record says how many cells it "
                       "shared the machine with")  # fmt: skip
        slots += [Slot(f"cpu:{i}", "cpu") for i in range(n_cpu)]
    return slots, warning


def _measure_in_pool(pools: dict[str, WorkerPool]) -> SlotMeasure:
    def measure(cell: CellSpec, on_event: EventCallback | None, slot: Slot, more: bool, stop: Callable[[], bool]):
        return pools[slot.name].measure(cell, on_event, more=more, env=slot.env, stop=stop)

    return measure


class ParallelExecutor:
    """Up to ``jobs`` cells at once over ``slots`` (``plan_slots``); each cell still in its own worker."""

    def __init__(self, jobs: int, slots: Sequence[Slot], measure: SlotMeasure | None = None,
                 start: str | None = None) -> None:  # fmt: skip
        self.jobs, self.slots = jobs, list(slots)
        self._pools = {s.name: WorkerPool(start) for s in self.slots} if measure is None else {}
        self._measure = measure or _measure_in_pool(self._pools)
        self._pending: deque[tuple[CellSpec, EventCallback | None]] = deque()
        self._events: queue_mod.Queue[tuple[Any, ...]] = queue_mod.Queue()
        self._stop = threading.Event()
        self._inboxes: dict[str, queue_mod.Queue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, cell: CellSpec, on_event: EventCallback | None = None) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed executor")
        self._pending.append((cell, on_event))

    def _slot_loop(self, slot: Slot, inbox: queue_mod.Queue[Any]) -> None:
        # A slot's workers are started from this one thread, which lives for the whole run: a worker's
        # kernel death signal is tied to the thread that started it (bench.worker.die_with_parent).
        try:
            while (job := inbox.get()) is not None:
                cell, on_event, more = job

                def relay(event: str, c: CellSpec, payload: Any, on_event=on_event) -> None:
                    if on_event:
                        self._events.put(("event", on_event, event, c, payload))

                try:
                    rec = self._measure(cell, relay, slot, more, self._stop.is_set)
                except Exception as e:  # noqa: BLE001 -- the driver's own bug in one slot must not hang the run
                    rec = base_record(cell, "failed", f"executor: {type(e).__name__}: {e}")
                self._events.put(("done", slot, cell, rec))
        finally:
            pool = self._pools.get(slot.name)
            if pool is not None:
                pool.close()

    def _start_slots(self) -> None:
        for slot in self.slots:
            inbox: queue_mod.Queue[Any] = queue_mod.Queue()
            t = threading.Thread(target=self._slot_loop, args=(slot, inbox), name=f"aigc-bench-{slot.name}",
                                 daemon=True)  # fmt: skip
            self._inboxes[slot.name] = inbox
            self._threads.append(t)
            t.start()

    def as_completed(self) -> Iterator[CellDone]:
        if not self._threads:
            self._start_slots()
        free = list(self.slots)
        running: dict[str, tuple[CellSpec, Slot, list[int]]] = {}  # cell id -> (cell, slot, [peak others])
        while self._pending or running:
            while len(running) < self.jobs:
                pick = next(((i, s) for i, (c, _) in enumerate(self._pending) for s in free
                             if s.device == c.key.device), None)  # fmt: skip
                if pick is None:
                    break
                i, slot = pick
                cell, on_event = self._pending[i]
                del self._pending[i]
                free.remove(slot)
                for _, _, peak in running.values():
                    peak[0] = max(peak[0], len(running))
                running[cell.key.id] = (cell, slot, [len(running)])
                if on_event:
                    on_event("start", cell, {"slot": slot.name})
                more = any(c.key.device == slot.device for c, _ in self._pending)
                self._inboxes[slot.name].put((cell, on_event, more))
            if not running:  # cells left whose device has no slot (a cuda cell on a machine without GPUs)
                cell, _ = self._pending.popleft()
                yield CellDone(cell, base_record(cell, "failed", f"no {cell.key.device} slot to run it on"))
                continue
            try:
                msg = self._events.get(timeout=POLL_S)
            except queue_mod.Empty:
                continue
            if msg[0] == "event":
                _, on_event, event, cell, payload = msg
                on_event(event, cell, payload)
                continue
            _, slot, cell, rec = msg
            _, _, peak = running.pop(cell.key.id)
            free.append(slot)
            yield CellDone(cell, self._annotate(rec, slot, peak[0], running))

    def _annotate(self, rec: dict[str, Any], slot: Slot, shared_with: int, running: dict[str, Any]) -> dict[str, Any]:
        rec = dict(rec)
        rec["concurrency"] = {"jobs": self.jobs, "slot": slot.name, "shared_with": shared_with}
        cpu_slots = sum(s.device == "cpu" for s in self.slots)
        if slot.device == "cpu" and cpu_slots > 1 and shared_with:
            rec["notes"] = [*rec.get("notes", []), f"ran alongside up to {shared_with} other cells on this machine "
                            f"(--jobs {self.jobs}): its latency is not that of a machine to itself"]  # fmt: skip
        return rec

    def close(self) -> None:
        """Drop the cells not started, kill those running (their watch loops see the stop), end the slots."""
        self._closed = True
        self._pending.clear()
        self._stop.set()
        for inbox in self._inboxes.values():
            inbox.put(None)
        deadline = time.monotonic() + JOIN_S
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


#: ``--executor`` choices.
EXECUTORS = ("local", "ray")


def choose_executor(kind: str, jobs: int, cells: Sequence[CellSpec], ray_address: str | None = None,
                    gpu_ids: Sequence[str] | None = None) -> tuple[Any, str | None, int]:  # fmt: skip
    """The executor ``aigc-bench run`` uses, the warning to print (or None), and how many cells run at once.

    ``local`` with ``jobs`` 1: ``LocalProcessExecutor``; with more: ``ParallelExecutor`` over ``plan_slots``.
    ``ray``: ``bench.executors_ray.RayExecutor`` (needs ``pip install aigc-bench[ray]``).
    """
    from bench.errors import UnknownNameError, UsageError
    from bench.executors import LocalProcessExecutor

    if kind not in EXECUTORS:
        raise UnknownNameError("executor", kind, EXECUTORS)
    if kind == "local" and ray_address is not None:
        raise UsageError("--ray-address goes with --executor ray")
    if kind == "ray":
        try:
            from bench.executors_ray import RayExecutor
        except ImportError as e:
            raise UsageError(f"--executor ray needs Ray ({e.name or e}): pip install 'aigc-bench[ray]'") from None
        return RayExecutor(address=ray_address, max_in_flight=jobs if jobs > 1 else None), None, max(jobs, 1)
    if jobs == 1:
        return LocalProcessExecutor(), None, 1
    if gpu_ids is None:
        from bench.env import gpu_ids as detect

        gpu_ids = detect()
    slots, warning = plan_slots(jobs, sorted({c.key.device for c in cells}), gpu_ids)
    return ParallelExecutor(jobs, slots), warning, min(jobs, len(slots))
