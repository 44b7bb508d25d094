"""The main report table: one pivot from a suite's results frame to :class:`~bench.report.model.Table` s.

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

from bench.report.formatting import fmt_sig, num, unit_prefix
from bench.report.frames import default_reference, devices_of, is_seq, prepare
from bench.report.model import Cell, Column, Notes, Row, RowGroup, Table
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
    notes = Notes()
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


def _macs_cell(candidates: Sequence[Mapping[str, Any]], scales: _Scales, notes: Notes) -> Cell:
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


def _device_cells(rec: Mapping[str, Any] | None, specs: Sequence[_Spec], notes: Notes, where: str) -> list[Cell]:
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
