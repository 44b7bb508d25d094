"""The report's table model: format-neutral value objects that every renderer draws the same way.

A :class:`Table` holds :class:`Column` headers and :class:`RowGroup` s of :class:`Row` s of :class:`Cell` s
(display text, the number behind it, a best-in-group flag and footnote numbers). ``render.py`` writes
tables as Markdown, LaTeX and HTML and ``terminal.py`` as rich tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One value column: ``header`` carries the unit; ``group`` is the header above it (a device)."""

    key: str
    header: str
    group: str = ""
    better: str | None = None  # "lower" | "higher" | None (not marked)


@dataclass(frozen=True)
class Cell:
    """One table cell: display text, the number behind it (for best-marking) and footnote numbers."""

    text: str = "–"
    value: float = math.nan
    best: bool = False
    notes: tuple[int, ...] = ()
    status: str = "ok"  # ok | missing | failed | timeout | skipped | invalid (a latency bench.validity rejects)


@dataclass(frozen=True)
class Row:
    """One table row: its labels (family, model...) and one cell per column."""

    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class RowGroup:
    """Rows compared with each other (a tier, length and batch size); ``label`` heads them."""

    label: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Table:
    """A format-neutral table. Footnote ``n`` (1-based) is ``notes[n - 1]``."""

    title: str
    label_headers: tuple[str, ...]
    columns: tuple[Column, ...]
    groups: tuple[RowGroup, ...]
    notes: tuple[str, ...] = ()
    caption: str = ""

    @property
    def has_column_groups(self) -> bool:
        return any(c.group for c in self.columns)

    def cell(self, group: str, label: str, column: str) -> Cell:
        """The cell of the row whose labels include ``label``, in the group labelled ``group``, column key ``column``."""
        j = [c.key for c in self.columns].index(column)
        for g in self.groups:
            if g.label == group:
                for r in g.rows:
                    if label in r.labels:
                        return r.cells[j]
        raise KeyError(f"no row {label!r} in group {group!r}")


class Notes:
    """Footnotes of one table, numbered in order of first use; identical texts share a number."""

    def __init__(self) -> None:
        self._texts: dict[str, int] = {}
        self._cells: dict[str, list[str]] = {}

    def add(self, text: str, where: str | None = None) -> int:
        """The number of footnote ``text``; ``where`` (a cell) is listed after the text."""
        n = self._texts.setdefault(text, len(self._texts) + 1)
        if where is not None:
            self._cells.setdefault(text, []).append(where)
        return n

    def texts(self) -> tuple[str, ...]:
        """The footnotes in number order, each followed by the cells it was added for."""
        out = []
        for text in self._texts:
            cells = self._cells.get(text)
            out.append(f"{text} ({'; '.join(cells)})" if cells else text)
        return tuple(out)
