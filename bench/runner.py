"""Expand a suite into cells, hand them to an executor, and record each result as it comes back.

The runner owns the run's side effects (the results file, under its lock; resume and --retry-failed);
where and how a cell is measured is the executor's (``bench.executors``: a spawned worker per cell by
default). It reports progress through a callback and never prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UsageError

# Re-exported: the ETA and the executor's pieces were defined here before (tests and callers import them).
from bench.eta import EtaEstimator, cell_kind, estimate_remaining_s  # noqa: F401
from bench.executors import (  # noqa: F401
    HARD_CAP_FACTOR,
    EventCallback,
    Executor,
    InProcessExecutor,
    LocalProcessExecutor,
    MeasureFn,
    WorkerOutcome,
    limit_fired,
    lost_record,
    measure_in_subprocess,
    watch_worker,
)
from bench.spec import DEVICES, DTYPES, EAGER_ONLY, CellKey, CellSpec, Profile, Suite, freeze

if TYPE_CHECKING:
    from bench.store import RunWriter

log = logging.getLogger(__name__)

#: Statuses ``retry_failed`` runs again.
RETRIED = ("failed", "timeout")
#: Shards a run may be split into: more is a typo (a CI matrix of 10,000 jobs is not a plan).
MAX_SHARDS = 10_000
#: Hex digits of the suite definition's hash stored as ``suite_hash`` (resume and merge match on it): fixed,
#: since another length would make every stored run look like another definition.
SUITE_HASH_CHARS = 16
#: Hex digits of that hash in a run id: enough to tell a run of an edited suite from the same file name.
RUN_ID_HASH_CHARS = 6
#: A bad ``--shard`` value is quoted in its error cut to this many characters: the message stays one line.
SHOWN_CHARS = 40


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
    executions: tuple[str, ...] | None = None  # None: the profile's (bench.execution; eager by default)
    peak_budget_s: float | None = 0.0  # > 0: measure the machine peak per device first, ~this long each
    # (bench.peak); None: scaled to the profile (``auto_peak_budget``)
    repeat: int = 1  # > 1: each latency cell measured in this many fresh processes (bench.repeat)
    metrics: tuple[str, ...] = ()  # metrics measured on top of the profile's (``run --metric``)


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
    """A run file's ``suite_hash``: a short stable hash of ``suite_definition`` (variants as resolved);
    a run resumes only into a file of the same hash."""
    blob = json.dumps(definition, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:SUITE_HASH_CHARS]


def expand(suite: Suite, settings: RunSettings) -> list[CellSpec]:
    """Every cell the settings select, in a stable order (tier, family, device, dtype, batch, length, mode,
    execution). An autocast execution at fp32 runs at bf16 (``bench.execution.cell_dtype``); a cell asked for
    twice that way is expanded once."""
    from bench.sizing import resolve_tier

    profile = with_metrics(suite.profile(settings.profile), settings.metrics)
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
    from bench.execution import cell_dtype, check_executions

    executions = check_executions(settings.executions or profile.executions)
    # the profile's CUDA-only executions (compile-max, reduce-overhead) join on CUDA, unless --execution is given
    cuda = () if settings.executions else check_executions(profile.cuda_executions)
    execs = {d: executions + tuple(x for x in cuda if d == "cuda" and x not in executions) for d in devices}
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
                                for ex in execs[device][:1] if once else execs[device]:
                                    key = CellKey(suite=suite.name, tier=tier.name, family=variant.family,
                                                  model=variant.model, device=device, dtype=cell_dtype(ex, dtype),
                                                  batch_size=batch, input_shape=tuple(tier.input_shape),
                                                  seq_len=seq_len, mode=mode, execution=ex)  # fmt: skip
                                    cells.append(CellSpec(key=key, variant=variant, input_kind=suite.input_kind,
                                                          input_args=suite.input_args, profile=profile,
                                                          threads=settings.threads, extra=extra,
                                                          allocator=settings.allocator))  # fmt: skip
    cells = list({c.key.id: c for c in cells}.values())  # autocast at fp32 and at bf16 are the same cell
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


def with_metrics(profile: Profile, names: Sequence[str]) -> Profile:
    """The profile measuring ``names`` too (``run --metric``), after its own; unknown names are a usage error."""
    from dataclasses import replace

    from bench.registry import METRICS

    for n in names:
        METRICS.get(n)  # UnknownNameError (exit 2) with the valid names
    extra = tuple(n for n in dict.fromkeys(names) if n not in profile.metrics)
    return replace(profile, metrics=profile.metrics + extra) if extra else profile


def select_shard(cells: Sequence[CellSpec], k: int, n: int) -> list[CellSpec]:
    """A deterministic 1/n of the cells (shard k of n, 1-based), balanced by model.

    Cells are dealt round-robin over the sorted cell ids, so every shard gets a similar mix of
    models whatever the machine, and the union of the n shards is every cell exactly once.
    """
    if not (1 <= k <= n):
        raise UsageError(f"shard {k}/{n} is out of range; K must be between 1 and N")
    ordered = sorted(cells, key=lambda c: c.key.id)
    return [c for i, c in enumerate(ordered) if i % n == k - 1]


def run(
    suite: Suite,
    settings: RunSettings,
    out_dir: Path,
    *,
    resume: Path | str | None = None,
    retry_failed: bool = False,
    retry_invalid: bool = False,
    on_event: EventCallback | None = None,
    executor: Executor | None = None,
    measure: MeasureFn | None = None,
) -> RunResult:
    """Measure every selected cell, writing each record as soon as it is finished.

    ``resume``: ``"latest"`` or a run file; its cells already recorded are not run again, except, with
    ``retry_failed``, those recorded as failed or timed out: they run again and their new records replace
    the old ones in the file; with ``retry_invalid``, those whose latency was judged INVALID (the machine's
    speed moved, or too noisy: ``bench.validity``) run again the same way.
    ``executor`` measures the cells (default: ``LocalProcessExecutor``, a spawned worker per cell): the run
    submits every cell to measure, writes each record as it completes, and closes the executor when it
    ends, however it ends (on Ctrl-C or SIGTERM the cells finished are in the file). ``measure``: a function
    that measures one cell in this process (tests), short for ``executor=InProcessExecutor(measure)``.
    """
    if retry_failed and resume is None:
        raise UsageError("--retry-failed goes with --resume: it re-runs the failed and timed-out cells of a run file")
    if retry_invalid and resume is None:
        raise UsageError("--retry-invalid goes with --resume: it re-measures the cells of a run file whose latency "
                         "was judged INVALID")  # fmt: skip
    if executor is not None and measure is not None:
        raise TypeError("run(): give an executor or a measure function, not both")
    if executor is None:
        executor = InProcessExecutor(measure) if measure is not None else LocalProcessExecutor()
    try:
        cells = expand(suite, settings)  # validates names before anything is written
        writer = open_run(suite, settings, cells, out_dir, resume)
        done = writer.done_keys()
        retried = {
            CellKey.from_dict(r["key"]).id
            for r in writer.records
            if (retry_failed and r["status"] in RETRIED) or (retry_invalid and _invalid_latency(r, writer.doc))
        }
        todo = [c for c in cells if c.key.id not in done or c.key.id in retried]
        todo_ids = {c.key.id for c in todo}
        result = RunResult(path=writer.path, skipped_existing=len(cells) - len(todo))
        kept = {CellKey.from_dict(r["key"]).id: r for r in writer.records}
        for cell in cells:
            if cell.key.id not in todo_ids:
                result.records.append(kept[cell.key.id])
                if on_event:
                    on_event("resumed", cell, kept[cell.key.id])
        from bench.repeat import Rounds, round_events

        rounds = Rounds(settings.repeat, todo)
        for cell in todo:
            executor.submit(cell, on_event)
        for cell in rounds.later_rounds(todo):  # interleaved across cells (bench.repeat); shown as phases
            executor.submit(cell, round_events(on_event, settings.repeat))
        for cell, rec in executor.as_completed():
            n, combined = rounds.add(cell.key.id, rec)
            if n > 1:  # a later round: once all are in, the combined record replaces the first round's
                if combined is not None:
                    _replace_record(writer, result, cell.key.id, combined)
                continue
            if cell.key.id in retried:  # the new record replaces the failed one (one record per cell)
                writer.records[:] = [r for r in writer.records if CellKey.from_dict(r["key"]).id != cell.key.id]
            writer.add(rec)
            result.records.append(rec)
            if on_event:
                on_event("done", cell, rec)
    finally:
        executor.close()  # drops the cells not measured and ends any still running (an interrupted run)
    writer.finish(analyse=analyse_run)  # under the file's lock, over every cell (another --resume's too)
    return result


def _replace_record(writer: RunWriter, result: RunResult, cell_id: str, record: dict[str, Any]) -> None:
    """Put a cell's combined record (``--repeat``) in place of its first round's, in the file and the result."""
    writer.add(record)  # replaces the cell's record in place
    result.records[:] = [record if CellKey.from_dict(r["key"]).id == cell_id else r for r in result.records]


def open_run(suite: Suite, settings: RunSettings, cells: Sequence[CellSpec], out_dir: Path,
             resume: Path | str | None) -> RunWriter:  # fmt: skip
    """The writer of the run's file: the resumed one (``"latest"`` matching file, or the file given), else a
    new file under ``out_dir/<suite>/`` with the run's header."""
    from bench.env import fingerprint
    from bench.execution import check_executions
    from bench.store import RunWriter, reserve_path, utc_now

    profile: Profile = suite.profile(settings.profile)
    executions = check_executions(settings.executions or profile.executions)
    if not settings.executions and any(c.key.device == "cuda" for c in cells):
        executions += tuple(x for x in check_executions(profile.cuda_executions) if x not in executions)
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
            # only when not eager alone: the settings of runs before executions existed stay as they were
            **({"executions": list(executions)} if executions != EAGER_ONLY else {}),
            # only when asked for: the settings of runs without them stay as they were
            **({"repeat": settings.repeat} if settings.repeat > 1 else {}),
            **({"metrics": list(settings.metrics)} if settings.metrics else {}),
        },
        "env": fingerprint(threads=settings.threads),
        "started_at": utc_now(),
    }
    if resume is not None:
        path = (
            find_resumable(out_dir, suite.name, shash, header["settings"], profile.name)
            if resume == "latest"
            else Path(resume)
        )
        if path is not None:
            writer = RunWriter.resume(path)
            if writer.doc["suite_hash"] != shash:
                raise UsageError(
                    f"{path}: was run with another definition of {suite.name!r} (hash {writer.doc['suite_hash']}); cannot resume it"
                )
            return writer
        log.info("nothing to resume in %s; starting a new run", out_dir)
    budget = settings.peak_budget_s
    if budget is None:
        budget = auto_peak_budget(cells[0].profile) if cells else 0.0
    if budget > 0:  # before any cell, on the quiet machine; stored with the environment
        from bench.peak import measure_run_peak

        settings_ = header["settings"]
        header["env"]["peak"] = measure_run_peak(settings_["devices"], settings_["dtypes"], settings.threads,
                                                 budget)  # fmt: skip
    path = reserve_path(out_dir, suite.name, datetime.now(timezone.utc))
    header["run_id"] = f"{path.stem}-{shash[:RUN_ID_HASH_CHARS]}"
    return RunWriter(path, header)


def _invalid_latency(record: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Whether a stored record's latency is INVALID as the reports judge it (``bench.validity.stored_or_judged``:
    the verdict stored with the record, else judged now for files written before verdicts were stored)."""
    from bench.validity import INVALID, stored_or_judged

    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return False
    return stored_or_judged(metrics, doc.get("env")).get("latency_validity") == INVALID


#: the machine peak's budget per device, as a multiple of the profile's minimum run time per cell, and its bounds:
#: a profile that times each cell for 0.5 s (quick: a smoke run of ~9 cells) spends 1.25 s on the peak, not 5
PEAK_BUDGET_PER_MIN_RUN = 2.5
PEAK_BUDGET_BOUNDS_S = (1.0, 5.0)


def auto_peak_budget(profile: Any) -> float:
    """Seconds per device for the machine peak when ``--peak-budget`` is not given: 2.5 x the profile's
    ``min_run_time_s``, within 1-5 s (default profile: 5 s; quick: 1.25 s)."""
    lo, hi = PEAK_BUDGET_BOUNDS_S
    return min(hi, max(lo, PEAK_BUDGET_PER_MIN_RUN * float(profile.min_run_time_s)))


def analyse_run(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Derived results stored with the run: scaling fits when cells vary in sequence length."""
    if not any(r["key"].get("seq_len") is not None for r in records):
        return None
    from bench.execution import one_execution

    records = one_execution(records)  # fits of one execution: eager's (compiled points would join its series)
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
    keys = (
        "devices",
        "dtypes",
        "batch_sizes",
        "threads",
        "allocator",
        "tiers",
        "families",
        "shard",
        "executions",
        "repeat",
        "metrics",
    )
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
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:  # also int()'s digit limit
        raise UsageError(f"--shard must look like K/N (e.g. 2/4), got {shown!r}") from None
    if not 1 <= n <= MAX_SHARDS:
        raise UsageError(f"--shard {shown}: N must be between 1 and {MAX_SHARDS}")
    if not (1 <= k <= n):
        raise UsageError(f"--shard {shown}: K must be between 1 and N")
    return k, n
