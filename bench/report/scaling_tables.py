"""Scaling tables: exponents k of y ∝ T^k and crossovers between families, stored or fitted here.

A run of a sequence suite stores its analysis (``bench.scaling.analyse``: fits and crossovers); the
report shows it as stored. Runs that stored none are fitted here, with the same least-squares fit
(``bench.scaling.fit_power_law``) over the cells of ``bench.report.frames.scaling_slice``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.report.formatting import fmt_sig, num, opt_int
from bench.report.frames import DEVICE_ORDER, devices_of, prepare, scaling_slice
from bench.report.model import Cell, Column, Row, RowGroup, Table
from bench.scaling import fit_power_law

if TYPE_CHECKING:
    import pandas as pd

#: metrics whose growth with sequence length is fitted, with display names (figure panels in this order)
SCALING_METRICS = (("latency_p50_ms", "latency"), ("peak_memory_mb", "memory"), ("macs", "MACs"),
                   ("activations_mb", "activations"))  # fmt: skip
_SERIES_GROUP = ("device", "dtype", "batch_size", "mode")
_SERIES_ROW = ("tier", "family", "model")
_LISTING_ORDER = ("run", "family", "tier", "model", "device", "dtype", "mode", "batch_size", "metric",
                  "exponent", "r2", "crossover_len")  # fmt: skip


@dataclass(frozen=True)
class RunAnalysis:
    """A run's stored analysis: scaling fits and crossovers (``bench.scaling.analyse``), possibly empty.

    Fits are read from ``analysis.fits`` (the runner's shape) or ``analysis.scaling`` (a plain list of
    ``{family, metric, exponent, r2, ...}``).
    """

    run_id: str
    fits: tuple[Mapping[str, Any], ...] = ()
    crossovers: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RunAnalysis:
        a = doc.get("analysis")
        a = a if isinstance(a, Mapping) else {}
        fits = a.get("fits") or a.get("scaling") or []
        cross = a.get("crossovers") or []
        return cls(
            str(doc.get("run_id")),
            tuple(e for e in fits if isinstance(e, Mapping)) if isinstance(fits, list) else (),
            tuple(e for e in cross if isinstance(e, Mapping)) if isinstance(cross, list) else (),
        )


def _metric_label(metric: str) -> str:
    return dict(SCALING_METRICS).get(metric, metric)


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """``bench.scaling.fit_power_law`` over the points where both values are positive numbers: (k, R²).

    None with fewer than two distinct usable ``x``: a report shows "–" where the data cannot be fitted.
    """
    pts = [(num(a), num(b)) for a, b in zip(x, y, strict=True) if num(a) > 0 and num(b) > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    fit = fit_power_law([a for a, _ in pts], [b for _, b in pts])
    return fit["exponent"], fit["r2"]


def analysis_entry(entries: Sequence[Mapping[str, Any]], metric: str, **key: Any) -> Mapping[str, Any] | None:
    """The stored fit for ``metric`` and this series (tier, family, device, dtype, batch size...), if any.

    Entries name the metric by column (``latency_p50_ms``) or by a short name (``latency``, ``memory``,
    ``MACs``); key fields an entry does not carry match anything.
    """
    short = _metric_label(metric).lower()
    for e in entries:
        m = str(e.get("metric", "")).lower()
        if not (m == metric or m == short or (m and metric.startswith(m))):
            continue
        if all(k not in e or e[k] is None or str(e[k]) == str(v) for k, v in key.items()):
            if math.isfinite(num(e.get("exponent"))):
                return e
    return None


def scaling_tables(frame: pd.DataFrame, analyses: Sequence[RunAnalysis] = ()) -> list[Table]:
    """Exponents k of y ∝ T^k for latency, memory and MACs, and crossovers between families.

    When the runs stored fits (``analyses``) they are shown as stored, with their crossovers;
    otherwise k is fitted here (log-log least squares over the cells of ``scaling_slice``).
    Empty when nothing was measured at two or more sequence lengths.
    """
    df = prepare(frame)
    ranks = {**{("tier", t): r for t, r in zip(df.get("tier", []), df.get("_tier_rank", []), strict=True)},
             **{("family", f): r for f, r in zip(df.get("family", []), df.get("_family_rank", []), strict=True)}}  # fmt: skip
    multi = len([a for a in analyses if a.fits or a.crossovers]) > 1
    fits = [(a.run_id, e) for a in analyses for e in a.fits]
    tables: list[Table] = []
    if fits:
        keyed = all("family" in e and "metric" in e and "exponent" in e for _, e in fits)
        tables.append(_fits_table(fits, ranks, multi) if keyed else _listing_table(fits, multi))
    else:
        own = _fitted_here(df)
        if own is not None:
            tables.append(own)
    cross = [(a.run_id, e) for a in analyses for e in a.crossovers]
    if cross:
        tables.append(_crossover_table(cross, ranks, multi))
    return tables


def _fitted_here(df: pd.DataFrame) -> Table | None:
    df = scaling_slice(df[[opt_int(v) is not None for v in df["seq_len"]]]) if len(df) else df
    if df.empty:
        return None
    columns = [Column(m, f"{label} exponent") for m, label in SCALING_METRICS if m in df and df[m].notna().any()]
    groups: list[RowGroup] = []
    for device in devices_of(df):
        dd = df[df["device"] == device]
        rows: list[Row] = []
        for (_tr, tier, _fr, family, model), g in dd.groupby(
            ["_tier_rank", "tier", "_family_rank", "family", "model"], sort=True
        ):
            cells = []
            for col in columns:
                y = g[col.key] / (g["batch_size"] if col.key == "macs" else 1)
                fit = fit_exponent(list(g["_T"]), list(y))
                cells.append(Cell(f"{fmt_sig(fit[0])} (R² {fit[1]:.3f})", fit[0]) if fit else Cell())
            if any(math.isfinite(c.value) for c in cells):
                rows.append(Row((str(tier), str(family), str(model)), tuple(cells)))
        if rows:
            groups.append(RowGroup(f"{device} · {dd['dtype'].iloc[0]} · b{int(dd['batch_size'].min())}", tuple(rows)))
    if not groups:
        return None
    return Table(
        title="Scaling with sequence length (fitted here)",
        label_headers=("tier", "family", "model"),
        columns=tuple(columns),
        groups=tuple(groups),
        caption="Exponent k of y ∝ T^k: least-squares slope of log y on log T over the measured lengths, with R². "
        "1 = linear, 2 = quadratic.",
    )


def _series_groups(
    entries: Sequence[tuple[str, Mapping[str, Any]]], multi: bool
) -> list[tuple[str, list[tuple[str, Mapping[str, Any]]]]]:
    """Entries grouped by run (if several), device, dtype, batch size and mode, in display order."""
    fields = [f for f in _SERIES_GROUP if any(f in e for _, e in entries)]

    def key(item: tuple[str, Mapping[str, Any]]) -> tuple[Any, ...]:
        rid, e = item
        dev = str(e.get("device", ""))
        return (rid if multi else "", DEVICE_ORDER.get(dev, 9), dev, str(e.get("dtype", "")),
                num(e.get("batch_size")) if "batch_size" in e else 0, str(e.get("mode", "")))  # fmt: skip

    groups: dict[tuple[Any, ...], list[tuple[str, Mapping[str, Any]]]] = {}
    for item in sorted(entries, key=key):
        groups.setdefault(key(item), []).append(item)
    out = []
    for k, items in groups.items():
        e = items[0][1]
        parts = [f"b{e[f]}" if f == "batch_size" else str(e[f]) for f in fields if e.get(f) is not None]
        out.append((" · ".join(([f"run {k[0]}"] if multi else []) + parts), items))
    return out


def _rank(ranks: Mapping[tuple[str, Any], int], field: str, value: Any) -> tuple[int, str]:
    return ranks.get((field, value), 1 << 30), str(value)


def _fits_table(
    fits: Sequence[tuple[str, Mapping[str, Any]]], ranks: Mapping[tuple[str, Any], int], multi: bool
) -> Table:
    metrics = list(dict.fromkeys([m for m, _ in SCALING_METRICS if any(e.get("metric") == m for _, e in fits)]
                                 + [str(e.get("metric")) for _, e in fits]))  # fmt: skip
    row_fields = [f for f in _SERIES_ROW if any(e.get(f) is not None for _, e in fits)]
    columns = tuple(Column(m, f"{_metric_label(m)} exponent") for m in metrics)
    groups = []
    for label, items in _series_groups(fits, multi):
        rows: dict[tuple[Any, ...], dict[str, Mapping[str, Any]]] = {}
        for _, e in items:
            rows.setdefault(tuple(e.get(f) for f in row_fields), {}).setdefault(str(e.get("metric")), e)
        order = sorted(rows, key=lambda r: tuple(_rank(ranks, f, v) for f, v in zip(row_fields, r, strict=True)))
        out_rows = []
        for r in order:
            cells = []
            for m in metrics:
                e = rows[r].get(m)
                k, r2 = (num(e.get("exponent")), num(e.get("r2"))) if e is not None else (math.nan, math.nan)
                text = fmt_sig(k) + (f" (R² {r2:.3f})" if math.isfinite(r2) else "") if math.isfinite(k) else "–"
                cells.append(Cell(text, k))
            out_rows.append(Row(tuple("–" if v is None else str(v) for v in r), tuple(cells)))
        groups.append(RowGroup(label, tuple(out_rows)))
    return Table(
        title="Scaling with sequence length (from the run's analysis)",
        label_headers=tuple(row_fields),
        columns=columns,
        groups=tuple(groups),
        caption="Exponent k of y ∝ T^k (least-squares slope of log y on log T, with R²) as stored in the run file "
        "by the runner. 1 = linear, 2 = quadratic.",
    )


_RELATIONS = {"crosses": "crosses", "a_above": "A above B throughout", "a_below": "A below B throughout",
              "touches": "touches"}  # fmt: skip


def _crossover_table(
    cross: Sequence[tuple[str, Mapping[str, Any]]], ranks: Mapping[tuple[str, Any], int], multi: bool
) -> Table:
    groups = []
    for label, items in _series_groups(cross, multi):
        items = sorted(items, key=lambda it: (_rank(ranks, "tier", it[1].get("tier")), str(it[1].get("metric")),
                                              str(it[1].get("a")), str(it[1].get("b"))))  # fmt: skip
        rows = []
        for _, e in items:
            t = num(e.get("seq_len"))
            rel = str(e.get("relation", ""))
            rows.append(Row(
                (str(e.get("tier", "–")), _metric_label(str(e.get("metric", ""))), str(e.get("a", "")), str(e.get("b", ""))),
                (Cell(fmt_sig(t), t), Cell(_RELATIONS.get(rel, rel) or "–")),
            ))  # fmt: skip
        groups.append(RowGroup(label, tuple(rows)))
    return Table(
        title="Crossovers between families",
        label_headers=("tier", "metric", "A", "B"),
        columns=(Column("seq_len", "A passes B at T"), Column("relation", "over the measured lengths")),
        groups=tuple(groups),
        caption="The sequence length where family A's cost rises above family B's (log-log interpolation between "
        "measured lengths), as stored by the runner; – when they do not cross upwards in the measured range.",
    )


def _listing_table(stored: Sequence[tuple[str, Mapping[str, Any]]], multi: bool) -> Table:
    keys = {k for _, e in stored for k in e if not isinstance(e[k], Mapping | list)}
    if multi:
        keys.add("run")
    order = [k for k in _LISTING_ORDER if k in keys] + sorted(keys - set(_LISTING_ORDER))
    rows = []
    for rid, e in stored:
        e = {**e, "run": rid}
        cells = []
        for k in order:
            v = e.get(k)
            is_num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(Cell("–" if v is None else fmt_sig(v) if is_num else str(v), num(v)))
        rows.append(Row((), tuple(cells)))
    return Table(
        title="Scaling with sequence length (from the run's analysis)",
        label_headers=(),
        columns=tuple(Column(k, k) for k in order),
        groups=(RowGroup("", tuple(rows)),),
        caption="As stored in the run file (analysis); exponent k of y ∝ T^k.",
    )
