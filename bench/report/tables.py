"""Report tables: one pivot from the results frame to format-neutral tables.

``build_tables`` turns ``bench.store.load_results()`` output into :class:`Table` values (plain text
cells with a numeric value, a best-in-group flag and footnote numbers). ``render.py`` writes them as
Markdown, LaTeX and HTML and ``terminal.py`` as rich tables, so every format shows the same numbers.

Layout of a suite's main table (one per dtype and mode): row groups are (tier, sequence length, batch
size), so every comparison inside a group is between models of matched size measured the same way;
rows are families; columns are static (params, MACs, accuracy) then one group per device (latency
p50/p90, throughput, peak memory, ratio to the reference family), then the CUDA speed-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.validity import invalid_flag

if TYPE_CHECKING:
    import pandas as pd

#: the fields that identify one cell (``bench.spec.CellKey``)
KEY = ("suite", "tier", "family", "model", "device", "dtype", "batch_size", "input_shape", "seq_len", "mode")

FLOP_CONVENTION = (
    "MAC = multiply-accumulate; FLOPs = 2 × MACs. MACs count GEMM/conv (matmul-like) work only; "
    "normalisation, activation and other elementwise work is reported separately (other_flops). "
    "MACs are per sample (per sequence in sequence suites)."
)

#: how much a count may differ from fvcore / torch FlopCounterMode before the cell shows both
FLAG_DIFF_PCT = 1.0

_DEVICE_ORDER = {"cpu": 0, "cuda": 1}
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


# ---------------------------------------------------------------------------------------------- values


def num(value: Any) -> float:
    """``value`` as a float; NaN for None, strings, booleans and anything else that is not a number."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def opt_int(value: Any) -> int | None:
    """An optional integer key field (``seq_len``): None for None/NaN, else ``int``."""
    v = num(value)
    return None if math.isnan(v) else int(v)


def fmt_sig(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures without an exponent; integer digits are never dropped.

    ``31.24 -> "31.2"``, ``4.6 -> "4.60"``, ``0.012345 -> "0.0123"``, ``1234.5 -> "1234"``; NaN -> ``"–"``.
    """
    v = num(value)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    rounded = round(v, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > mag:  # 9.996 rounds up to 10.0, not 10.00
        decimals = max(0, decimals - 1)
    return f"{v:.{decimals}f}"


def superscript(n: int) -> str:
    """A footnote number as Unicode superscript digits."""
    return str(n).translate(_SUPERSCRIPT)


def unit_prefix(values: Iterable[float]) -> tuple[float, str]:
    """A (scale, prefix) from G/M/K/'' that keeps the median of ``values`` readable (>= 0.1 of a unit)."""
    finite = sorted(abs(v) for v in values if math.isfinite(v))
    if not finite:
        return 1e6, "M"
    median = finite[len(finite) // 2]
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if median >= scale / 10:
            return scale, prefix
    return 1.0, ""


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares slope of log y against log x, and its R²; None with fewer than two usable points."""
    import numpy as np

    pts = [(a, b) for a, b in zip(x, y, strict=True) if num(a) > 0 and num(b) > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    lx = np.log(np.array([a for a, _ in pts], dtype=float))
    ly = np.log(np.array([b for _, b in pts], dtype=float))
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    total = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 1.0
    return float(slope), r2


# ---------------------------------------------------------------------------------------------- model


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
    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class RowGroup:
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

    def to_frame(self) -> pd.DataFrame:
        """The table as displayed text, one row per table row (group label first); handy in tests."""
        import pandas as pd

        rows = []
        for g in self.groups:
            for r in g.rows:
                rows.append([g.label, *r.labels, *(c.text for c in r.cells)])
        heads = ["group", *self.label_headers, *(f"{c.group} {c.header}".strip() for c in self.columns)]
        return pd.DataFrame(rows, columns=heads)

    def cell(self, group: str, label: str, column: str) -> Cell:
        """The cell of the row whose labels include ``label``, in the group labelled ``group``, column key ``column``."""
        j = [c.key for c in self.columns].index(column)
        for g in self.groups:
            if g.label == group:
                for r in g.rows:
                    if label in r.labels:
                        return r.cells[j]
        raise KeyError(f"no row {label!r} in group {group!r}")


class _Notes:
    """Footnotes of one table, numbered in order of first use; identical texts share a number."""

    def __init__(self) -> None:
        self._texts: dict[str, int] = {}
        self._cells: dict[str, list[str]] = {}

    def add(self, text: str, where: str | None = None) -> int:
        n = self._texts.setdefault(text, len(self._texts) + 1)
        if where is not None:
            self._cells.setdefault(text, []).append(where)
        return n

    def texts(self) -> tuple[str, ...]:
        out = []
        for text in self._texts:
            cells = self._cells.get(text)
            out.append(f"{text} ({'; '.join(cells)})" if cells else text)
        return tuple(out)


# ---------------------------------------------------------------------------------------------- frames


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A ``load_results``-shaped frame from in-memory records (the run command's summary)."""
    import pandas as pd

    from bench.store import COLUMNS, iter_rows

    doc = {"run_id": "", "profile": "", "suite_hash": "", "env": {}, "records": list(records)}
    df = pd.DataFrame(list(iter_rows(doc)))
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    return df


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest record of each cell, in a deterministic order, with helper columns.

    Run ids start with the run's UTC start time, so sorting by them puts later runs last; when
    several runs measured the same cell (a rerun, an overlapping shard) the latest one is shown.
    Adds ``_cell`` (the cell id), ``_T`` (seq_len as int or None), ``_tier_rank`` and ``_family_rank``
    (order of first appearance, i.e. the suite's order).
    """
    import pandas as pd

    df = frame.copy()
    if df.empty:
        for c in ("_cell", "_T", "_tier_rank", "_family_rank"):
            df[c] = pd.Series(dtype=object)
        return df
    df["run_id"] = df["run_id"].fillna("").astype(str) if "run_id" in df else ""
    df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    df["_T"] = pd.Series([opt_int(v) for v in df["seq_len"]], index=df.index, dtype=object)
    df["_cell"] = [
        "/".join(str(x) for x in (*k[:6], int(k[6]), "x".join(map(str, k[7] or ())), T, k[9]))
        for *k, T in zip(*(df[c] for c in KEY), df["_T"], strict=True)
    ]
    df = df.drop_duplicates("_cell", keep="last").reset_index(drop=True)
    tier_rank: dict[tuple[str, str], int] = {}
    fam_rank: dict[tuple[str, str], int] = {}
    for s, t, f in zip(df.suite, df.tier, df.family, strict=True):
        tier_rank.setdefault((s, t), len(tier_rank))
        fam_rank.setdefault((s, f), len(fam_rank))
    df["_tier_rank"] = [tier_rank[(s, t)] for s, t in zip(df.suite, df.tier, strict=True)]
    df["_family_rank"] = [fam_rank[(s, f)] for s, f in zip(df.suite, df.family, strict=True)]
    return df


def is_seq(frame: pd.DataFrame) -> bool:
    """Whether the frame holds sequence-suite cells (a sequence length in the key)."""
    return bool(len(frame)) and any(opt_int(v) is not None for v in frame["seq_len"])


def default_reference(frame: pd.DataFrame) -> str | None:
    """resnet for vision suites, lstm for sequence suites, when the family is present."""
    name = "lstm" if is_seq(frame) else "resnet"
    return name if name in set(frame["family"]) else None


def devices_of(frame: pd.DataFrame) -> list[str]:
    """Devices in display order: cpu, cuda, then any other alphabetically."""
    return sorted(set(frame["device"]), key=lambda d: (_DEVICE_ORDER.get(d, 9), d))


def flagged_macs(row: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The other counters' MACs (short name, value per row) to show beside ours, when the count is flagged.

    A count is flagged when the record says so (``macs_flagged``) or when fvcore or torch's
    FlopCounterMode (FCM) differ by more than ``FLAG_DIFF_PCT`` percent (stored ``*_diff_pct``, or
    computed from their counts). The counters that differ are shown; a count the record flagged
    although no counter differs shows every counter it stored.
    """
    ours = num(row.get("macs"))
    flagged = row.get("macs_flagged") is True or str(row.get("macs_flagged")).lower() == "true"
    theirs: list[tuple[str, float, bool]] = []
    for name, prefix in (("fvcore", "fvcore"), ("FCM", "fcm")):
        value = num(row.get(f"{prefix}_macs"))
        diff = num(row.get(f"{prefix}_diff_pct"))
        if math.isnan(diff) and math.isfinite(value) and ours > 0:
            diff = (value - ours) / ours * 100
        if math.isfinite(value):
            theirs.append((name, value, math.isfinite(diff) and abs(diff) > FLAG_DIFF_PCT))
    apart = [(n, v) for n, v, far in theirs if far]
    return apart or ([(n, v) for n, v, _ in theirs] if flagged else [])


# ---------------------------------------------------------------------------------------------- main table


@dataclass(frozen=True)
class _Spec:
    """A per-device metric column."""

    metric: str
    header: str
    better: str | None


def _where(tier: str, model: str, device: str, batch: int, seq: int | None) -> str:
    return f"{tier}/{model} {device} b{batch}" + (f" T={seq}" if seq is not None else "")


def _group_label(tier: str, seq: int | None, batch: int) -> str:
    return " · ".join([tier, *([f"T={seq}"] if seq is not None else []), f"b{batch}"])


def _first(rows: Iterable[Mapping[str, Any]], metric: str) -> tuple[float, Mapping[str, Any] | None]:
    for r in rows:
        v = num(r.get(metric))
        if math.isfinite(v):
            return v, r
    return math.nan, None


def _mark_best(cells: list[list[Cell]], columns: Sequence[Column]) -> list[list[Cell]]:
    """Flag the best value of each marked column among a group's rows (only when two or more compete)."""
    for j, col in enumerate(columns):
        if col.better is None:
            continue
        vals = [row[j].value for row in cells if row[j].status == "ok" and math.isfinite(row[j].value)]
        if len(vals) < 2 or min(vals) == max(vals):  # a tie across the whole group singles nothing out
            continue
        best = min(vals) if col.better == "lower" else max(vals)
        for row in cells:
            c = row[j]
            if c.status == "ok" and c.value == best:
                row[j] = Cell(c.text, c.value, True, c.notes, c.status)
    return cells


def _accuracy_scale(frame: pd.DataFrame) -> tuple[float, str]:
    vals = [abs(num(v)) for v in frame.get("accuracy_mean", []) if math.isfinite(num(v))]
    return (100.0, "accuracy (%)") if vals and max(vals) <= 1.0 else (1.0, "accuracy")


def build_tables(frame: pd.DataFrame, reference_family: str | None = None) -> list[Table]:
    """One main table per suite, dtype and mode (see the module docstring), in a deterministic order.

    ``reference_family`` names the family that ratio columns compare against; None picks
    ``default_reference`` per suite. A reference family missing from a suite gives no ratio column.
    """
    df = prepare(frame)
    tables: list[Table] = []
    for suite in dict.fromkeys(df["suite"]):
        sdf = df[df["suite"] == suite]
        ref = reference_family if reference_family is not None else default_reference(sdf)
        if ref not in set(sdf["family"]):
            ref = None
        for dtype, mode in dict.fromkeys(zip(sdf["dtype"], sdf["mode"], strict=True)):
            sl = sdf[(sdf["dtype"] == dtype) & (sdf["mode"] == mode)]
            tables.append(_main_table(sdf, sl, str(suite), str(dtype), str(mode), ref))
    return tables


@dataclass(frozen=True)
class _Scales:
    """Table-wide display choices for the static columns."""

    params: float
    macs: float
    accuracy: float
    seed_counts: frozenset[int]


def _main_table(sdf: pd.DataFrame, sl: pd.DataFrame, suite: str, dtype: str, mode: str, ref: str | None) -> Table:
    rows = sl.to_dict("records")
    suite_rows = sdf.to_dict("records")
    devices = devices_of(sl)
    seq = is_seq(sl)
    notes = _Notes()
    columns, dev_specs, scales = _columns(rows, suite_rows, devices, seq, ref, _accuracy_scale(sdf))
    keys = {c.key for c in columns}
    by_cell = {(r["tier"], r["_T"], int(r["batch_size"]), r["family"], r["model"], r["device"]): r for r in rows}
    groups = sorted({(r["_tier_rank"], r["tier"], r["_T"], int(r["batch_size"])) for r in rows},
                    key=lambda g: (g[0], -1 if g[2] is None else g[2], g[3]))  # fmt: skip
    out_groups: list[RowGroup] = []
    for _rank, tier, T, batch in groups:
        models = sorted({(r["_family_rank"], r["family"], r["model"]) for r in rows if r["tier"] == tier})
        ref_model = next((m for _fr, f, m in models if f == ref), None)
        cells: list[list[Cell]] = []
        for _fr, family, model in models:
            mine = [r for r in suite_rows if r["tier"] == tier and r["model"] == model and r["family"] == family]
            ok = [r for r in mine if r["status"] == "ok"]
            same_len = [r for r in ok if r["_T"] == T]
            row = [_params_cell(ok, mine, scales)]
            if "macs" in keys:  # prefer this table's dtype and mode; MACs do not depend on the device or batch
                row.append(_macs_cell([r for r in same_len if r["dtype"] == dtype and r["mode"] == mode] + same_len,
                                      scales, notes))  # fmt: skip
            if "accuracy" in keys:
                row.append(_accuracy_cell(same_len + ok, scales))
            for d in devices:
                rec = by_cell.get((tier, T, batch, family, model, d))
                row += _device_cells(rec, dev_specs[d], notes, _where(tier, model, d, batch, T))
                if f"{d}:ratio" in keys:
                    row.append(_p50_ratio(rec, by_cell.get((tier, T, batch, ref, ref_model, d))))
            if "speedup" in keys:
                row.append(_p50_ratio(by_cell.get((tier, T, batch, family, model, "cpu")),
                                      by_cell.get((tier, T, batch, family, model, "cuda"))))  # fmt: skip
            cells.append(row)
        cells = _mark_best(cells, columns)
        out_groups.append(RowGroup(_group_label(tier, T, batch),
                                   tuple(Row((f, m), tuple(c)) for (_fr, f, m), c in zip(models, cells, strict=True))))  # fmt: skip
    return Table(
        title=f"{suite} · {dtype} · {mode}",
        label_headers=("family", "model"),
        columns=tuple(columns),
        groups=tuple(out_groups),
        notes=notes.texts(),
        caption=_caption(sdf, seq, ref, "speedup" in keys, "accuracy" in keys, scales.seed_counts),
    )


def _columns(
    rows: Sequence[Mapping[str, Any]],
    suite_rows: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
    seq: bool,
    ref: str | None,
    accuracy: tuple[float, str],
) -> tuple[list[Column], dict[str, list[_Spec]], _Scales]:
    """The table's columns (leaving out metrics no cell measured), per-device specs and unit scales."""

    def has(metric: str, device: str | None = None) -> bool:
        return any(math.isfinite(num(r.get(metric))) for r in rows if device is None or r["device"] == device)

    p_scale, p_prefix = unit_prefix([num(r.get("params")) for r in suite_rows])
    m_scale, m_prefix = unit_prefix([num(r.get("macs")) / num(r.get("batch_size")) for r in rows])
    seeds = frozenset(
        int(num(r.get("accuracy_seeds"))) for r in suite_rows if math.isfinite(num(r.get("accuracy_seeds")))
    )
    columns = [Column("params", f"params ({p_prefix})")]
    if has("macs"):
        columns.append(Column("macs", f"{m_prefix}MACs/sample", better="lower"))
    if any(math.isfinite(num(r.get("accuracy_mean"))) for r in suite_rows):
        columns.append(Column("accuracy", accuracy[1], better="higher"))
    thr = (
        _Spec("tokens_per_s", "tokens/s", "higher")
        if seq and has("tokens_per_s")
        else _Spec("throughput", "samples/s", "higher")
    )
    specs = [_Spec("latency_p50_ms", "p50 (ms)", "lower"), _Spec("latency_p90_ms", "p90 (ms)", "lower"), thr,
             _Spec("peak_memory_mb", "peak mem (MB)", "lower")]  # fmt: skip
    dev_specs: dict[str, list[_Spec]] = {}
    for d in devices:
        dev_specs[d] = [s for s in specs if s.metric == "latency_p50_ms" or has(s.metric, d)]
        columns += [Column(f"{d}:{s.metric}", s.header, d, s.better) for s in dev_specs[d]]
        if ref is not None and has("latency_p50_ms", d):
            columns.append(Column(f"{d}:ratio", f"vs {ref}", d))
    if "cpu" in devices and "cuda" in devices:
        columns.append(Column("speedup", "CUDA speed-up", better="higher"))
    return columns, dev_specs, _Scales(p_scale, m_scale, accuracy[0], seeds)


def _params_cell(ok: Sequence[Mapping[str, Any]], mine: Sequence[Mapping[str, Any]], scales: _Scales) -> Cell:
    # measured, else the sizing solver's count: a model whose every cell failed still has one
    v, _ = _first(ok, "params")
    if not math.isfinite(v):
        v, _ = _first(mine, "achieved_params")
    return Cell(fmt_sig(v / scales.params), v / scales.params)


def _macs_cell(candidates: Sequence[Mapping[str, Any]], scales: _Scales, notes: _Notes) -> Cell:
    v, src = _first(candidates, "macs")
    if src is None:
        return Cell()
    per_sample = scales.macs * int(src["batch_size"])
    text = fmt_sig(v / per_sample)
    theirs = flagged_macs(src)
    if not theirs:
        return Cell(text, v / per_sample)
    text += " (" + ", ".join(f"{name} {fmt_sig(t / per_sample)}" for name, t in theirs) + ")"
    n = notes.add(f"MAC count flagged by the counter or more than {FLAG_DIFF_PCT:g}% away from fvcore or torch's "
                  "FlopCounterMode (FCM): ours first, theirs in parentheses, same units.")  # fmt: skip
    return Cell(text, v / per_sample, notes=(n,))


def _accuracy_cell(candidates: Sequence[Mapping[str, Any]], scales: _Scales) -> Cell:
    v, src = _first(candidates, "accuracy_mean")
    if src is None:
        return Cell()
    text = fmt_sig(v * scales.accuracy)
    std = num(src.get("accuracy_std"))
    if math.isfinite(std):
        text += f" ± {fmt_sig(std * scales.accuracy, 2)}"
    seeds = num(src.get("accuracy_seeds"))
    if math.isfinite(seeds) and len(scales.seed_counts) > 1:  # a count common to all goes in the caption
        text += f" (n={int(seeds)})"
    return Cell(text, v * scales.accuracy)


def _p50_ratio(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Cell:
    """``a``'s p50 over ``b``'s as ``1.80×``, when both cells are ok (ratio to the reference; CUDA speed-up)."""
    pa = num(a.get("latency_p50_ms")) if a and a["status"] == "ok" else math.nan
    pb = num(b.get("latency_p50_ms")) if b and b["status"] == "ok" else math.nan
    ratio = pa / pb if pb > 0 else math.nan
    return Cell(f"{fmt_sig(ratio)}×", ratio) if math.isfinite(ratio) else Cell()


def _caption(sdf: pd.DataFrame, seq: bool, ref: str | None, speedup: bool, acc: bool, seeds: frozenset[int]) -> str:
    out = [
        f"Rows grouped by tier{', sequence length (T)' if seq else ''} and batch size (b); best value per group in bold."
    ]
    if ref is not None:
        out.append(f"'vs {ref}': p50 latency relative to {ref} in the same group (1.80× = 1.8 times {ref}'s latency).")
    if speedup:
        out.append("CUDA speed-up: CPU p50 ÷ CUDA p50 of the same model and batch.")
    if acc:
        over = f"{next(iter(seeds))} seeds" if len(seeds) == 1 else "seeds (n per cell)" if seeds else "seeds"
        extra = _accuracy_context(sdf)
        out.append(f"Accuracy: mean ± std over {over}" + (f" ({extra})" if extra else "") + ".")
    return " ".join(out)


#: columns measured by the clock, which an INVALID latency verdict (machine load, noise...) invalidates
_TIMED = frozenset({"latency_p50_ms", "latency_p90_ms", "throughput", "tokens_per_s"})


def _device_cells(rec: Mapping[str, Any] | None, specs: Sequence[_Spec], notes: _Notes, where: str) -> list[Cell]:
    """A device's cells for one model: values, or the status (with the error as a footnote) in the p50 column."""
    if rec is None:
        return [Cell(status="missing") for _ in specs]
    if rec["status"] != "ok":
        err = (str(rec.get("error") or "").strip().splitlines() or ["no error message"])[0]
        n = notes.add(f"{rec['status']}: {err}", where)
        return [Cell(str(rec["status"]), notes=(n,), status=str(rec["status"]))] + [Cell(status="missing")] * (
            len(specs) - 1
        )
    cells = [Cell(fmt_sig(num(rec.get(s.metric))), num(rec.get(s.metric))) for s in specs]
    if (flag := invalid_flag(rec)) is not None:  # an INVALID latency (bench.validity): flagged, never "best"
        # Only the timing columns: peak memory is measured by the allocator, not the clock, and stays valid.
        cells = [
            Cell(c.text, c.value, status="invalid") if s.metric in _TIMED else c
            for c, s in zip(cells, specs, strict=True)
        ]
        cells[0] = Cell(cells[0].text + flag[0], cells[0].value, notes=(notes.add(flag[1], where),), status="invalid")
    return cells


def _accuracy_context(frame: pd.DataFrame) -> str:
    parts = []
    for col, label in (("dataset", "dataset"), ("train_budget", "budget")):
        if col in frame:
            vals = sorted(
                {str(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            )
            if vals:
                parts.append(f"{label} {', '.join(vals)}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- scaling


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


def scaling_slice(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells a scaling fit uses: ok, inference (if any), the first dtype, the smallest batch size."""
    df = frame[frame["status"] == "ok"]
    if df.empty:
        return df
    if (df["mode"] == "infer").any():
        df = df[df["mode"] == "infer"]
    dtype = "fp32" if (df["dtype"] == "fp32").any() else df["dtype"].iloc[0]
    df = df[df["dtype"] == dtype]
    return df[df["batch_size"] == df["batch_size"].min()]


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
        return (rid if multi else "", _DEVICE_ORDER.get(dev, 9), dev, str(e.get("dtype", "")),
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


# ---------------------------------------------------------------------------------------------- tidy export

#: tidy CSV columns, in this order when present (key and status always); other metrics follow sorted
TIDY_FIRST = KEY + ("status", "error")
TIDY_METRICS = (
    "params", "macs", "flops", "other_flops", "macs_flagged", "fvcore_macs", "fcm_macs", "fvcore_diff_pct", "fcm_diff_pct",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "latency_iqr_ms", "latency_n",
    "throughput", "tokens_per_s", "peak_memory_mb", "weights_mb", "activations_mb",
    "accuracy_mean", "accuracy_std", "accuracy_ci95", "accuracy_seeds", "dataset", "train_budget",
)  # fmt: skip
TIDY_LAST = ("notes", "builder", "target_params", "achieved_params", "profile", "suite_hash", "run_id", "host")
#: never exported: raw sample lists (kept in the run file) and machine-local paths
_TIDY_DROP = ("path",)


def tidy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per stored cell (every run, duplicates kept) with a stable column order; raw samples dropped.

    ``input_shape`` is written as ``3x224x224``; rows are ordered by suite, dtype, mode, tier (suite order),
    family, model, device, batch size, sequence length and run.
    """
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=list(TIDY_FIRST + TIDY_METRICS[:2] + TIDY_LAST))
    df = frame.copy()
    df["run_id"] = df["run_id"].fillna("").astype(str)
    df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    ranks: dict[Any, int] = {}
    for s, t in zip(df["suite"], df["tier"], strict=True):
        ranks.setdefault((s, t), len(ranks))
    df["_tier_rank"] = [ranks[(s, t)] for s, t in zip(df["suite"], df["tier"], strict=True)]
    df["_T"] = [-1 if opt_int(v) is None else opt_int(v) for v in df["seq_len"]]
    df["_dev"] = [_DEVICE_ORDER.get(d, 9) for d in df["device"]]
    df = df.sort_values(["suite", "dtype", "mode", "_tier_rank", "family", "model", "_dev", "device", "batch_size", "_T", "run_id"],
                        kind="stable")  # fmt: skip
    df["input_shape"] = ["x".join(map(str, s or ())) for s in df["input_shape"]]
    df["seq_len"] = pd.array([opt_int(v) for v in df["seq_len"]], dtype="Int64")
    df["batch_size"] = df["batch_size"].astype("int64")
    skip = set(_TIDY_DROP) | {c for c in df.columns if c.startswith("_") or c.endswith("_samples")}
    present = [c for c in df.columns if c not in skip]
    first = list(TIDY_FIRST) + [c for c in TIDY_METRICS if c in present or c in ("params", "macs")]
    last = [c for c in TIDY_LAST if c in present or c == "run_id"]
    extra = sorted(c for c in present if c not in first and c not in last)
    for c in first + last:
        if c not in df.columns:
            df[c] = None
    return df[first + extra + last].reset_index(drop=True)
