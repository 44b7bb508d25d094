"""Hardware efficiency in the report: the derived columns on every cell, and the efficiency table.

:func:`add_derived` computes the metric catalogue's derived columns (``bench.catalogue.derive``: achieved
GFLOP/s, MFU, bandwidth use, roofline bound) for each cell from its stored values and its run's measured peak,
so a run stored before they existed gets them without re-measuring. :func:`efficiency_tables` builds one table
per suite, dtype and mode (family, MACs, latency, achieved GFLOP/s, MFU, intensity, bandwidth use, bound,
energy, the operator moving the most bytes), saying what the runs did not measure. Formulas: docs/efficiency.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench import catalogue
from bench.report.formatting import fmt_sig, num, unit_prefix
from bench.report.frames import devices_of, prepare
from bench.report.model import Cell, Column, Notes, Row, RowGroup, Table
from bench.result import Status, plain
from bench.validity import invalid_flag

if TYPE_CHECKING:
    import pandas as pd

#: what the report says where a run stored no machine peak
NO_PEAK = "peak not measured in this run"
#: per-device columns of the efficiency table: (frame column, header, better); a column no cell has is left out
DEVICE_COLUMNS = (
    ("latency_p50_ms", "p50 (ms)", "lower"),
    ("achieved_gflops", "GFLOP/s", "higher"),
    ("mfu", "MFU", "higher"),
    ("arith_intensity", "FLOP/B", None),
    ("bandwidth_util", "BW use", None),
    ("bound", "bound", None),
    ("energy_j_per_sample", "J/sample", "lower"),
)
#: columns shown whenever the table has any cell (the first two say what every other one is relative to)
_ALWAYS = ("latency_p50_ms", "achieved_gflops")


def add_derived(frame: pd.DataFrame, docs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``frame`` with the catalogue's derived columns, each computed from a row and its run (by ``run_id``).

    A derived column no row has a value for is not added (the frame, and the CSV, stay as they were).
    """
    if frame.empty or not catalogue.derived():
        return frame
    runs = {str(d.get("run_id")): d for d in docs}
    derived = [catalogue.derive({k: plain(v) for k, v in row.items()}, runs.get(str(row.get("run_id")), {}))
               for row in frame.to_dict("records")]  # fmt: skip
    frame = frame.copy()
    for col in (c for d in catalogue.derived() for c in d.columns):
        values = [d.get(col.name) for d in derived]
        if any(v is not None for v in values):
            frame[col.name] = values
    return frame


def peak_measured(docs: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any run stored a usable machine peak."""
    from bench.peak import measured

    return any(measured(d.get("env")) for d in docs)


def efficiency_tables(frame: pd.DataFrame, docs: Sequence[Mapping[str, Any]]) -> list[Table]:
    """One efficiency table per suite, dtype and mode whose cells have achieved GFLOP/s (``add_derived`` first)."""
    if "achieved_gflops" not in frame:
        return []
    df = prepare(frame)
    tables = []
    for suite in dict.fromkeys(df["suite"]):
        sdf = df[df["suite"] == suite]
        for dtype, mode in dict.fromkeys(zip(sdf["dtype"], sdf["mode"], strict=True)):
            sl = sdf[(sdf["dtype"] == dtype) & (sdf["mode"] == mode)]
            if any(math.isfinite(num(v)) for v in sl["achieved_gflops"]):
                tables.append(_table(sl, f"{suite} · {dtype} · {mode} · efficiency", docs))
    return tables


def _table(sl: pd.DataFrame, title: str, docs: Sequence[Mapping[str, Any]]) -> Table:
    rows = sl.to_dict("records")
    devices = devices_of(sl)
    notes = Notes()

    def has(name: str, device: str) -> bool:
        return any(r["device"] == device and _present(r.get(name)) for r in rows)

    specs = {d: [s for s in DEVICE_COLUMNS if s[0] in _ALWAYS or has(s[0], d)] for d in devices}
    scale, prefix = unit_prefix([num(r.get("macs")) / num(r.get("batch_size")) for r in rows])
    columns = [Column("macs", f"{prefix}MACs/sample")]
    for d in devices:
        columns += [Column(f"{d}:{name}", header, d, better) for name, header, better in specs[d]]
    top = any(r.get("bytes_by_operator") for r in rows)
    if top:
        columns.append(Column("top_bytes", "most bytes"))
    by_cell = {(r["tier"], r["_T"], int(r["batch_size"]), r["model"], r["device"]): r for r in rows}
    groups = sorted({(r["_tier_rank"], r["tier"], r["_T"], int(r["batch_size"])) for r in rows},
                    key=lambda g: (g[0], -1 if g[2] is None else g[2], g[3]))  # fmt: skip
    out: list[RowGroup] = []
    for _rank, tier, T, batch in groups:
        models = sorted({(r["_family_rank"], r["family"], r["model"]) for r in rows if r["tier"] == tier})
        cells: list[list[Cell]] = []
        for _fr, _family, model in models:
            recs = [by_cell.get((tier, T, batch, model, d)) for d in devices]
            ok = [r for r in recs if r is not None and r["status"] == Status.OK]
            macs = num(ok[0].get("macs")) / batch / scale if ok else math.nan
            row = [Cell(fmt_sig(macs), macs) if math.isfinite(macs) else Cell()]
            for d, rec in zip(devices, recs, strict=True):
                where = f"{tier}/{model} {d} b{batch}" + (f" T={T}" if T is not None else "")
                row += _device_cells(rec, specs[d], notes, where)
            if top:
                row.append(Cell(_top_operator(ok[0].get("bytes_by_operator")) if ok else "–"))
            cells.append(row)
        from bench.report.main_table import _mark_best  # one rule for "best in group" in every table

        cells = _mark_best(cells, columns)
        label = " · ".join([tier, *([f"T={T}"] if T is not None else []), f"b{batch}"])
        out.append(RowGroup(label, tuple(Row((f, m), tuple(c)) for (_r, f, m), c in zip(models, cells, strict=True))))
    return Table(title=title, label_headers=("family", "model"), columns=tuple(columns), groups=tuple(out),
                 notes=notes.texts(), caption=_caption(rows, docs))  # fmt: skip


def _present(v: Any) -> bool:
    return isinstance(v, str) and bool(v) or math.isfinite(num(v))


def _device_cells(rec: Mapping[str, Any] | None, specs: Sequence[tuple[str, str, Any]], notes: Notes,
                  where: str) -> list[Cell]:  # fmt: skip
    if rec is None:
        return [Cell(status="missing") for _ in specs]
    if rec["status"] != Status.OK:
        return [Cell(str(rec["status"]), status=str(rec["status"]))] + [Cell(status="missing")] * (len(specs) - 1)
    cells = []
    for name, _header, _better in specs:
        v = rec.get(name)
        cells.append(Cell(v) if isinstance(v, str) and v else Cell(fmt_sig(num(v)), num(v)))
    flag = invalid_flag(rec)
    if flag is not None:  # an INVALID latency: every clock-derived cell is greyed, never "best"
        cells = [Cell(c.text, c.value, status="invalid") if catalogue.timed(s[0]) else c
                 for c, s in zip(cells, specs, strict=True)]  # fmt: skip
        cells[0] = Cell(cells[0].text + flag[0], cells[0].value, notes=(notes.add(flag[1], where),), status="invalid")
    return cells


def _top_operator(text: Any) -> str:
    """``aten::convolution=60; aten::add=40`` -> ``convolution 60%``: the op moving the most bytes and its share."""
    parts = []
    for item in str(text or "").split(";"):
        name, _, value = item.strip().rpartition("=")
        if name and math.isfinite(num(_number(value))):
            parts.append((name, num(_number(value))))
    total = sum(v for _, v in parts)
    if not parts or total <= 0:
        return "–"
    name, value = max(parts, key=lambda p: p[1])
    return f"{name.removeprefix('aten::')} {value / total:.0%}"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _caption(rows: Sequence[Mapping[str, Any]], docs: Sequence[Mapping[str, Any]]) -> str:
    out = ["GFLOP/s: FLOPs (2 × MACs) per second at the median latency (a training step counts 3 × the forward);",
           "MFU: that over the run's measured GEMM peak (device, dtype, threads);",
           "FLOP/B: FLOPs over bytes moved (every op's distinct inputs, weights and outputs: a no-reuse upper bound,",
           "so intensity is a lower bound); BW use: bytes moved per second over the measured memory bandwidth;",
           "bound: the roof above the cell's intensity (memory left of the ridge point peak ÷ bandwidth, else",
           "compute). See docs/efficiency.md."]  # fmt: skip
    ok = [r for r in rows if r["status"] == Status.OK]
    low = [(num(r.get("arith_intensity")), r) for r in ok if math.isfinite(num(r.get("arith_intensity")))]
    if low:
        v, r = min(low, key=lambda p: p[0])
        out.append(f"Lowest intensity: {r['family']} ({fmt_sig(v)} FLOP/B, {r['tier']} b{int(r['batch_size'])}).")
    if not peak_measured(docs):
        out.append(f"MFU, BW use and bound: {NO_PEAK} (aigc-bench run measures it unless --peak-budget 0).")
    over = [r for r in ok if num(r.get("mfu")) > 1]
    if over:
        out.append(_over_peak(over, docs))
    if not any(math.isfinite(num(r.get("bytes_moved"))) for r in ok):
        out.append("FLOP/B, BW use and bound: bytes moved not counted in this run (a newer flops metric counts them).")
    sources = sorted({str(r.get("energy_source")) for r in ok if str(r.get("energy_source") or "").startswith("unav")})
    if not any(math.isfinite(num(r.get("energy_j_per_sample"))) for r in ok):
        why = "; ".join(s.removeprefix("unavailable: ") for s in sources)
        out.append("Energy: not measured" + (f" ({why})." if why else " in this run."))
    return " ".join(out)


def _over_peak(over: Sequence[Mapping[str, Any]], docs: Sequence[Mapping[str, Any]]) -> str:
    """Why some cells show MFU above 1: a peak timed with torch.mm alone (runs before the oneDNN kernel was
    timed too; bench.peak), or work done in fewer multiplications than counted (Winograd/FFT convolutions)."""
    v, r = max(((num(r.get("mfu")), r) for r in over), key=lambda p: p[0])
    worst = f"{r['family']} {fmt_sig(v)} at {r['tier']} b{int(r['batch_size'])}"
    runs = {str(d.get("run_id")): d for d in docs}
    one_kernel = any(_mm_only(runs.get(str(x.get("run_id")), {}), str(x.get("device"))) for x in over)
    why = ("this run timed its GEMM peak with torch.mm alone, whose BLAS can be slower than the oneDNN kernels "
           "convolutions use (re-run to time both; docs/efficiency.md)" if one_kernel else
           "the cell did fewer multiplications than counted (e.g. Winograd or FFT convolutions) or beat both "
           "GEMM kernels timed")  # fmt: skip
    return f"MFU above 1 in {len(over)} cell(s) (highest: {worst}): {why}."


def _mm_only(doc: Mapping[str, Any], device: str) -> bool:
    """Whether the run's stored GEMM peak for ``device`` was timed with one kernel (no ``kernels`` entry)."""
    entry = (
        ((doc.get("env") or {}).get("peak") or {}).get(device.split(":", 1)[0]) if isinstance(doc, Mapping) else None
    )
    gemm = entry.get("gemm") if isinstance(entry, Mapping) else None
    return isinstance(gemm, Mapping) and any(isinstance(g, Mapping) and "kernels" not in g for g in gemm.values())
