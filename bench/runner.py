"""Expand a suite into cells and measure each in its own worker process.

The runner owns the side effects of a run (processes, the results file); it reports progress
through a callback and never prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.spec import DEVICES, DTYPES, CellKey, CellSpec, Profile, Suite, freeze
from bench.worker import base_record

log = logging.getLogger(__name__)

#: ``on_event(event, cell, payload)``: events are "start", "phase" (payload: its text), "done" (payload: the
#: record) and "resumed" (a cell already in the resumed file; payload: its record)
EventCallback = Callable[[str, CellSpec, Any], None]

#: A cell's ``timeout_s`` is a *stall* timeout: the worker is killed when it sends nothing (a phase, a
#: training-progress heartbeat, a metric) for that long. A cell still reporting progress is killed anyway
#: after this many times ``timeout_s`` in all: a cell budgeted in training steps must not die of a
#: wall-clock limit sized for an idle machine, but nor may it run without end.
HARD_CAP_FACTOR = 10
#: Statuses ``retry_failed`` runs again.
RETRIED = ("failed", "timeout")
#: Shards a run may be split into: more is a typo (a CI matrix of 10,000 jobs is not a plan).
MAX_SHARDS = 10_000


@dataclass(frozen=True)
class RunSettings:
    """What the user asked for on top of the profile."""

    profile: str | None = None
    devices: tuple[str, ...] = ("auto",)
    dtypes: tuple[str, ...] | None = None  # None: the profile's
    batch_sizes: tuple[int, ...] | None = None  # None: the profile's
    threads: int | None = None  # None: torch's default in the worker (all cores)
    shard: tuple[int, int] | None = None  # (k, n), 1-based k
    tiers: tuple[str, ...] | None = None  # None: the profile's
    families: tuple[str, ...] | None = None  # None: all
    extra: tuple[tuple[str, Any], ...] = ()  # per-run values metrics read (accuracy: ``data``, ``weights``)
    allocator: str = "steady"  # malloc regime of every worker: steady | system (bench.allocator)


@dataclass
class RunResult:
    """What a finished run produced."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped_existing: int = 0

    @property
    def n_failed(self) -> int:
        return sum(r["status"] in ("failed", "timeout") for r in self.records)


def resolve_devices(requested: Sequence[str]) -> tuple[str, ...]:
    """``auto`` -> every available device; an unavailable device is a usage error."""
    from bench.env import available_devices

    have = available_devices()
    out: list[str] = []
    for d in requested:
        if d not in DEVICES:
            from bench.errors import UnknownNameError

            raise UnknownNameError("device", d, DEVICES)
        if d == "auto":
            out.extend(x for x in have if x not in out)
        elif d not in have:
            raise UsageError(f"device {d!r} is not available on this machine; valid choices: auto, {', '.join(have)}")
        elif d not in out:
            out.append(d)
    return tuple(out)


def check_dtypes(dtypes: Sequence[str]) -> tuple[str, ...]:
    from bench.errors import UnknownNameError

    for d in dtypes:
        if d not in DTYPES:
            raise UnknownNameError("dtype", d, DTYPES)
    return tuple(dtypes)


def suite_definition(suite: Suite) -> dict[str, Any]:
    """The suite's declaration plus its resolved variants (what the run actually built)."""
    from bench.sizing import resolve_tier

    d = suite.to_dict()
    d["resolved"] = {t.name: [asdict(v) for v in resolve_tier(t)] for t in suite.tiers}
    return json.loads(json.dumps(d, default=repr))


def definition_hash(definition: dict[str, Any]) -> str:
    blob = json.dumps(definition, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def expand(suite: Suite, settings: RunSettings) -> list[CellSpec]:
    """Every cell the settings select, in a stable order (tier, family, device, dtype, batch, length, mode)."""
    from bench.sizing import resolve_tier

    profile = suite.profile(settings.profile)
    tiers = settings.tiers or profile.tiers or tuple(t.name for t in suite.tiers)
    families = settings.families or profile.families
    if families:
        for f in families:
            if f not in suite.families:
                from bench.errors import UnknownNameError

                raise UnknownNameError(f"family of suite {suite.name!r}", f, suite.families)
    devices = resolve_devices(settings.devices)
    dtypes = check_dtypes(settings.dtypes or profile.dtypes)
    from bench.allocator import REGIMES

    if settings.allocator not in REGIMES:
        from bench.errors import UnknownNameError

        raise UnknownNameError("allocator regime", settings.allocator, REGIMES)
    batches = settings.batch_sizes or profile.batch_sizes
    # The run's batch sizes and dtypes ride along: a metric measured once per variant (accuracy) takes the first.
    extra = freeze({**dict(settings.extra), "batch_sizes": tuple(batches), "dtypes": tuple(dtypes)})
    acc = profile.accuracy
    cells: list[CellSpec] = []
    for tier_name in tiers:
        tier = suite.tier(tier_name)
        # An accuracy tier trains each variant once, so it gets one cell per variant: the first value of every
        # axis (every length when the task takes its length from the cell). See bench/metrics/accuracy.py.
        once = acc is not None and tier.name in acc.tiers
        lens = profile.seq_lens or (None,)
        lens = lens[:1] if once and not acc.length_from_cell else lens
        for variant in resolve_tier(tier):
            if families and variant.family not in families:
                continue
            for device in devices:
                for dtype in dtypes[:1] if once else dtypes:
                    for batch in batches[:1] if once else batches:
                        for seq_len in lens:
                            for mode in profile.modes[:1] if once else profile.modes:
                                key = CellKey(suite=suite.name, tier=tier.name, family=variant.family,
                                              model=variant.model, device=device, dtype=dtype, batch_size=batch,
                                              input_shape=tuple(tier.input_shape), seq_len=seq_len, mode=mode)  # fmt: skip
                                cells.append(CellSpec(key=key, variant=variant, input_kind=suite.input_kind,
                                                      input_args=suite.input_args, profile=profile,
                                                      threads=settings.threads, extra=extra,
                                                      allocator=settings.allocator))  # fmt: skip
    if not cells:
        raise UsageError(
            f"the selection has no cells: suite {suite.name!r}, profile {profile.name!r}, tiers {', '.join(tiers)}"
            + (f", families {', '.join(families)}" if families else "")
            + f", devices {', '.join(devices) or '(none)'}"
        )
    if settings.shard:
        k, n = settings.shard
        every = len(cells)
        cells = select_shard(cells, k, n)
        if not cells:
            raise UsageError(f"shard {k}/{n} selects no cells: the selection has only {every} cells (use N <= {every})")
        if n > every:
            log.warning("%d shards for %d cells: shards %d..%d are empty", n, every, every + 1, n)
    return cells


def select_shard(cells: Sequence[CellSpec], k: int, n: int) -> list[CellSpec]:
    """A deterministic 1/n of the cells (shard k of n, 1-based), balanced by model.

    Cells are dealt round-robin over the sorted cell ids, so every shard gets a similar mix of
    models whatever the machine, and the union of the n shards is every cell exactly once.
    """
    if not (1 <= k <= n):
        raise UsageError(f"shard {k}/{n} is out of range; K must be between 1 and N")
    ordered = sorted(cells, key=lambda c: c.key.id)
    return [c for i, c in enumerate(ordered) if i % n == k - 1]


def limit_fired(elapsed_s: float, idle_s: float, timeout_s: float) -> str | None:
    """Which limit a cell has hit: ``"stall"`` (nothing heard for ``timeout_s``), ``"total"`` (it ran
    ``HARD_CAP_FACTOR * timeout_s`` in all) or None."""
    if elapsed_s >= HARD_CAP_FACTOR * timeout_s:
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
) -> WorkerOutcome:
    """Read a worker's messages (``bench.worker.child_main``) until its record arrives, it dies, or a limit fires.

    ``get(timeout)`` returns the next message or raises ``queue.Empty``; ``alive()`` says whether the worker
    still runs. Any message is progress: the stall clock restarts (``limit_fired``).
    """
    out = WorkerOutcome()
    t0 = heard = clock()
    while out.record is None:
        now = clock()
        out.fired = limit_fired(now - t0, now - heard, timeout_s)
        if out.fired:
            break
        wait = min(heard + timeout_s, t0 + HARD_CAP_FACTOR * timeout_s) - now
        try:
            msg = get(max(0.01, min(0.5, wait)))
        except queue_mod.Empty:
            if alive():
                continue
            try:  # it may have exited between get() and alive(): drain once more
                msg = get(1.0)
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
        rec = base_record(cell, "timeout", f"hard timeout: the cell ran {HARD_CAP_FACTOR * timeout_s:g} s in all "
                                           f"({HARD_CAP_FACTOR} x its {timeout_s:g} s stall timeout) and was "
                                           f"killed during {out.phase!r}")  # fmt: skip
    else:
        why = "killed by signal 9 (likely out of memory)" if exitcode == -9 else f"exit code {exitcode}"
        rec = base_record(cell, "failed", f"worker process died during {out.phase!r} without a result ({why})")
    rec["metrics"].update(out.metrics)
    rec["samples"].update(out.samples)
    kept = ", ".join(out.metric_names) or "none"
    rec["notes"].append(f"{rec['status']} during {out.phase!r}; the metrics measured before it are kept: {kept}")
    return rec


def measure_in_subprocess(cell: CellSpec, on_event: EventCallback | None = None) -> dict[str, Any]:
    """Run one cell in a fresh spawned process under its stall timeout and hard cap; never raises.

    The worker streams its phases and each metric's values as they complete; a worker killed for a
    timeout, or dead of a signal (out of memory), leaves a record that keeps the metrics it had sent and a
    note naming the phase it died in (``lost_record``). An exception in the driver (Ctrl-C, SIGTERM) kills
    the worker before it propagates; a driver killed outright takes the worker with it
    (``bench.worker.die_with_parent``).
    """
    ctx = mp.get_context("spawn")  # fork would inherit the parent's memory and threads
    q = ctx.Queue()
    from bench.worker import child_main

    proc = ctx.Process(target=child_main, args=(cell, q, os.getpid()), daemon=True)
    t0 = time.monotonic()
    proc.start()
    out = WorkerOutcome()
    try:
        on_phase = (lambda text: on_event("phase", cell, text)) if on_event else None
        out = watch_worker(lambda t: q.get(timeout=t), proc.is_alive, cell.profile.timeout_s, on_phase)
    finally:
        if out.record is None and proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        q.close()
    if out.record is not None:
        return out.record
    rec = lost_record(cell, out, proc.exitcode)
    rec["duration_s"] = round(time.monotonic() - t0, 3)
    return rec


def run(
    suite: Suite,
    settings: RunSettings,
    out_dir: Path,
    *,
    resume: Path | str | None = None,
    retry_failed: bool = False,
    on_event: EventCallback | None = None,
    measure: Callable[[CellSpec, EventCallback | None], dict[str, Any]] = measure_in_subprocess,
) -> RunResult:
    """Measure every selected cell, writing each record as soon as it is finished.

    ``resume``: ``"latest"`` or a run file; its cells already recorded are not run again, except, with
    ``retry_failed``, those recorded as failed or timed out: they run again and their new records replace
    the old ones in the file.
    """
    if retry_failed and resume is None:
        raise UsageError("--retry-failed goes with --resume: it re-runs the failed and timed-out cells of a run file")
    from bench.env import fingerprint
    from bench.store import RunWriter, reserve_path, utc_now

    cells = expand(suite, settings)  # validates names before anything is written
    profile: Profile = suite.profile(settings.profile)
    definition = suite_definition(suite)
    shash = definition_hash(definition)
    header = {
        "run_id": None,
        "suite": suite.name,
        "suite_hash": shash,
        "suite_definition": definition,
        "profile": profile.name,
        "settings": {
            "devices": sorted({c.key.device for c in cells}) or list(resolve_devices(settings.devices)),
            "dtypes": list(settings.dtypes or profile.dtypes),
            "batch_sizes": list(settings.batch_sizes or profile.batch_sizes),
            "threads": settings.threads,
            "allocator": settings.allocator,
            "tiers": list(settings.tiers) if settings.tiers else None,
            "families": list(settings.families) if settings.families else None,
            "shard": f"{settings.shard[0]}/{settings.shard[1]}" if settings.shard else None,
            "cells": len(cells),
        },
        "env": fingerprint(threads=settings.threads),
        "started_at": utc_now(),
    }
    writer: RunWriter
    if resume is not None:
        path = (
            find_resumable(out_dir, suite.name, shash, header["settings"], profile.name)
            if resume == "latest"
            else Path(resume)
        )
        if path is None:
            log.info("nothing to resume in %s; starting a new run", out_dir)
        else:
            writer = RunWriter.resume(path)
            if writer.doc["suite_hash"] != shash:
                raise UsageError(
                    f"{path}: was run with another definition of {suite.name!r} (hash {writer.doc['suite_hash']}); cannot resume it"
                )
    if resume is None or path is None:
        started = datetime.now(timezone.utc)
        path = reserve_path(out_dir, suite.name, started)
        header["run_id"] = f"{path.stem}-{shash[:6]}"
        writer = RunWriter(path, header)
    done = writer.done_keys()
    retried = (
        {CellKey.from_dict(r["key"]).id for r in writer.records if r["status"] in RETRIED} if retry_failed else set()
    )
    todo = [c for c in cells if c.key.id not in done or c.key.id in retried]
    todo_ids = {c.key.id for c in todo}
    result = RunResult(path=path, skipped_existing=len(cells) - len(todo))
    kept = {CellKey.from_dict(r["key"]).id: r for r in writer.records}
    for cell in cells:
        if cell.key.id not in todo_ids:
            result.records.append(kept[cell.key.id])
            if on_event:
                on_event("resumed", cell, kept[cell.key.id])
    for cell in todo:
        if on_event:
            on_event("start", cell, None)
        rec = measure(cell, on_event)
        if cell.key.id in retried:  # the new record replaces the failed one (one record per cell)
            writer.records[:] = [r for r in writer.records if CellKey.from_dict(r["key"]).id != cell.key.id]
        writer.add(rec)
        result.records.append(rec)
        if on_event:
            on_event("done", cell, rec)
    writer.finish(analyse=analyse_run)  # under the file's lock, over every cell (another --resume's too)
    return result


def cell_kind(cell: CellSpec) -> str:
    """What a cell's duration is like, for the ETA: ``train:<tier>`` when it trains models for accuracy,
    ``cost:<tier>`` when it measures costs only (params, MACs, latency, memory)."""
    acc = cell.profile.accuracy
    trains = acc is not None and "accuracy" in cell.profile.metrics and cell.key.tier in acc.tiers
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

    Feed it the runner's events (``on_event``); ``remaining_s()`` counts the running cell as its estimate
    less the time it has run (never below zero). ``clock`` is injectable for tests.
    """

    def __init__(self, cells: Iterable[CellSpec], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._left: dict[str, str] = {c.key.id: cell_kind(c) for c in cells}  # cell id -> kind, not finished
        self._seconds: dict[str, list[float]] = defaultdict(list)
        self._running: tuple[str, float] | None = None  # (cell id, started at)

    def on_event(self, event: str, cell: CellSpec, payload: Any) -> None:
        cid = cell.key.id
        if event == "start":
            self._running = (cid, self._clock())
        elif event in ("done", "resumed"):
            kind = self._left.pop(cid, cell_kind(cell))
            status = payload.get("status") if isinstance(payload, Mapping) else None
            # A skipped cell ends at once: its time says nothing about the cells that run.
            if event == "done" and self._running and self._running[0] == cid and status != "skipped":
                self._seconds[kind].append(self._clock() - self._running[1])
            if self._running and self._running[0] == cid:
                self._running = None

    def remaining_s(self) -> float | None:
        """Estimated seconds to the end of the run, or None before any cell has finished."""
        running = self._running[0] if self._running else None
        rest = estimate_remaining_s(self._seconds, (k for cid, k in self._left.items() if cid != running))
        if rest is None or running is None or running not in self._left:
            return rest
        current = estimate_remaining_s(self._seconds, [self._left[running]]) or 0.0
        return rest + max(0.0, current - (self._clock() - self._running[1]))


def analyse_run(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Derived results stored with the run: scaling fits when cells vary in sequence length."""
    if not any(r["key"].get("seq_len") is not None for r in records):
        return None
    try:
        from bench.scaling import analyse
    except ImportError:
        return None
    return analyse(records)


def find_resumable(out_dir: Path, suite: str, shash: str, settings: dict[str, Any], profile: str) -> Path | None:
    """The newest run file of this suite definition, profile and settings, if any."""
    from bench.errors import StoreError
    from bench.store import load_run

    folder = Path(out_dir) / suite
    if not folder.is_dir():
        return None
    keys = ("devices", "dtypes", "batch_sizes", "threads", "allocator", "tiers", "families", "shard")
    for f in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            doc = load_run(f)
        except StoreError:
            continue
        same = all(doc.get("settings", {}).get(k) == settings.get(k) for k in keys)
        if doc["suite_hash"] == shash and doc["profile"] == profile and same:
            return f
    return None


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), with 1 <= K <= N <= ``MAX_SHARDS``."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:  # also int()'s digit limit
        raise UsageError(f"--shard must look like K/N (e.g. 2/4), got {shown!r}") from None
    if not 1 <= n <= MAX_SHARDS:
        raise UsageError(f"--shard {shown}: N must be between 1 and {MAX_SHARDS}")
    if not (1 <= k <= n):
        raise UsageError(f"--shard {shown}: K must be between 1 and N")
    return k, n
