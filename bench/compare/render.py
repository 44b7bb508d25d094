"""Rendering a ``ComparisonReport`` (no verdict is made here): the Markdown of a pull-request comment and the
terminal tables (rich). Every string from the files or the user is escaped (``bench.report.escape``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench.compare.model import (
    ADDED,
    COMPARED,
    FAILED,
    REMOVED,
    CellComparison,
    ComparisonReport,
    MetricComparison,
    Verdict,
)
from bench.compare.thresholds import METRICS
from bench.spec import CellKey

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console
    from rich.table import Table


def format_value(metric: str, v: float | None) -> str:
    """A metric value for people, by how the metric is judged: ``31.20 ms`` (samples), ``210.4 MB`` (one
    measurement), ``4.089 G``, ``25.56 M`` (exact counts), ``93.10 pt`` (points)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    spec = METRICS.get(metric)
    kind, unit = (spec.kind, spec.unit) if spec is not None else ("points", "pt")
    if kind == "exact":
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return f"{v / div:.4g} {suffix}"
        return f"{v:.0f}"
    if kind == "sampled":
        text = f"{v:.3g}" if v < 1 else f"{v:.2f}"
    elif kind == "threshold":
        text = f"{v:.1f}"
    else:
        text = f"{v:.2f}"
    return f"{text} {unit}".rstrip()


def format_change(m: MetricComparison) -> str:
    """``+10.2%``, ``-1.50 pt``; exact counts that moved by less than 0.05% show the count (``+64``)."""
    if m.change is None:
        return "n/a"
    if m.change == 0:
        return "0"
    if METRICS[m.metric].kind == "exact" and abs(m.change) < 0.05 and m.baseline is not None and m.current is not None:
        return f"{m.current - m.baseline:+,.0f}"
    return f"{m.change:+.2f} pt" if m.threshold.unit == "pt" else f"{m.change:+.1f}%"


def verdict_text(m: MetricComparison) -> str:
    """The verdict plus why it cannot fail the build, when it cannot."""
    text = m.verdict.value if m.verdict is not Verdict.UNCHANGED else "~ unchanged"
    if m.verdict is Verdict.REGRESSED and not m.threshold.gating:
        text += " (not gating)"
    if m.env_changed and m.verdict is not Verdict.UNCHANGED:
        text += " (env changed)"
    return text


_MD_MARK = {Verdict.REGRESSED: "🔴", Verdict.IMPROVED: "🟢", Verdict.NOISY: "❔", Verdict.UNCHANGED: ""}


def cell_label(key: CellKey) -> str:
    """The cell id without the suite (every cell of a comparison shares it)."""
    return key.id.split("/", 1)[1]


def _md_escape(s: str) -> str:
    """Text from the files (errors, notes, run ids) as literal Markdown: no HTML, link, image, mention or cell."""
    from bench.report.escape import md_text

    return md_text(s)


def _md_code(s: str, in_table: bool = True) -> str:
    """A code span that no backtick inside can close early (``bench.report.escape.md_code``)."""
    from bench.report.escape import md_code

    return md_code(s, in_table)


def speed_text(m: MetricComparison) -> str | None:
    """``machine x1.152: +0.4% relative to it`` when the machine-speed reference moved by 0.5% or more."""
    if m.speed_factor is None or m.machine_change is None or abs(m.speed_factor - 1.0) < 0.005:
        return None
    return f"machine x{m.speed_factor:.3f}: {m.machine_change:+.1f}% relative to it"


def _md_stats(m: MetricComparison) -> str:
    parts = []
    if m.p_adjusted is not None:
        parts.append(f"p={m.p_adjusted:.2g}")
    if m.ci is not None:
        if _sampled(m):
            parts.append(f"ratio CI [{m.ci[0]:.3f}, {m.ci[1]:.3f}]")
        else:
            parts.append(f"CI [{m.ci[0]:+.2f}, {m.ci[1]:+.2f}] pt")
    if m.n_baseline is not None and m.n_current is not None:
        parts.append(f"n={m.n_baseline}/{m.n_current}")
    if speed := speed_text(m):
        parts.append(speed)
    if m.note:
        parts.append(m.note)
    return ", ".join(parts) or m.method


def to_markdown(report: ComparisonReport, *, max_cells: int = 400) -> str:
    """A pull-request comment: the summary line, the regressions and improvements, then every cell folded."""
    mark = "❌" if report.exit_code else ("⚠️" if report.env_blocked else "✅")
    lines = [f"{mark} **aigc-bench compare** -- {report.summary()}", ""]
    base, cur = report.baseline, report.current  # every string from the files or the user is escaped (a PR comment)
    lines.append(f"Baseline {_md_code(base.label, False)} ({_md_escape(', '.join(base.run_ids))}) vs current "
                 f"{_md_code(cur.label, False)} ({_md_escape(', '.join(cur.run_ids))}). "
                 f"Fail on: {_md_escape(', '.join(str(t) for t in report.thresholds if t.gating))}; "
                 f"alpha {report.alpha:g}, {_md_escape(report.correction)} correction.")  # fmt: skip
    if report.env_changes:
        what = "; ".join(_md_code(str(e), False) for e in report.env_changes)
        lines += ["", f"> **Environment changed** ({what}). "
                  + ("Verdicts are shown but nothing fails; pass `--allow-env-change` to gate anyway."
                     if report.env_blocked else "Compared anyway (`--allow-env-change`).")]  # fmt: skip
    for n in report.notes:
        lines += ["", f"> {_md_escape(n)}"]
    notable = report.regressions + report.improvements + report.noisy + report.explained
    if notable:
        lines += [
            "",
            "| cell | metric | baseline | current | change | verdict | evidence |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for c, m in notable:
            lines.append(f"| {_md_code(cell_label(c.key))} | {m.metric} | {format_value(m.metric, m.baseline)} | "
                         f"{format_value(m.metric, m.current)} | {format_change(m)} | {_MD_MARK[m.verdict]} "
                         f"{verdict_text(m)} | {_md_escape(_md_stats(m))} |")  # fmt: skip
    for status, title in (
        (FAILED, "Failed in current"),
        (ADDED, "Added (only in current)"),
        (REMOVED, "Removed (only in baseline)"),
    ):
        cs = report.with_status(status)
        if cs:
            lines += ["", f"**{title}** ({len(cs)}):"]
            lines += [
                f"- {_md_code(cell_label(c.key), False)}"
                + (f": {_md_escape(c.error)}" if c.error and status == FAILED else "")
                for c in cs
            ]
    lines += ["", f"<details><summary>All {len(report.cells)} cells</summary>", ""]
    names = shown_metrics(report)
    lines += ["| cell | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for c in report.cells[:max_cells]:
        if c.status != COMPARED:
            lines.append(f"| {_md_code(cell_label(c.key))} | {c.status} |" + " |" * (len(names) - 1))
            continue
        vals = []
        for name in names:
            m = c.metric(name)
            vals.append("" if m is None else f"{format_change(m)} {_MD_MARK[m.verdict]}".strip())
        lines.append(f"| {_md_code(cell_label(c.key))} | " + " | ".join(vals) + " |")
    if len(report.cells) > max_cells:
        lines.append(f"\n{len(report.cells) - max_cells} more cells not shown (see the JSON output).")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the terminal tables (rich)

_STYLE = {"regressed": "bold red", "improved": "green", "too noisy": "yellow", "unchanged": "dim"}


def table_text(report: ComparisonReport) -> str:
    """The terminal tables as plain text (200 columns), for ``--output`` with ``--format table``."""
    import io

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())  # capture only
    print_table(report, console)
    return console.export_text()


def _ci_text(m: MetricComparison) -> str:
    if m.ci is None:
        return ""
    return f"[{m.ci[0]:.3f}, {m.ci[1]:.3f}]" if _sampled(m) else f"[{m.ci[0]:+.2f}, {m.ci[1]:+.2f}] pt"


def _sampled(m: MetricComparison) -> bool:
    """Whether ``m`` came from a test on raw samples (its CI is of a ratio, not of a difference in points)."""
    spec = METRICS.get(m.metric)
    return spec is not None and spec.kind == "sampled"


def print_table(report: ComparisonReport, console: Console | None = None) -> None:
    """The summary, every cell's changes, then the notable ones with their evidence (to ``console``)."""
    from rich.console import Console

    from bench.report.escape import term as escape  # markup escaped AND control characters shown: file strings

    console = console or Console()
    style = "bold red" if report.exit_code else ("yellow" if report.env_blocked else "bold green")
    console.print(f"[{style}]{report.summary()}[/{style}]")
    if report.env_changes:
        what = escape("; ".join(str(e) for e in report.env_changes))
        tail = "verdicts shown, nothing fails (--allow-env-change to gate)" if report.env_blocked else "compared anyway"
        console.print(f"[yellow]environment changed[/yellow] ({what}): {tail}")
    for n in report.notes:
        console.print(f"[yellow]note:[/yellow] {escape(n)}")
    base, cur = report.baseline, report.current  # labels and run ids come from the user and the files
    gates = ", ".join(str(t) for t in report.thresholds if t.gating)
    console.print(f"baseline {escape(base.label)} ({escape(', '.join(base.run_ids))}) vs current {escape(cur.label)} "
                  f"({escape(', '.join(cur.run_ids))}); fail on {escape(gates)}; alpha {report.alpha:g}, "
                  f"{escape(report.correction)}")  # fmt: skip
    console.print(_cells_table(report))
    notable = report.regressions + report.improvements + report.noisy + report.explained
    if notable:
        console.print(_notable_table(notable))
    for status in (FAILED, ADDED, REMOVED):
        cs = report.with_status(status)
        if cs:
            console.print(f"[bold]{status}[/bold] ({len(cs)}): " + ", ".join(escape(cell_label(c.key)) for c in cs))
            for c in cs:
                if status == FAILED and c.error:
                    console.print(f"  {escape(cell_label(c.key))}: {escape(c.error)}")


def _cells_table(report: ComparisonReport) -> Table:
    """Every cell: its change per metric, or its status when it was not compared."""
    from rich.table import Table

    from bench.report.escape import term as escape

    t = Table(title="cells (change vs baseline)")
    t.add_column("cell")
    names = shown_metrics(report)
    for name in names:
        t.add_column(name, justify="right")
    for c in report.cells:
        if c.status != COMPARED:
            st = "red" if c.status == FAILED else "cyan"
            t.add_row(escape(cell_label(c.key)), f"[{st}]{escape(c.status)}[/{st}]", *([""] * (len(names) - 1)))
        else:
            t.add_row(escape(cell_label(c.key)), *(_cell_change(c.metric(name)) for name in names))
    return t


def shown_metrics(report: ComparisonReport) -> list[str]:
    """The metric columns of the cell tables: those the report has thresholds for (an optional metric such as
    ``instructions`` only when a side measured it or ``--fail-on`` named it), in compare's order."""
    return [t.metric for t in report.thresholds]


def _cell_change(m: MetricComparison | None) -> str:
    if m is None:
        return ""
    mark = "~" if m.verdict is Verdict.UNCHANGED else m.verdict.value
    return f"[{_STYLE[m.verdict.value]}]{format_change(m)} {mark}[/]"


def _notable_table(notable: Sequence[tuple[CellComparison, MetricComparison]]) -> Table:
    """The regressions, improvements, too-noisy and explained changes with their evidence."""
    from rich.table import Table

    from bench.report.escape import term as escape

    d = Table(title="regressions, improvements, too-noisy and explained changes")
    for col in ("cell", "metric", "baseline", "current", "change", "verdict", "p (adj.)", "CI", "how"):
        d.add_column(col, justify="right" if col in ("baseline", "current", "change", "p (adj.)") else "left")
    for c, m in notable:
        d.add_row(escape(cell_label(c.key)), m.metric, format_value(m.metric, m.baseline),
                  format_value(m.metric, m.current), format_change(m), f"[{_STYLE[m.verdict.value]}]{verdict_text(m)}[/]",
                  "" if m.p_adjusted is None else f"{m.p_adjusted:.2g}", escape(_ci_text(m)),
                  escape("; ".join(x for x in (speed_text(m), m.note or m.method) if x)))  # fmt: skip
    return d
