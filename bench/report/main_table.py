"""The main report table: one pivot from a suite's results frame to :class:`~bench.report.model.Table` s.

Layout of a suite's main table (one per dtype and mode): row groups are (tier, sequence length, batch
size), so every comparison inside a group is between models of matched size measured the same way;
rows are families; columns are the metric catalogue's (``bench.catalogue``: those with a report header,
in catalogue order): the variant-scope ones first (params, MACs, accuracy), then one group per device of
the cell-scope ones (latency p50/p90, throughput, peak memory) and the ratio to the reference family,
then the CUDA speed-up. A column no cell measured is left out. Three built-in columns are shown with
more than their number (``_VARIANT_CELLS``): params with a unit prefix, MACs per sample with the other
counters when flagged, accuracy as mean ± std in percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench import catalogue
from bench.catalogue import Column as MetricColumn
from bench.numbers import percent_scale
from bench.report.formatting import fmt_sig, num, unit_prefix
from bench.report.frames import default_reference, devices_of, is_seq, prepare
from bench.report.model import Cell, Column, Notes, Row, RowGroup, Table
from bench.result import Status
from bench.validity import invalid_flag

if TYPE_CHECKING:
    import pandas as pd

#: the counting convention every report states under its tables
FLOP_CONVENTION = (
    "MAC = multiply-accumulate; FLOPs = 2 × MACs. MACs count GEMM/conv (matmul-like) work only; "
    "normalisation, activation and other elementwise work is reported separately (other_flops). "
    "MACs are per sample (per sequence in sequence suites)."
)

#: how much a count may differ from fvcore / torch FlopCounterMode before the cell shows both
FLAG_DIFF_PCT = 1.0


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
    scale = percent_scale(frame.get("accuracy_mean", []))  # stored as a fraction: shown in percent
    return (scale, "accuracy (%)") if scale == 100.0 else (scale, "accuracy")


def build_tables(frame: pd.DataFrame, reference_family: str | None = None) -> list[Table]:
    """One main table per suite, dtype and mode (see the module docstring), in a deterministic order.

    ``reference_family`` names the family that ratio columns compare against; None picks
    ``default_reference`` per suite (the suite's ``Suite.reference_family``). A reference family
    missing from a suite gives no ratio column.
    """
    df = prepare(frame)
    tables: list[Table] = []
    for suite in dict.fromkeys(df["suite"]):
        sdf = df[df["suite"] == suite]
        ref = reference_family if reference_family is not None else default_reference(sdf)
        if ref not in set(sdf["family"]):
            ref = None
        # autocast cells (a float32 model) join the table of the dtype their weights are in (bench.execution)
        tdtype = [_table_dtype(e, d) for e, d in zip(_executions(sdf), sdf["dtype"], strict=True)]
        for dtype, mode in dict.fromkeys(zip(tdtype, sdf["mode"], strict=True)):
            sl = sdf[[t == dtype and m == mode for t, m in zip(tdtype, sdf["mode"], strict=True)]]
            tables.append(_main_table(sdf, sl, str(suite), str(dtype), str(mode), ref))
    return tables


def _executions(df: pd.DataFrame) -> list[str]:
    """Each row's execution (rows of files from before executions are eager)."""
    values = df["execution"] if "execution" in df else ["eager"] * len(df)
    return [e if isinstance(e, str) and e else "eager" for e in values]


def _table_dtype(execution: str, dtype: str) -> str:
    from bench.execution import weights_dtype

    return weights_dtype(execution, dtype) if execution != "eager" else dtype


def _execution_rank(name: str) -> tuple[int, tuple[int, ...]]:
    """eager, then the single executions in ``bench.execution.SINGLE`` order, then combinations."""
    from bench.execution import SINGLE

    parts = name.split("+")
    return len(parts), tuple(SINGLE.index(p) if p in SINGLE else len(SINGLE) for p in parts)


@dataclass(frozen=True)
class _Scales:
    """Table-wide display choices for the static columns."""

    params: float
    macs: float
    accuracy: float
    seed_counts: frozenset[int]


def _main_table(sdf: pd.DataFrame, sl: pd.DataFrame, suite: str, dtype: str, mode: str, ref: str | None) -> Table:
    rows = sl.to_dict("records")
    for r, e in zip(rows, _executions(sl), strict=True):
        r["execution"] = e
    suite_rows = sdf.to_dict("records")
    execs = sorted({r["execution"] for r in rows}, key=_execution_rank)
    multi = len(execs) > 1  # an execution column and "vs eager" when the table holds more than one
    devices = devices_of(sl)
    seq = is_seq(sl)
    notes = Notes()
    columns, static, dev_specs, scales = _columns(rows, suite_rows, devices, ref, _accuracy_scale(sdf),
                                                  vs_eager=multi and "eager" in execs)  # fmt: skip
    keys = {c.key for c in columns}
    by_cell = {(r["tier"], r["_T"], int(r["batch_size"]), r["family"], r["model"], r["device"], r["execution"]): r
               for r in rows}  # fmt: skip
    groups = sorted({(r["_tier_rank"], r["tier"], r["_T"], int(r["batch_size"])) for r in rows},
                    key=lambda g: (g[0], -1 if g[2] is None else g[2], g[3]))  # fmt: skip
    out_groups: list[RowGroup] = []
    for _rank, tier, T, batch in groups:
        models = sorted({(r["_family_rank"], r["family"], r["model"]) for r in rows if r["tier"] == tier})
        ref_model = next((m for _fr, f, m in models if f == ref), None)
        labelled = [(m, e) for m in models for e in execs
                    if not multi or any(k[3:5] == m[1:] and k[6] == e and k[0] == tier for k in by_cell)]  # fmt: skip
        cells: list[list[Cell]] = []
        for (_fr, family, model), ex in labelled:
            mine = [r for r in suite_rows if r["tier"] == tier and r["model"] == model and r["family"] == family]
            # a cell that failed at a later step (accuracy) keeps the params and MACs it measured
            ok = [r for r in mine if r["status"] == Status.OK or math.isfinite(num(r.get("macs")))]
            rows_of = _ModelRows(mine, ok, [r for r in ok if r["_T"] == T], dtype, mode)
            row = [cell(name, rows_of, scales, notes) for name, cell in static]
            for d in devices:
                rec = by_cell.get((tier, T, batch, family, model, d, ex))
                where = _where(tier, model, d, batch, T) + (f" {ex}" if multi else "")
                row += _device_cells(rec, dev_specs[d], notes, where)
                if f"{d}:ratio" in keys:
                    row.append(_p50_ratio(rec, by_cell.get((tier, T, batch, ref, ref_model, d, ex))))
                if f"{d}:vs_eager" in keys:  # speed-up: eager's p50 over this execution's
                    eager = by_cell.get((tier, T, batch, family, model, d, "eager"))
                    row.append(_p50_ratio(eager, rec) if ex != "eager" else Cell())
            if "speedup" in keys:
                row.append(_p50_ratio(by_cell.get((tier, T, batch, family, model, "cpu", ex)),
                                      by_cell.get((tier, T, batch, family, model, "cuda", ex))))  # fmt: skip
            cells.append(row)
        profiles = {r.get("profile") for r in rows if r["tier"] == tier}
        if len(profiles) <= 1:  # cells of different profiles (budgets, seeds) are never ranked against each other
            cells = _mark_best(cells, columns)
        labels = [(f, m, _execution_label(e, rows)) if multi else (f, m) for (_fr, f, m), e in labelled]
        out_groups.append(RowGroup(_group_label(tier, T, batch),
                                   tuple(Row(lab, tuple(c)) for lab, c in zip(labels, cells, strict=True))))  # fmt: skip
    ranked = any(c.better for c in columns)  # a column with a better direction: its best value is bold
    return Table(
        title=f"{suite} · {dtype} · {mode}",
        label_headers=("family", "model", "execution") if multi else ("family", "model"),
        columns=tuple(columns),
        groups=tuple(out_groups),
        notes=notes.texts(),
        caption=_caption(sdf, seq, ref, "speedup" in keys, "accuracy" in keys, scales.seed_counts, ranked)
        + _execution_caption(execs, any(k.endswith(":vs_eager") for k in keys)),
    )


def _execution_label(execution: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The execution as the table shows it: an autocast one with the dtype it computes in."""
    if "autocast" not in execution.split("+"):
        return execution
    dtypes = sorted({str(r["dtype"]) for r in rows if r["execution"] == execution})
    return f"{execution} ({', '.join(dtypes)})"


def _execution_caption(execs: Sequence[str], vs_eager: bool) -> str:
    """What the execution column and "vs eager" mean, and where MACs come from, when not every cell is eager."""
    if list(execs) == ["eager"]:
        return ""
    out = " Execution: how the model ran (docs/executions.md)."
    if any("autocast" in e.split("+") for e in execs):
        out += " Autocast rows run a float32 model under autocast to the dtype in parentheses."
    if vs_eager:
        out += " 'vs eager': eager p50 ÷ this execution's p50 of the same model and batch (2.00× = twice as fast)."
    return out + " MACs are counted on the eager graph for every execution (the same work)."


def _columns(
    rows: Sequence[Mapping[str, Any]],
    suite_rows: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
    ref: str | None,
    accuracy: tuple[float, str],
    vs_eager: bool = False,
) -> tuple[list[Column], list[tuple[str, _CellFn]], dict[str, list[MetricColumn]], _Scales]:
    """The table's columns (leaving out metrics no cell measured), the variant columns' cell functions (by
    catalogue name), the per-device metric columns and the unit scales."""

    def has(metric: str, device: str | None = None, among: Sequence[Mapping[str, Any]] = rows) -> bool:
        return any(math.isfinite(num(r.get(metric))) for r in among if device is None or r["device"] == device)

    p_scale, p_prefix = unit_prefix([num(r.get("params")) for r in suite_rows])
    m_scale, m_prefix = unit_prefix([num(r.get("macs")) / num(r.get("batch_size")) for r in rows])
    seeds = frozenset(
        int(num(r.get("accuracy_seeds"))) for r in suite_rows if math.isfinite(num(r.get("accuracy_seeds")))
    )
    headers = {"params": f"params ({p_prefix})", "macs": f"{m_prefix}MACs/sample", "accuracy_mean": accuracy[1]}
    columns: list[Column] = []
    static: list[tuple[str, _CellFn]] = []
    for c in catalogue.table_columns("variant"):
        key, cell = _VARIANT_CELLS.get(c.name, (c.name, _first_cell))
        # params always (the sizing solver's count stands in); MACs when this table has them; the others when
        # any cell of the suite has them (accuracy is measured in one cell per variant)
        if c.name == "params" or has(c.name, among=rows if c.name == "macs" else suite_rows):
            columns.append(Column(key, headers.get(c.name, c.header or c.name), better=c.better))
            static.append((c.name, cell))
    specs = _device_specs(catalogue.table_columns("cell"), has)
    dev_specs: dict[str, list[MetricColumn]] = {}
    for d in devices:
        # the first column (p50) always, as a cell that did not end ok shows its status there -- unless no cell
        # on the device measured anything per device and all ended ok (a pretraining run: an empty column)
        measured = [s for s in specs if has(s.name, d)]
        failed = any(r["status"] != Status.OK for r in rows if r["device"] == d)
        dev_specs[d] = [s for i, s in enumerate(specs) if (i == 0 and (measured or failed)) or s in measured]
        columns += [Column(f"{d}:{s.name}", s.header or s.name, d, s.better) for s in dev_specs[d]]
        if ref is not None and has("latency_p50_ms", d):
            columns.append(Column(f"{d}:ratio", f"vs {ref}", d))
        if vs_eager and has("latency_p50_ms", d):
            columns.append(Column(f"{d}:vs_eager", "vs eager", d, "higher"))
    if "cpu" in devices and "cuda" in devices:
        columns.append(Column("speedup", "CUDA speed-up", better="higher"))
    return columns, static, dev_specs, _Scales(p_scale, m_scale, accuracy[0], seeds)


def _device_specs(declared: Sequence[MetricColumn], has: Any) -> list[MetricColumn]:
    """The per-device columns: a column that ``replaces`` another takes its place when the table has values
    for it (tokens/s for samples/s in sequence suites), and is left out otherwise."""
    replacing = {c.replaces: c for c in declared if c.replaces and has(c.name)}
    return [replacing.get(c.name, c) for c in declared if not c.replaces]


@dataclass(frozen=True)
class _ModelRows:
    """One model's rows for a row of the table: all of its suite's, the ok ones, the ok ones of this length."""

    mine: Sequence[Mapping[str, Any]]
    ok: Sequence[Mapping[str, Any]]
    same_len: Sequence[Mapping[str, Any]]
    dtype: str
    mode: str


#: ``cell(column name, the model's rows, scales, notes)`` -> the model's cell in a variant column
_CellFn = Callable[[str, _ModelRows, _Scales, Notes], Cell]


def _first_cell(name: str, m: _ModelRows, scales: _Scales, notes: Notes) -> Cell:
    """A variant column's value: the first measured, at this length first."""
    v, src = _first([*m.same_len, *m.ok], name)
    return Cell() if src is None else Cell(fmt_sig(v), v)


def _params_cell(name: str, m: _ModelRows, scales: _Scales, notes: Notes) -> Cell:
    # measured, else the sizing solver's count: a model whose every cell failed still has one
    v, _ = _first(m.ok, "params")
    if not math.isfinite(v):
        v, _ = _first(m.mine, "achieved_params")
    return Cell(fmt_sig(v / scales.params), v / scales.params)


def _macs_cell(name: str, m: _ModelRows, scales: _Scales, notes: Notes) -> Cell:
    # prefer this table's dtype and mode; MACs do not depend on the device or batch
    v, src = _first([r for r in m.same_len if r["dtype"] == m.dtype and r["mode"] == m.mode] + list(m.same_len), "macs")
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


def _accuracy_cell(name: str, m: _ModelRows, scales: _Scales, notes: Notes) -> Cell:
    v, src = _first([*m.same_len, *m.ok], "accuracy_mean")
    if src is None:
        failed = [r for r in m.mine if str(r.get("error") or "").startswith("accuracy:")]
        if failed:  # the costs were measured (the device columns show them); the accuracy step was not
            err = str(failed[0]["error"]).strip().splitlines()[0]
            return Cell("failed", notes=(notes.add(f"{failed[0]['status']}: {err}", failed[0]["model"]),),
                        status="failed")  # fmt: skip
        return Cell()
    text = fmt_sig(v * scales.accuracy)
    std = num(src.get("accuracy_std"))
    seeds = num(src.get("accuracy_seeds"))
    if math.isfinite(std) and not seeds == 1:  # one seed has no spread: "± 0" would claim one
        text += f" ± {fmt_sig(std * scales.accuracy, 2)}"
    if math.isfinite(seeds) and (len(scales.seed_counts) > 1 or seeds == 1):  # a count common to all: caption
        text += f" (n={int(seeds)})"
    return Cell(text, v * scales.accuracy)


def _distill_cell(name: str, m: _ModelRows, scales: _Scales, notes: Notes) -> Cell:
    """A distilled student's accuracy (issue 17) as the accuracy column shows it, its teacher in a note."""
    v, src = _first([*m.same_len, *m.ok], "distill_accuracy_mean")
    if src is None:
        return Cell()
    text = fmt_sig(v * scales.accuracy)
    std = num(src.get("distill_accuracy_std"))
    if math.isfinite(std) and not num(src.get("accuracy_seeds")) == 1:
        text += f" ± {fmt_sig(std * scales.accuracy, 2)}"
    teacher, teacher_acc = src.get("teacher"), num(src.get("teacher_accuracy_mean"))
    if not teacher or not math.isfinite(teacher_acc):
        return Cell(text, v * scales.accuracy)
    n = notes.add(f"with teacher: the same variant, seeds and steps, trained by hard-label distillation from {teacher} "
                  f"(the teacher's accuracy: {fmt_sig(teacher_acc * scales.accuracy)})")  # fmt: skip
    return Cell(text, v * scales.accuracy, notes=(n,))


#: variant columns shown with more than their number: catalogue name -> (table column key, cell function)
_VARIANT_CELLS: dict[str, tuple[str, _CellFn]] = {
    "params": ("params", _params_cell),
    "macs": ("macs", _macs_cell),
    "accuracy_mean": ("accuracy", _accuracy_cell),
    "distill_accuracy_mean": ("distill_accuracy", _distill_cell),
}


def _p50_ratio(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Cell:
    """``a``'s p50 over ``b``'s as ``1.80×``, when both cells are ok (ratio to the reference; CUDA speed-up)."""
    pa = num(a.get("latency_p50_ms")) if a and a["status"] == Status.OK else math.nan
    pb = num(b.get("latency_p50_ms")) if b and b["status"] == Status.OK else math.nan
    ratio = pa / pb if pb > 0 else math.nan
    return Cell(f"{fmt_sig(ratio)}×", ratio) if math.isfinite(ratio) else Cell()


def _caption(sdf: pd.DataFrame, seq: bool, ref: str | None, speedup: bool, acc: bool, seeds: frozenset[int],
             ranked: bool = True) -> str:  # fmt: skip
    best = "; best value per group in bold" if ranked else ""  # no column with a better direction: nothing bold
    out = [f"Rows grouped by tier{', sequence length (T)' if seq else ''} and batch size (b){best}."]
    if ref is not None:
        out.append(f"'vs {ref}': p50 latency relative to {ref} in the same group (1.80× = 1.8 times {ref}'s latency).")
    if speedup:
        out.append("CUDA speed-up: CPU p50 ÷ CUDA p50 of the same model and batch.")
    if acc:
        over = f"{next(iter(seeds))} seeds" if len(seeds) == 1 else "seeds (n per cell)" if seeds else "seeds"
        extra = _accuracy_context(sdf)
        text = "one seed (n=1, no spread)" if seeds == {1} else f"mean ± std over {over}"
        out.append(f"Accuracy: {text}" + (f" ({extra})" if extra else "") + ".")
    return " ".join(out)


def _device_cells(rec: Mapping[str, Any] | None, specs: Sequence[MetricColumn], notes: Notes, where: str) -> list[Cell]:
    """A device's cells for one model: values, or the status (with the error as a footnote) in the p50 column."""
    if rec is None:
        return [Cell(status="missing") for _ in specs]
    if rec["status"] != Status.OK:
        err = (str(rec.get("error") or "").strip().splitlines() or ["no error message"])[0]
        n = notes.add(f"{rec['status']}: {err}", where)
        measured = [num(rec.get(s.name)) for s in specs]
        if math.isfinite(measured[0]):  # measured before a later step failed (accuracy): shown, with the note
            out = [Cell(fmt_sig(v), v, status="measured") if math.isfinite(v) else Cell(status="missing")
                   for v in measured]  # fmt: skip
            out[0] = Cell(out[0].text, out[0].value, notes=(n,), status="measured")
            return out
        return [Cell(str(rec["status"]), notes=(n,), status=str(rec["status"]))] + [Cell(status="missing")] * (
            len(specs) - 1
        )
    cells = [Cell(fmt_sig(num(rec.get(s.name))), num(rec.get(s.name))) for s in specs]
    if (flag := invalid_flag(rec)) is not None:  # an INVALID latency (bench.validity): flagged, never "best"
        # Only the columns the clock measured (bench.catalogue.timed): peak memory is measured by the allocator,
        # not the clock, and stays valid.
        cells = [
            Cell(c.text, c.value, status="invalid") if catalogue.timed(s.name) else c
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
