"""Executors: where the cells of a run are measured, behind one small seam.

``bench.runner.run`` hands each cell it must measure to an executor (``submit``), then takes the records
back as the cells finish (``as_completed``) and writes each at once; it knows nothing else about how or
where a cell runs. The shape is that of ``concurrent.futures.as_completed`` and ``ray.wait``: submit
everything, then consume results in completion order.

- ``LocalProcessExecutor``: one fresh ``spawn``-ed worker process per cell, one cell at a time (the
  default, and what published runs use): a crash, an out-of-memory kill or a hang takes down one cell only,
  the worker dies with its driver, the stall timeout and its hard cap are enforced here, and the metrics
  the worker streamed before it was killed are kept (``lost_record``). The next cell's worker is started
  ahead (``WorkerPool``): it imports torch and timm while the current cell builds and counts, is paused
  (SIGSTOP) while the current cell runs a clock-timed metric, and still measures exactly one cell.
- ``bench.executors_parallel.ParallelExecutor`` (``--jobs N``: one cell per GPU) and
  ``bench.executors_ray.RayExecutor`` (``--executor ray``) plug in the same way.
- ``InProcessExecutor``: runs each cell in this process (tests): no isolation, the same records.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from bench.eta import cell_kind
from bench.spec import CellSpec
from bench.worker import base_record

#: ``on_event(event, cell, payload)``: events are "start", "phase" (payload: its text), "done" (payload: the
#: record) and "resumed" (a cell already in the resumed file; payload: its record). Executors send "start"
#: and "phase"; the runner sends "done" and "resumed".
EventCallback = Callable[[str, CellSpec, Any], None]
#: ``measure(cell, on_event) -> record``: measures one cell where it is called; never raises for the cell's
#: own failure (that is a record with status "failed"), only for the driver's (Ctrl-C, SIGTERM).
MeasureFn = Callable[[CellSpec, EventCallback | None], dict[str, Any]]

#: A cell's ``timeout_s`` is a *stall* timeout: the worker is killed when it sends nothing (a phase, a
#: training-progress heartbeat, a metric) for that long. A cell still reporting progress is killed anyway
#: after this many times ``timeout_s`` in all: a cell budgeted in training steps must not die of a
#: wall-clock limit sized for an idle machine, but nor may it run without end.
HARD_CAP_FACTOR = 10
#: The same cap for a training cell (accuracy, pretraining): it reports every step, so its stall timeout
#: guards it, and one cell may train several models (DeiT: a teacher, then the student without and with it)
#: for a budget in steps, not seconds. At 10x an accuracy-long DeiT cell was killed at 3000 s under load.
TRAINING_CAP_FACTOR = 40


def cap_factor(cell: CellSpec) -> float:
    """How many times its stall timeout ``cell`` may run in all (``HARD_CAP_FACTOR`` or, training,
    ``TRAINING_CAP_FACTOR``)."""
    return TRAINING_CAP_FACTOR if cell_kind(cell).startswith("train") else HARD_CAP_FACTOR


#: Longest wait for a worker's next message before the driver checks the limits and whether the worker
#: still lives: a dead worker is noticed within this, and a limit fires at most this late.
POLL_S = 0.5
#: Shortest such wait, so that a limit due in a few microseconds does not turn the loop into a busy spin.
MIN_POLL_S = 0.01
#: After the worker has exited, how long to wait for messages still in flight: its queue's feeder thread
#: flushes them as the process exits, so a record sent just before exiting is not taken for a death.
DRAIN_S = 1.0
#: How long to wait for a worker to be reaped after it ends or is killed: SIGKILL ends it at once; this only
#: bounds a process stuck in the kernel (uninterruptible I/O), which must not hang the whole run.
JOIN_S = 10.0
#: How a worker starts: "warm" (default) starts the next cell's worker ahead (``WorkerPool``); "spawn" starts
#: each worker once its cell is due (the start before issue 15; ``benchmarks/worker_start.py`` times both).
WORKER_STARTS = ("warm", "spawn")
#: Environment variable that selects the worker start (a benchmark and debugging switch; default "warm").
WORKER_START_ENV = "AIGC_BENCH_WORKER_START"


class CellDone(NamedTuple):
    """A finished cell and its record (status ok, skipped, failed or timeout)."""

    cell: CellSpec
    record: dict[str, Any]


class Executor(Protocol):
    """Measures cells: ``submit`` each, then iterate ``as_completed``; ``close`` when done.

    ``on_event`` (given with each cell) is called with "start" when the cell begins and "phase" as it
    progresses, always from the thread that iterates ``as_completed`` (a progress display need not lock).
    """

    def submit(self, cell: CellSpec, on_event: EventCallback | None = None) -> None:
        """Queue ``cell``; returns at once (nothing is measured here)."""

    def as_completed(self) -> Iterator[CellDone]:
        """Yield one ``CellDone`` per submitted cell, in the order they finish, until none is pending.

        A cell's failure, crash or timeout is a record, never an exception; an exception raised while
        waiting (Ctrl-C, SIGTERM) ends the cells running before it propagates.
        """

    def close(self) -> None:
        """Drop the cells not started and end any still running; idempotent."""


class SerialExecutor:
    """Measures submitted cells one at a time, in submission order, with ``measure``, as ``as_completed``
    is iterated: a cell starts only once the previous record has been taken (and written), so a run stopped
    between two cells has kept every cell it measured."""

    def __init__(self, measure: MeasureFn) -> None:
        self._measure = measure
        self._pending: deque[tuple[CellSpec, EventCallback | None]] = deque()
        self._closed = False

    def submit(self, cell: CellSpec, on_event: EventCallback | None = None) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed executor")
        self._pending.append((cell, on_event))

    def as_completed(self) -> Iterator[CellDone]:
        while self._pending:
            cell, on_event = self._pending.popleft()
            if on_event:
                on_event("start", cell, None)
            yield CellDone(cell, self._measure(cell, on_event))

    def close(self) -> None:
        self._pending.clear()
        self._closed = True


class LocalProcessExecutor(SerialExecutor):
    """Each cell in a fresh spawned worker process, one at a time (``measure_in_subprocess``); the next
    cell's worker is started ahead while cells remain (``start="warm"``, see ``WorkerPool``)."""

    def __init__(self, start: str | None = None) -> None:
        self._pool = WorkerPool(start)
        super().__init__(lambda cell, on_event: self._pool.measure(cell, on_event, more=bool(self._pending)))

    def close(self) -> None:
        super().close()
        self._pool.close()


class InProcessExecutor(SerialExecutor):
    """Each cell in this process (``measure_here``, or the ``measure`` given: a fake, in tests).

    No isolation: a crash or a hang of a cell is this process's; no timeout applies. Same records otherwise.
    """

    def __init__(self, measure: MeasureFn | None = None) -> None:
        super().__init__(measure or measure_here)


def measure_here(cell: CellSpec, on_event: EventCallback | None = None) -> dict[str, Any]:
    """Measure ``cell`` in this process (``bench.worker.measure_cell``), reporting its phases.

    torch's thread count and random state are restored afterwards; the cell's malloc regime stays in force
    (glibc cannot read it back: ``bench.metrics._malloc``).
    """
    import torch

    from bench.worker import measure_cell

    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    try:
        report = (lambda text: on_event("phase", cell, text)) if on_event else (lambda text: None)
        return measure_cell(cell, report_phase=report)
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng)


# --- one cell in a spawned worker: its protocol, its limits, its record when it dies ---------------------


def limit_fired(elapsed_s: float, idle_s: float, timeout_s: float, factor: float = HARD_CAP_FACTOR) -> str | None:
    """Which limit a cell has hit: ``"stall"`` (nothing heard for ``timeout_s``), ``"total"`` (it ran
    ``factor * timeout_s`` in all: ``cap_factor``) or None."""
    if elapsed_s >= factor * timeout_s:
        return "total"
    if idle_s >= timeout_s:
        return "stall"
    return None


@dataclass
class WorkerOutcome:
    """What the driver heard from a worker: its record, or why it has none and what it had sent."""

    record: dict[str, Any] | None = None
    fired: str | None = None  # the limit that fired: "stall" | "total" | None
    phase: str = "start"  # the last phase the worker reported
    metric_names: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)


def watch_worker(
    get: Callable[[float], tuple[Any, ...]],
    alive: Callable[[], bool],
    timeout_s: float,
    on_phase: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: Callable[[], bool] | None = None,
    factor: float = HARD_CAP_FACTOR,
) -> WorkerOutcome:
    """Read a worker's messages (``bench.worker.child_main``) until its record arrives, it dies, or a limit fires.

    ``get(timeout)`` returns the next message or raises ``queue.Empty``; ``alive()`` says whether the worker
    still runs. Any message is progress: the stall clock restarts (``limit_fired``). ``stop()`` true ends the
    watch at once (``fired`` "cancelled": the executor is closing from another thread).
    """
    out = WorkerOutcome()
    t0 = heard = clock()
    while out.record is None:
        now = clock()
        out.fired = (
            "cancelled" if stop is not None and stop() else limit_fired(now - t0, now - heard, timeout_s, factor)
        )
        if out.fired:
            break
        wait = min(heard + timeout_s, t0 + factor * timeout_s) - now
        try:
            msg = get(max(MIN_POLL_S, min(POLL_S, wait)))
        except queue_mod.Empty:
            if alive():
                continue
            try:  # it may have exited between get() and alive(): drain once more
                msg = get(DRAIN_S)
            except queue_mod.Empty:
                break
        heard = clock()
        if msg[0] == "phase":
            out.phase = str(msg[1])
            if on_phase:
                on_phase(msg[1])
        elif msg[0] == "metric":
            _, name, values, samples = msg
            out.metric_names.append(str(name))
            out.metrics.update(values)
            out.samples.update(samples)
        elif msg[0] == "record":
            out.record = msg[1]
    return out


def lost_record(cell: CellSpec, out: WorkerOutcome, exitcode: int | None) -> dict[str, Any]:
    """The record of a cell whose worker was killed or died: the metrics it had sent, which limit fired,
    the phase it was in."""
    timeout_s = cell.profile.timeout_s
    if out.fired == "stall":
        rec = base_record(cell, "timeout", f"stall timeout: no progress for {timeout_s:g} s during {out.phase!r}; "
                                           "the worker was killed")  # fmt: skip
    elif out.fired == "total":
        rec = base_record(cell, "timeout", f"hard timeout: the cell ran {cap_factor(cell) * timeout_s:g} s in all "
                                           f"({cap_factor(cell):g} x its {timeout_s:g} s stall timeout) and was "
                                           f"killed during {out.phase!r}")  # fmt: skip
    else:
        why = "killed by signal 9 (likely out of memory)" if exitcode == -9 else f"exit code {exitcode}"
        rec = base_record(cell, "failed", f"worker process died during {out.phase!r} without a result ({why})")
    rec["metrics"].update(out.metrics)
    rec["samples"].update(out.samples)
    kept = ", ".join(out.metric_names) or "none"
    rec["notes"].append(f"{rec['status']} during {out.phase!r}; the metrics measured before it are kept: {kept}")
    return rec


def measure_in_subprocess(
    cell: CellSpec,
    on_event: EventCallback | None = None,
    *,
    env: dict[str, str] | None = None,
    worker: WarmWorker | None = None,
    on_phase: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one cell in a fresh spawned process under its stall timeout and hard cap; never raises.

    The worker streams its phases and each metric's values as they complete; a worker killed for a
    timeout, or dead of a signal (out of memory), leaves a record that keeps the metrics it had sent and a
    note naming the phase it died in (``lost_record``). An exception in the driver (Ctrl-C, SIGTERM) kills
    the worker before it propagates; a driver killed outright takes the worker with it
    (``bench.worker.die_with_parent``: the kernel's signal is tied to the thread that starts the worker,
    which waits here for as long as the worker lives).

    ``env``: variables the worker sets first (its GPU: ``CUDA_VISIBLE_DEVICES``); ``worker``: a pre-started
    ``WarmWorker`` to hand the cell to (else one is spawned now); ``on_phase(text)`` hears each phase (the
    pool pauses its spare during timed metrics); ``stop()`` true kills the worker (a closing executor).
    """
    t0 = time.monotonic()
    if worker is None:
        ctx = mp.get_context("spawn")  # fork would inherit the parent's memory and threads
        q = ctx.Queue()
        from bench.worker import child_main

        proc = ctx.Process(target=child_main, args=(cell, q, os.getpid(), env), daemon=True)
        proc.start()
    else:
        q, proc = worker.queue, worker.proc
        worker.give(cell, env)
    out = WorkerOutcome()
    try:

        def phase(text: str) -> None:
            if on_phase:
                on_phase(text)
            if on_event:
                on_event("phase", cell, text)

        out = watch_worker(
            lambda t: q.get(timeout=t), proc.is_alive, cell.profile.timeout_s, phase, stop=stop, factor=cap_factor(cell)
        )
    finally:
        if out.record is None and proc.is_alive():
            proc.kill()
        proc.join(timeout=JOIN_S)
        q.close()
    if out.record is not None:
        return out.record
    rec = lost_record(cell, out, proc.exitcode)
    rec["duration_s"] = round(time.monotonic() - t0, 3)
    return rec


# --- workers started ahead ---------------------------------------------------------------------------------


class WarmWorker:
    """A spawned worker that imports what measuring needs at once (``bench.worker.warm_main``), then waits
    for exactly one cell; it dies with this process like any worker. ``pause``/``resume`` stop and continue it."""

    def __init__(self) -> None:
        from bench.worker import warm_main

        ctx = mp.get_context("spawn")
        self.inbox, self.queue = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=warm_main, args=(self.inbox, self.queue, os.getpid()), daemon=True)
        self.proc.start()
        self.paused = False

    def _signal(self, sig: int) -> None:
        try:
            if self.proc.is_alive():
                os.kill(self.proc.pid, sig)
        except (ProcessLookupError, ValueError):  # it ended (or was closed) in between
            pass

    def pause(self) -> None:
        if not self.paused:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def give(self, cell: CellSpec, env: dict[str, str] | None = None) -> None:
        """Hand the worker its one cell (it runs on at once)."""
        self.resume()
        self.inbox.put((cell, dict(env or {})))

    def discard(self) -> None:
        """End a worker that got no cell."""
        if self.proc.is_alive():
            self.proc.kill()  # SIGKILL ends a stopped process too
        self.proc.join(timeout=JOIN_S)
        self.inbox.close()
        self.queue.close()


@functools.cache
def timed_metrics() -> frozenset[str]:
    """Names of the metrics with a clock-timed column (``bench.catalogue.timed``): a spare worker importing
    during one of these would take CPU from the timed loop, so the pool pauses it."""
    from bench import catalogue

    return frozenset(d.name for d in catalogue.metrics() if any(catalogue.timed(c.name) for c in d.columns))


@functools.cache
def untimed_phases() -> frozenset[str]:
    """Phases during which a spare may import: building the model and every metric not clock-timed."""
    from bench import catalogue

    return frozenset({"start", "build", *(d.name for d in catalogue.metrics())} - timed_metrics())


def worker_start(start: str | None = None) -> str:
    """The worker start in force: ``start``, else ``$AIGC_BENCH_WORKER_START``, else "warm"."""
    from bench.errors import UnknownNameError

    got = start or os.environ.get(WORKER_START_ENV) or "warm"
    if got not in WORKER_STARTS:
        raise UnknownNameError("worker start", got, WORKER_STARTS)
    return got


class WorkerPool:
    """Keeps one spare worker started ahead for the next cell of one lane (a device slot), so a cell no
    longer waits ~2.5 s for torch and timm to import.

    Latency fidelity: the spare imports only while the running cell is in an untimed phase (build, params,
    MACs, memory) and is stopped (SIGSTOP) while it runs a clock-timed metric; a stopped process takes no
    CPU and does not count in the load average. Memory fidelity: the spare is a fresh spawned process, so a
    cell's baseline (after the same imports) is what it was. ``start="spawn"`` is the old start.
    """

    def __init__(self, start: str | None = None) -> None:
        self.start = worker_start(start)
        self._spare: WarmWorker | None = None

    def measure(self, cell: CellSpec, on_event: EventCallback | None = None, *, more: bool = False,
                env: dict[str, str] | None = None, stop: Callable[[], bool] | None = None) -> dict[str, Any]:  # fmt: skip
        """Measure ``cell`` in the spare (or a new worker); start the next spare when ``more`` cells follow."""
        if self.start == "spawn":
            return measure_in_subprocess(cell, on_event, env=env, stop=stop)
        worker, self._spare = self._spare or WarmWorker(), None
        if more:
            self._spare = WarmWorker()
        return measure_in_subprocess(cell, on_event, env=env, worker=worker, on_phase=self._pace, stop=stop)

    def _pace(self, phase: str) -> None:
        if self._spare is None:
            return
        if phase in timed_metrics():
            self._spare.pause()
        elif phase in untimed_phases():  # any other text (a metric's own progress) keeps the state
            self._spare.resume()

    def close(self) -> None:
        if self._spare is not None:
            self._spare.discard()
            self._spare = None
