"""``aigc-bench history``: one series per cell over stored runs, and where each series stepped (asv's regressions).

A folder of run files (``results/``, a CI artifact store) or of baselines holds the same cells measured again
and again. ``history`` orders the runs by when they started (their environment's ``git_commit`` is shown
beside), takes one metric per cell per run (``latency_p50_ms`` by default; ok cells only), and finds the
change points of each series by binary segmentation (``change_points``): the split that lowers the squared
error of the log values most, kept when the gain beats a penalty scaled by the series' own noise (a BIC-like
``PENALTY * sigma^2 * ln n``, sigma from the median absolute first difference, robust to the steps
themselves) and the levels on either side differ by at least ``min_change``; then each side again. A level
must hold for ``MIN_SIZE`` runs, so one noisy run is not a step. Binary segmentation rather than PELT: series
are tens to hundreds of runs, and the recursive split is 40 lines anyone can read (``ruptures`` would add
a dependency for the same answer on such short series).

``write_history`` writes ``history.md`` (a table of the steps, then one row per cell) and one PNG per cell
that stepped; the HTML report links to it when it sits beside the reports (``reports/history/``).
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError

#: a level must hold for this many runs (one slow run is noise, not a step)
MIN_SIZE = 2
#: smallest step reported, relative (5%: ``compare``'s default latency threshold)
MIN_CHANGE = 0.05
#: the penalty of one more change point, in units of the series' noise variance times ln(n) (BIC uses 2 per
#: parameter; 3 leaves white noise of 20-200 points without a false step in our tests)
PENALTY = 3.0
#: the noise floor of a log series (0.2%): a perfectly steady series (instruction counts) still needs a real step
MIN_SIGMA = 0.002


@dataclass(frozen=True)
class Point:
    """One run's value of one cell."""

    run_id: str
    started_at: str
    commit: str | None
    value: float


@dataclass(frozen=True)
class Step:
    """A change point: the level changed from ``before`` to ``after`` at ``index`` (the first run of the new level)."""

    index: int
    before: float  # median of the level before
    after: float  # median of the level from ``index`` on

    @property
    def change_pct(self) -> float:
        return (self.after / self.before - 1.0) * 100.0 if self.before else math.inf


@dataclass(frozen=True)
class Series:
    """One cell's values over the runs, oldest first, and its steps."""

    cell: str
    metric: str
    points: tuple[Point, ...]
    steps: tuple[Step, ...]


# --------------------------------------------------------------------------- change points (pure)


def _sse(prefix: Sequence[float], prefix2: Sequence[float], lo: int, hi: int) -> float:
    n = hi - lo
    s = prefix[hi] - prefix[lo]
    return (prefix2[hi] - prefix2[lo]) - s * s / n if n else 0.0


def noise_sigma(x: Sequence[float]) -> float:
    """The noise of a series: the median absolute first difference / (0.6745 sqrt 2), robust to a few steps."""
    if len(x) < 3:
        return MIN_SIGMA
    diffs = [abs(b - a) for a, b in zip(x, x[1:], strict=False)]
    return max(statistics.median(diffs) / (0.6745 * math.sqrt(2)), MIN_SIGMA)


def change_points(values: Sequence[float], *, min_change: float = MIN_CHANGE, min_size: int = MIN_SIZE,
                  penalty: float = PENALTY) -> list[int]:  # fmt: skip
    """Indices where the level of ``values`` (positive numbers) changes: each the first index of a new level.

    Binary segmentation of the log values (see the module docstring); sorted.
    """
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError("change_points needs positive finite values")
    x = [math.log(v) for v in values]
    n = len(x)
    if n < 2 * min_size:
        return []
    prefix, prefix2 = [0.0], [0.0]
    for v in x:
        prefix.append(prefix[-1] + v)
        prefix2.append(prefix2[-1] + v * v)
    pen = penalty * noise_sigma(x) ** 2 * math.log(n)
    least = math.log1p(min_change)

    def split(lo: int, hi: int) -> list[int]:
        whole = _sse(prefix, prefix2, lo, hi)
        best, at = 0.0, None
        for k in range(lo + min_size, hi - min_size + 1):
            gain = whole - _sse(prefix, prefix2, lo, k) - _sse(prefix, prefix2, k, hi)
            if gain > best:
                best, at = gain, k
        if at is None or best <= pen:
            return []
        left = (prefix[at] - prefix[lo]) / (at - lo)
        right = (prefix[hi] - prefix[at]) / (hi - at)
        if abs(right - left) < least:
            return []
        return [*split(lo, at), at, *split(at, hi)]

    return split(0, n)


def steps_of(values: Sequence[float], cps: Sequence[int], min_change: float = MIN_CHANGE) -> tuple[Step, ...]:
    """Each change point with the medians of the levels either side (steps smaller than ``min_change`` dropped)."""
    bounds = [0, *cps, len(values)]
    levels = [statistics.median(values[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    out = []
    for i, cp in enumerate(cps):
        step = Step(cp, float(levels[i]), float(levels[i + 1]))
        if abs(step.change_pct) >= min_change * 100.0:
            out.append(step)
    return tuple(out)


# --------------------------------------------------------------------------- series from stored runs


def _order(doc: dict[str, Any]) -> tuple[str, str]:
    return (str(doc.get("started_at") or ""), str(doc.get("run_id") or ""))


def load_series(source: str | Path, metric: str = "latency_p50_ms", cells: Sequence[str] = (), *,
                baselines_dir: str | Path | None = None, min_change: float = MIN_CHANGE) -> list[Series]:  # fmt: skip
    """Every cell's series of ``metric`` over the runs under ``source`` (a folder, run file or baseline name).

    ``cells``: shell-style patterns of cell ids (``*resnet*``); none: every cell. Bad input (no run files, an
    unknown metric, patterns that match no cell) is a ``UsageError`` naming the valid choices.
    """
    from bench import catalogue
    from bench.baselines import DEFAULT_DIR, resolve
    from bench.numbers import finite
    from bench.result import cell_id
    from bench.store import load_runs, show_path

    known = [c.name for c in catalogue.columns() if c.better is not None]
    if catalogue.column(metric) is None:
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown metric {metric!r}{hint}; valid choices: {', '.join(known)}")
    runs = load_runs(resolve(source, baselines_dir or DEFAULT_DIR))
    if not runs:
        raise UsageError(f"{show_path(source)}: no aigc-bench run files found")
    by_cell: dict[str, list[Point]] = {}
    seen: set[str] = set()
    for _, doc in sorted(runs, key=lambda pd: _order(pd[1])):
        if doc["run_id"] in seen:  # a run found twice (``baseline save`` copies a run file): one point
            continue
        seen.add(doc["run_id"])
        commit = (doc.get("env") or {}).get("git_commit")
        for rec in doc["records"]:
            value = finite((rec.get("metrics") or {}).get(metric)) if rec["status"] == "ok" else None
            if value is not None and value > 0:
                point = Point(str(doc["run_id"]), str(doc.get("started_at") or ""), commit, value)
                by_cell.setdefault(cell_id(rec), []).append(point)
    ids = sorted(by_cell)
    if cells:
        chosen = [i for i in ids if any(fnmatch.fnmatchcase(i, p) or i == p for p in cells)]
        if not chosen:
            close = difflib.get_close_matches(cells[0], ids, n=3, cutoff=0.3)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise UsageError(f"no cell with {metric} matches {', '.join(cells)} in {show_path(source)}{hint}")
        ids = chosen
    if not ids:
        raise UsageError(f"{show_path(source)}: no ok cell has {metric}")
    out = []
    for i in ids:
        pts = by_cell[i]
        values = [p.value for p in pts]
        out.append(Series(i, metric, tuple(pts), steps_of(values, change_points(values, min_change=min_change),
                                                          min_change)))  # fmt: skip
    return out


# --------------------------------------------------------------------------- output


def to_markdown(series: Sequence[Series]) -> str:
    """``history.md``: the steps found, then one row per cell (every string from a file escaped)."""
    from bench.report.escape import md_code, md_text

    metric = series[0].metric if series else "?"
    lines = [f"# History of {md_text(metric)}", "",
             f"{len(series)} cells; runs ordered by start time. A step is a change of level of at least "
             f"{MIN_CHANGE:.0%} that holds for {MIN_SIZE}+ runs (binary segmentation, `bench.history`).", "",
             "## Steps", ""]  # fmt: skip
    stepped = [(s, st) for s in series for st in s.steps]
    if stepped:
        lines += [
            "| cell | at run | commit | started | before | after | change | figure |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s, st in stepped:
            p = s.points[st.index]
            lines.append(f"| {md_code(s.cell, True)} | {st.index} ({md_code(p.run_id, True)}) | "
                         f"{md_code((p.commit or '?')[:12], True)} | {md_text(p.started_at)} | {st.before:.4g} | "
                         f"{st.after:.4g} | {st.change_pct:+.1f}% | ![]({figure_name(s.cell)}) |")  # fmt: skip
    else:
        lines.append("No step found.")
    lines += ["", "## Cells", "", "| cell | runs | first | last | min | max | steps |", "|---|---|---|---|---|---|---|"]
    for s in series:
        v = [p.value for p in s.points]
        lines.append(f"| {md_code(s.cell, True)} | {len(v)} | {v[0]:.4g} | {v[-1]:.4g} | {min(v):.4g} | "
                     f"{max(v):.4g} | {len(s.steps)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def figure_name(cell: str) -> str:
    """The PNG of a cell's series (a safe file name, whatever the cell id holds)."""
    from bench.report.escape import safe_component

    return f"{safe_component(cell.replace('/', '_'))}.png"


def draw(s: Series) -> bytes:
    """A PNG of one series: the values over the runs, each level's median, a dashed line at each step."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    try:
        v = [p.value for p in s.points]
        ax.plot(range(len(v)), v, "o-", ms=3, lw=0.8, color="0.3")
        bounds = [0, *(st.index for st in s.steps), len(v)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            ax.hlines(statistics.median(v[a:b]), a, b - 1, colors="tab:red", lw=2)
        for st in s.steps:
            ax.axvline(st.index - 0.5, ls="--", color="tab:red", lw=0.8)
        ax.set_xlabel("run (oldest first)")
        ax.set_ylabel(s.metric)
        ax.set_title(s.cell, fontsize=8)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def write_history(series: Sequence[Series], out_dir: str | Path) -> list[Path]:
    """``history.md`` and a PNG per cell that stepped, in ``out_dir`` (created); the paths written."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for s in series:
            if s.steps:
                p = folder / figure_name(s.cell)
                p.write_bytes(draw(s))
                written.append(p)
        md = folder / "history.md"
        md.write_text(to_markdown(series), encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write the history to {folder}: {e.strerror or e}") from None
    return [md, *written]
