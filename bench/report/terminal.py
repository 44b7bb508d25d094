"""Terminal output of ``aigc-bench run``: a progress bar over cells and the report's summary tables.

Every string that did not come from this module (names, errors, devices; from suites or result files)
goes through ``bench.report.escape.term``: rich markup escaped and control characters shown, not sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bench.report.escape import term
from bench.report.frames import frame_from_records
from bench.report.main_table import build_tables
from bench.report.model import Cell
from bench.report.model import Table as ReportTable
from bench.result import Status
from bench.spec import CellSpec
from bench.validity import annotate_frame, stored_or_judged, summary_lines


class ProgressView:
    """A rich progress bar fed by the runner's events (done/total, ETA, current model and phase)."""

    def __init__(self, console: Console, total: int, eta: Callable[[], float | None] | None = None) -> None:
        # rich's own ETA needs several steps within 30 s; cells take longer: ``eta`` (bench.runner.EtaEstimator)
        remaining = _EtaColumn(eta) if eta is not None else TimeRemainingColumn()
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            remaining,
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=total)
        self.failed = 0
        self.flight: dict[str, tuple[str, str]] = {}  # cell id -> (label, phase) of the cells running now

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_event(self, event: str, cell: CellSpec, payload: Any) -> None:
        k = cell.key
        # names like "convnext_tiny[dims=88]" would otherwise be read as rich markup
        label = term(
            f"{k.tier}/{k.model} {k.device} {k.dtype} b{k.batch_size}" + (f" T{k.seq_len}" if k.seq_len else "")
        )
        if k.mode != "infer":
            label += f" {term(k.mode)}"
        # Several cells may be in flight (--jobs, Ray): each shows its phase and where it runs (slot or host).
        where = payload.get("slot") or payload.get("host") if isinstance(payload, dict) else None
        if event == "start":
            self.flight[k.id] = (f"{label} @{term(where)}" if where else label, "start")
        elif event == "phase" and k.id in self.flight:
            self.flight[k.id] = (self.flight[k.id][0], term(payload))
        if event in ("start", "phase"):
            text = " | ".join(f"{lab} · {ph}" for lab, ph in self.flight.values()) or f"{label} · {term(payload)}"
            self.progress.update(self.task, description=text)
        elif event == "done":
            self.flight.pop(k.id, None)
            status = Status(payload["status"])
            if status.broken:
                self.failed += 1
                self.progress.console.print(f"[red]{status}[/red] {label}: {term(payload.get('error'))}")
            elif status is Status.SKIPPED:
                self.progress.console.print(f"[yellow]skipped[/yellow] {label}: {term(payload.get('error'))}")
            self.progress.update(self.task, advance=1, description=f"{label} · {term(status.value)}")


class _EtaColumn(ProgressColumn):
    """The run's estimated time left, from a callable (seconds, or None while unknown)."""

    def __init__(self, eta: Callable[[], float | None]) -> None:
        super().__init__()
        self.eta = eta

    def render(self, task: Any) -> Text:
        s = None if task.finished else self.eta()
        if s is None:
            return Text("-:--:--" if not task.finished else "0:00:00", style="progress.remaining")
        s = int(round(s))
        return Text(f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}", style="progress.remaining")


#: a MAC cell flagged against fvcore / FlopCounterMode: ``ours (fvcore x, FCM y)``
_THEIRS = re.compile(r"^(?P<ours>.*?) \((?P<theirs>.+)\)$")
#: label columns (family, model) are as wide as their longest label up to this; longer names fold onto a second
#: line, never cut to "deit_disti…"
MAX_LABEL_CHARS = 22


def _split_theirs(column_key: str, c: Cell) -> tuple[Cell, str | None]:
    """A flagged MAC cell without the other counters' counts (they go under the table: in the cell they made
    every such row wrap to three to five lines at 120-140 columns), and those counts."""
    m = _THEIRS.match(c.text) if column_key == "macs" and c.notes else None
    if m is None:
        return c, None
    return replace(c, text=m["ours"]), m["theirs"]


def cross_checks(t: ReportTable) -> list[str]:
    """``model: fvcore 4.79, FCM 4.78`` for each model whose MAC cell shows other counters' counts, once each."""
    out: dict[str, str] = {}
    for g in t.groups:
        for r in g.rows:
            for col, c in zip(t.columns, r.cells, strict=True):
                theirs = _split_theirs(col.key, c)[1]
                if theirs is not None:
                    out.setdefault(r.labels[-1] if len(r.labels) < 3 else r.labels[1], theirs)
    return [f"{model}: {theirs}" for model, theirs in out.items()]


def rich_table(t: ReportTable) -> Table:
    """A report table (``bench.report.model.Table``) as a rich table that fits 120-140 columns: best values bold
    green, footnote marks; labels never cut (``MAX_LABEL_CHARS``); the other counters' MACs of a flagged cell are
    left to ``cross_checks`` (printed under the table)."""
    # titles, headers (devices) and cells all hold names from the data: every string is escaped
    rt = Table(
        title=term(t.title),
        caption=term(t.caption) if t.caption else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )  # no rules: fits 120-140 columns
    for j, h in enumerate(t.label_headers):
        groups = [len(g.label) for g in t.groups] if j == 0 else []  # group labels sit in the first column
        longest = max([len(r.labels[j]) for g in t.groups for r in g.rows] + [len(h), *groups])
        # a fixed width: rich's solver would otherwise narrow the widest (label) column first and then crop the right
        rt.add_column(term(h), width=min(longest, MAX_LABEL_CHARS), overflow="fold")
    for c in t.columns:  # "GMACs/sample" may break after its "/": a header must not widen its column
        rt.add_column(term(re.sub(r"/(?=\w{3})", "/ ", f"{c.group} {c.header}".strip())), justify="right",
                      overflow="fold")  # fmt: skip
    width = len(t.label_headers) + len(t.columns)
    for gi, g in enumerate(t.groups):
        if g.label:
            rt.add_row(f"[bold]{term(g.label)}[/bold]", *[""] * (width - 1))
        for i, r in enumerate(g.rows):
            cells = []
            for col, c in zip(t.columns, r.cells, strict=True):
                c = _split_theirs(col.key, c)[0]
                text = term(c.text) + ("".join(f"[{n}]" for n in c.notes) if c.notes else "")
                if c.best:
                    text = f"[bold green]{text}[/bold green]"
                elif c.status in ("failed", "timeout"):
                    text = f"[red]{text}[/red]"
                cells.append(text)
            last = i == len(g.rows) - 1 and gi < len(t.groups) - 1
            rt.add_row(*(term(x) for x in r.labels), *cells, end_section=last)
    return rt


def _report_tables(records: Iterable[Mapping[str, Any]]) -> list[ReportTable]:
    from bench.pretraining.report import tables as objective_tables

    records = list(records)
    if not records:
        return []
    # latency verdicts (bench.validity); a pretraining run's objective tables after the main one
    return [*build_tables(annotate_frame(frame_from_records(records))), *objective_tables({"records": records})]


def print_summary(console: Console, records: Iterable[Mapping[str, Any]], suite: str) -> None:
    """Print the summary tables, each followed by its footnotes (failed, timed-out and skipped cells).

    Same pivot as the written reports (``bench.report.main_table.build_tables``): row groups are tier,
    sequence length and batch size; devices side by side; best value per group in bold green.
    """
    tables = _report_tables(records)
    for t in tables:
        console.print(rich_table(t))
        for i, note in enumerate(t.notes, 1):
            console.print(f"[{i}] {term(note)}", style="red" if note.startswith(("failed", "timeout")) else None)
        checks = cross_checks(t)
        if checks:  # the flagged MAC cells' other counts, per model (the table's cells show ours)
            console.print(f"MACs by other counters: {term('; '.join(checks))}", soft_wrap=False)
    if not tables:
        console.print(f"{term(suite)}: no cells recorded")
    for line in summary_lines(stored_or_judged(r.get("metrics") or {}) for r in records):  # bench.validity
        console.print(term(line), style="red" if "INVALID (" in line else None)
