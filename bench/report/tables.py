"""Report tables: the public names of the table modules, importable from one place.

``build_tables`` turns ``bench.store.load_results()`` output into :class:`Table` values (plain text
cells with a numeric value, a best-in-group flag and footnote numbers). ``render.py`` writes them as
Markdown, LaTeX and HTML and ``terminal.py`` as rich tables, so every format shows the same numbers.

The code lives in one module per seam:

- ``formatting``: numbers as cell text (``fmt_sig``, ``unit_prefix``, ``num``);
- ``model``: the format-neutral table (``Table``, ``Column``, ``Cell``, ``Row``, ``RowGroup``);
- ``frames``: the results frame the report reads, the latest record per cell, orders and slices;
- ``main_table``: the main pivot (one table per suite, dtype and mode);
- ``scaling_tables``: exponents and crossovers with sequence length;
- ``tidy``: the tidy CSV.

Which metric columns the tables and the CSV show, and how, is read from the metric catalogue
(``bench.catalogue``).
"""

from __future__ import annotations

from typing import Any

from bench.report.formatting import fmt_sig, num, opt_int, unit_prefix
from bench.report.frames import (
    KEY,
    default_reference,
    devices_of,
    frame_from_records,
    frame_from_runs,
    is_seq,
    prepare,
    scaling_slice,
)
from bench.report.main_table import FLAG_DIFF_PCT, FLOP_CONVENTION, build_tables, flagged_macs
from bench.report.model import Cell, Column, Row, RowGroup, Table
from bench.report.scaling_tables import SCALING_METRICS, RunAnalysis, analysis_entry, fit_exponent, scaling_tables
from bench.report.tidy import TIDY_ALWAYS, TIDY_FIRST, TIDY_LAST, tidy_frame, tidy_metrics

__all__ = [
    "FLAG_DIFF_PCT",
    "FLOP_CONVENTION",
    "KEY",
    "SCALING_METRICS",
    "TIDY_ALWAYS",
    "TIDY_FIRST",
    "TIDY_LAST",
    "Cell",
    "Column",
    "Row",
    "RowGroup",
    "RunAnalysis",
    "Table",
    "analysis_entry",
    "build_tables",
    "default_reference",
    "devices_of",
    "fit_exponent",
    "flagged_macs",
    "fmt_sig",
    "frame_from_records",
    "frame_from_runs",
    "is_seq",
    "num",
    "opt_int",
    "prepare",
    "scaling_slice",
    "scaling_tables",
    "tidy_frame",
    "tidy_metrics",
    "unit_prefix",
]


def __getattr__(name: str) -> Any:  # ``TIDY_METRICS`` is read from the metric catalogue when asked for
    if name == "TIDY_METRICS":
        return tidy_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
