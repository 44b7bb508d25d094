"""Can a latency be trusted? An MLPerf-style verdict per cell, and the busy-machine check at the start of a run.

MLPerf's LoadGen marks a result INVALID when the run broke a rule that makes its number mean something (too few
queries, too short), and publishes it flagged rather than silently. Here a latency cell is **invalid** when its
own record shows that the number does not describe the model on this machine:

========  ==========================================================================================================
code      the record shows
========  ==========================================================================================================
speed     the machine-speed reference (:mod:`bench.metrics.latency`) moved by more than
          :data:`~bench.stats.UNSTEADY_SPEED_DRIFT` between before and after the measurement: its samples mix two
          machines (``speed_ref_drift``)
load      other work wanted the CPUs: the 1-minute load around the measurement, less this cell's own threads, plus
          its threads, exceeds the usable CPUs by more than :data:`BUSY_LOAD_SLACK` (``load_1m_before/after``,
          ``load_cpus``, ``latency_threads``). With torch's OpenMP threads on every core, one other busy task makes
          every parallel region wait for the thread it displaced: 10x slower, not 2x (issue 11)
samples   fewer than :data:`MIN_VALID_SAMPLES` timed samples (``latency_n``)
noise     IQR/median above :data:`~bench.stats.NOISY_IQR_OVER_MEDIAN` (``latency_iqr_ms / latency_p50_ms``)
========  ==========================================================================================================

**valid** when every check could be made and passed; **unknown** when none failed but some could not be made:
a record written before its fields existed (result files before load sampling have no load figures) is never
called invalid for what it did not record.

The verdict is stored in the record's metrics when its cell ends (``latency_validity``: valid | invalid |
unknown, ``latency_validity_reasons``: ``"code: detail; ..."``) and computed when a file without it is read
(:func:`annotate_frame`), so reports of published runs show it too. Everything here is a pure function of
stored records and run environments; reading the machine's load is :mod:`bench.env`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import UsageError
from bench.numbers import finite
from bench.stats import NOISY_IQR_OVER_MEDIAN, UNSTEADY_SPEED_DRIFT

if TYPE_CHECKING:
    import pandas as pd

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
#: fewer timed samples than this is invalid: the median and quartiles of 3 or 4 values move with one outlier
#: (the latency method itself stops at 3, ``FLOOR_SAMPLES``, only when a model is too slow for its time budget)
MIN_VALID_SAMPLES = 5
#: CPUs of background work tolerated before a machine counts as busy: an idle machine's daemons and this
#: tool's own driver process keep the load a little above zero
BUSY_LOAD_SLACK = 0.5
#: what each reason code means, for footnotes and footers
REASONS: dict[str, str] = {
    "speed": f"the machine-speed reference moved more than ±{UNSTEADY_SPEED_DRIFT:.0%} during the measurement",
    "load": "other work wanted the CPUs this cell's threads needed (1-minute load around the measurement)",
    "samples": f"fewer than {MIN_VALID_SAMPLES} timed samples",
    "noise": f"IQR/median above {NOISY_IQR_OVER_MEDIAN:.0%}",
}
_METRICS = ("latency_validity", "latency_validity_reasons")


def _num(value: Any) -> float | None:
    """A finite float, or None for a missing, NaN, boolean or non-numeric value (``bench.numbers.finite``)."""
    return finite(value)


# --- the busy machine ------------------------------------------------------------------------------------


def machine_busy(load: float, threads: int, cores: int) -> bool:
    """Whether ``load`` runnable tasks of other work leave fewer than ``threads`` of ``cores`` CPUs free.

    ``load + threads > cores + BUSY_LOAD_SLACK``: 2 threads on 2 cores tolerate a load of 0.5 from others.
    """
    return load + threads > cores + BUSY_LOAD_SLACK


def share_of_load(load: float, cpus: int, cpus_total: int | None) -> float:
    """The part of a machine-wide ``load`` that falls on this process's ``cpus`` (spread evenly over all CPUs).

    The load average and the runnable count are the whole machine's; a process pinned to 2 of 64 CPUs sees
    only its share of them.
    """
    if cpus_total and cpus_total > cpus > 0:
        return load * cpus / cpus_total
    return load


def busy_at_start(
    load_1m: float | None, runnable_others: int | None, threads: int, cpus: int, cpus_total: int | None = None
) -> bool:
    """Whether the machine is too busy for a run with ``threads`` threads per cell, before it starts.

    Busy when the tasks running now (``runnable_others``) leave too few CPUs (:func:`machine_busy`), or when
    the 1-minute load does and something runs now too. The load alone is not enough: it remembers for
    minutes a job that has ended (most often the previous run), and a run started right after one would
    always warn. The runnable count alone misses work that comes and goes. Unknown figures never make a
    machine busy.
    """
    now = _num(runnable_others)
    recent = _num(load_1m)
    if now is None:
        return False
    if machine_busy(share_of_load(now, cpus, cpus_total), threads, cpus):
        return True
    return recent is not None and now >= 1 and machine_busy(share_of_load(recent, cpus, cpus_total), threads, cpus)


def busy_figures(figures: Mapping[str, Any]) -> str:
    """The figures behind a busy verdict in words (``figures`` as ``bench.env.load_at_start`` gives them)."""
    load, now = _num(figures.get("load_1m")), _num(figures.get("runnable_others"))
    parts = ([f"load {load:.2f} over the last minute"] if load is not None else []) + (
        [f"{int(now)} other tasks running now"] if now is not None else []
    )
    return ", ".join([*parts, f"{figures.get('cpus')} CPUs, {figures.get('threads')} threads per cell"])


def busy_message(figures: Mapping[str, Any]) -> str:
    """The one-line warning ``aigc-bench run`` prints on a busy machine."""
    return (
        f"the machine is busy ({busy_figures(figures)}): latencies will be slow and noisy and cells measured under "
        "load are marked INVALID; stop the other work or lower --threads"
    )


# --- the verdict of one latency cell ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A latency cell's validity: ``status`` (valid | invalid | unknown), failed checks, checks not made."""

    status: str
    reasons: tuple[tuple[str, str], ...] = ()  # (code, detail) of each failed check
    unchecked: tuple[str, ...] = ()  # codes of the checks the record has no figures for

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.reasons)

    def to_metrics(self) -> dict[str, Any]:
        """The two metrics stored in a record: ``latency_validity`` and ``latency_validity_reasons``."""
        if self.reasons:
            text: str | None = "; ".join(f"{code}: {detail}" for code, detail in self.reasons)
        elif self.unchecked:
            text = "not recorded: " + ", ".join(self.unchecked)
        else:
            text = None
        return {"latency_validity": self.status, "latency_validity_reasons": text}


def judge(metrics: Mapping[str, Any], env: Mapping[str, Any] | None = None) -> Verdict | None:
    """The verdict of a cell from its metrics (a record's ``metrics`` or a ``load_results`` row) and its run's env.

    None when the cell has no latency. ``env`` (the run file's ``env``) supplies the CPUs and threads a record
    written before it kept them itself.
    """
    if _num(metrics.get("latency_p50_ms")) is None:
        return None
    env = env if isinstance(env, Mapping) else {}
    reasons: list[tuple[str, str]] = []
    unchecked: list[str] = []

    def check(code: str, result: str | None | bool) -> None:
        # result: a failure's detail, False for passed, None for "no figures"
        if result is None:
            unchecked.append(code)
        elif result:
            reasons.append((code, str(result)))

    check("speed", _speed(metrics))
    check("load", _load(metrics, env))
    check("samples", _samples(metrics))
    check("noise", _noise(metrics))
    status = INVALID if reasons else UNKNOWN if unchecked else VALID
    return Verdict(status, tuple(reasons), tuple(unchecked))


def _speed(m: Mapping[str, Any]) -> str | None | bool:
    from bench.repeat import judged_drift

    # A cell measured in several processes (run --repeat) is judged by its median process: one disturbed
    # process is one of K values, and its note says so (bench.repeat).
    drift, median = judged_drift(m)
    if drift is None:
        return None
    where = "in the median process" if median else "during the measurement"
    return abs(drift) > UNSTEADY_SPEED_DRIFT and f"the machine-speed reference moved {drift:+.0%} {where}"


def _load(m: Mapping[str, Any], env: Mapping[str, Any]) -> str | None | bool:
    loads = [v for v in (_num(m.get("load_1m_before")), _num(m.get("load_1m_after"))) if v is not None]
    cpus = _num(m.get("load_cpus")) or _num(env.get("cpu_affinity")) or _num(env.get("cpu_cores"))
    total = _num(m.get("load_cpus_total")) or _num(env.get("cpu_cores"))
    threads = _num(m.get("latency_threads")) or _num(env.get("threads"))
    if not loads or not cpus or not threads:
        return None
    load = max(loads)
    # The load includes this cell's own threads (at most `threads` of it): what is left is other work.
    others = share_of_load(max(0.0, load - threads), int(cpus), int(total) if total else None)
    if not machine_busy(others, int(threads), int(cpus)):
        return False
    return (f"1-minute load {load:.2f} around the measurement on {int(cpus)} CPUs: about {others:.1f} CPUs of "
            f"other work besides this cell's {int(threads)} threads")  # fmt: skip


def _samples(m: Mapping[str, Any]) -> str | None | bool:
    n = _num(m.get("latency_n"))
    if n is None:
        return None
    return n < MIN_VALID_SAMPLES and f"{int(n)} timed samples (minimum {MIN_VALID_SAMPLES})"


def _noise(m: Mapping[str, Any]) -> str | None | bool:
    iqr, p50 = _num(m.get("latency_iqr_ms")), _num(m.get("latency_p50_ms"))
    if iqr is None or p50 is None or p50 <= 0:
        return None
    ratio = iqr / p50
    return ratio > NOISY_IQR_OVER_MEDIAN and f"IQR/median {ratio:.0%} (limit {NOISY_IQR_OVER_MEDIAN:.0%})"


def verdict_metrics(metrics: Mapping[str, Any], env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the worker adds to a record's metrics when its cell ends: the verdict, or nothing without a latency."""
    v = judge(metrics, env)
    return v.to_metrics() if v is not None else {}


def stored_or_judged(metrics: Mapping[str, Any], env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The verdict metrics a record stored, else the verdict computed now (files written before it existed)."""
    if isinstance(metrics.get("latency_validity"), str):
        return {k: metrics.get(k) for k in _METRICS}
    return verdict_metrics(metrics, env)


def reason_codes(reasons: Any) -> list[str]:
    """The codes of a stored ``latency_validity_reasons`` text (``"load: ...; speed: ..."`` -> load, speed)."""
    if not isinstance(reasons, str):
        return []
    return [part.split(":", 1)[0].strip() for part in reasons.split("; ") if part.strip()]


# --- reading: reports, baselines -------------------------------------------------------------------------


def annotate_frame(frame: pd.DataFrame, docs: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """``frame`` (``load_results`` rows) with ``latency_validity`` and its reasons for every latency row.

    Rows that stored a verdict keep it; others get one computed from the row and the env of its run (matched
    by ``run_id`` among ``docs``). Returns a new frame; rows without a latency get None.
    """
    envs = {str(d.get("run_id")): d.get("env") for d in docs}
    rows = frame.to_dict("records")
    out = {k: [] for k in _METRICS}
    for row in rows:
        values = stored_or_judged(row, envs.get(str(row.get("run_id"))))
        for k in _METRICS:
            out[k].append(values.get(k))
    frame = frame.copy()
    for k in _METRICS:
        frame[k] = out[k]
    return frame


def invalid_flag(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """For an invalid latency: the text after its value (`` (INVALID: load, speed)``) and the footnote; else None."""
    if row.get("latency_validity") != INVALID:
        return None
    codes = reason_codes(row.get("latency_validity_reasons")) or ["?"]
    note = "INVALID latency: " + "; ".join(f"{c}: {REASONS.get(c, 'see the CSV')}" for c in codes)
    return f" (INVALID: {', '.join(codes)})", note


@dataclass(frozen=True)
class Tally:
    """Verdicts over a set of latency cells: counts, and per reason code how many were invalid or not checked."""

    total: int = 0
    invalid: int = 0
    unknown: int = 0
    why: tuple[tuple[str, int], ...] = ()  # (code, invalid cells), most frequent first
    unrecorded: tuple[tuple[str, int], ...] = ()  # (code, unknown cells lacking its figures)

    @property
    def valid(self) -> int:
        return self.total - self.invalid - self.unknown


def _ranked(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _words(counts: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{code} {n}" for code, n in counts)


def tally(rows: Iterable[Mapping[str, Any]]) -> Tally:
    """Count the verdicts of rows that carry one (``latency_validity`` and its reasons)."""
    total = invalid = unknown = 0
    why: dict[str, int] = {}
    unrecorded: dict[str, int] = {}
    for row in rows:
        status, reasons = row.get("latency_validity"), row.get("latency_validity_reasons")
        if status not in (VALID, INVALID, UNKNOWN):
            continue
        total += 1
        if status == INVALID:
            invalid += 1
            for c in reason_codes(reasons):
                why[c] = why.get(c, 0) + 1
        elif status == UNKNOWN:
            unknown += 1
            text = reasons.removeprefix("not recorded:") if isinstance(reasons, str) else ""
            for c in (x.strip() for x in text.split(",") if x.strip()):
                unrecorded[c] = unrecorded.get(c, 0) + 1
    return Tally(total, invalid, unknown, _ranked(why), _ranked(unrecorded))


def summary_lines(rows: Iterable[Mapping[str, Any]], docs: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """A report's footer on validity: how many latency cells are invalid and why, and runs started busy."""
    t = tally(rows)
    lines = []
    if t.total:
        parts = [f"{t.invalid} of {t.total} latency cells INVALID" + (f" ({_words(t.why)})" if t.why else "")]
        if t.unknown:
            missing = f" (not recorded: {_words(t.unrecorded)})" if t.unrecorded else ""
            parts.append(f"{t.unknown} unknown{missing}")
        parts.append(f"{t.valid} valid")
        lines.append("Latency validity: " + "; ".join(parts) + ".")
        if t.why:
            lines.append("INVALID means: " + "; ".join(f"{c}: {REASONS.get(c, c)}" for c, _ in t.why) + ".")
    for d in docs:
        busy = (d.get("env") or {}).get("busy_at_start") if isinstance(d.get("env"), Mapping) else None
        if isinstance(busy, Mapping) and busy.get("busy") is True:
            lines.append(f"Run {d.get('run_id')} started on a busy machine ({busy_figures(busy)}).")
    return lines


def refuse_invalid_baseline(doc: Mapping[str, Any], path: Any) -> None:
    """``UsageError`` (exit 2) when a run to be saved as a baseline has invalid latency cells."""
    env = doc.get("env") if isinstance(doc.get("env"), Mapping) else {}
    t = tally(stored_or_judged(r.get("metrics") or {}, env) for r in doc.get("records") or [] if isinstance(r, Mapping))
    if t.invalid:
        raise UsageError(f"{path}: {t.invalid} of {t.total} latency cells are INVALID ({_words(t.why)}); a baseline "
                         "must be trustworthy: rerun on a quiet machine or pass --force to save it anyway")  # fmt: skip
