"""Terminal output of ``aigc-bench run``: a progress bar over cells and a summary table per device."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.spec import CellSpec


class ProgressView:
    """A rich progress bar fed by the runner's events (done/total, ETA, current model and phase)."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=total)
        self.failed = 0

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_event(self, event: str, cell: CellSpec, payload: Any) -> None:
        k = cell.key
        label = f"{k.tier}/{k.model} {k.device} {k.dtype} b{k.batch_size}" + (f" T{k.seq_len}" if k.seq_len else "")
        if k.mode != "infer":
            label += f" {k.mode}"
        if event == "start":
            self.progress.update(self.task, description=f"{label} · start")
        elif event == "phase":
            self.progress.update(self.task, description=f"{label} · {payload}")
        elif event == "done":
            status = payload["status"]
            if status in ("failed", "timeout"):
                self.failed += 1
                self.progress.console.print(f"[red]{status}[/red] {label}: {payload.get('error')}")
            elif status == "skipped":
                self.progress.console.print(f"[yellow]skipped[/yellow] {label}: {payload.get('error')}")
            self.progress.update(self.task, advance=1, description=f"{label} · {status}")


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _fmt(v: float, digits: int = 3) -> str:
    if math.isnan(v):
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:.{decimals}f}"


# (header, metric, scale, lower is better); per-batch columns are added for latency/throughput/memory.
_STATIC = (("params (M)", "params", 1e-6, None), ("GMACs/sample", "macs", 1e-9, True))
_PER_BATCH = (("p50 ms", "latency_p50_ms", 1.0, True), ("p90 ms", "latency_p90_ms", 1.0, True),
              ("samples/s", "throughput", 1.0, False), ("peak MB", "peak_memory_mb", 1.0, True))  # fmt: skip


def summary_tables(records: Iterable[Mapping[str, Any]], suite: str) -> list[Table]:
    """One table per device and mode: tiers as row groups, one row per family, units in the headers.

    The best value of each column within a tier is shown in bold green.
    """
    recs = [r for r in records if r.get("status") == "ok"]
    tables: list[Table] = []
    groups = sorted({(r["key"]["device"], r["key"].get("mode", "infer"), r["key"]["dtype"]) for r in recs})
    for device, mode, dtype in groups:
        rs = [r for r in recs if (r["key"]["device"], r["key"].get("mode", "infer"), r["key"]["dtype"]) == (device, mode, dtype)]
        batches = sorted({r["key"]["batch_size"] for r in rs})
        cols: list[tuple[str, str, float, bool | None, int | None]] = [(h, m, s, lb, None) for h, m, s, lb in _STATIC]
        cols += [(f"{h} @b{b}", m, s, lb, b) for b in batches for h, m, s, lb in _PER_BATCH]
        t = Table(title=f"{suite} · {device} · {dtype} · {mode}  (MAC = multiply-accumulate; FLOPs = 2 × MACs)")
        t.add_column("tier")
        t.add_column("family")
        t.add_column("model")
        for h, *_ in cols:
            t.add_column(h, justify="right")
        tiers = list(dict.fromkeys(r["key"]["tier"] for r in rs))
        for ti, tier in enumerate(tiers):
            models = list(dict.fromkeys((r["key"]["family"], r["key"]["model"]) for r in rs if r["key"]["tier"] == tier))
            values: dict[tuple[str, str], list[float]] = {}
            for fam, model in models:
                row = []
                for _h, metric, scale, _lb, b in cols:
                    cand = [r for r in rs if r["key"]["tier"] == tier and r["key"]["model"] == model
                            and (b is None or r["key"]["batch_size"] == b)]  # fmt: skip
                    v = _num(cand[0]["metrics"].get(metric)) if cand else math.nan
                    if metric == "macs" and cand:
                        v = v / cand[0]["key"]["batch_size"]
                    row.append(v * scale)
                values[(fam, model)] = row
            best = []
            for j, (_h, _m, _s, lower, _b) in enumerate(cols):
                col = [values[m][j] for m in models if not math.isnan(values[m][j])]
                best.append(None if lower is None or len(col) < 2 else (min(col) if lower else max(col)))
            for i, (fam, model) in enumerate(models):
                cells = [f"[bold green]{_fmt(v)}[/bold green]" if best[j] is not None and v == best[j] else _fmt(v)
                         for j, v in enumerate(values[(fam, model)])]  # fmt: skip
                t.add_row(tier if i == 0 else "", fam, model, *cells, end_section=(i == len(models) - 1 and ti < len(tiers) - 1))
        tables.append(t)
    return tables


def print_summary(console: Console, records: Iterable[Mapping[str, Any]], suite: str) -> None:
    """Print the summary tables, then a line per failed or skipped cell."""
    records = list(records)
    for t in summary_tables(records, suite):
        console.print(t)
    bad = [r for r in records if r.get("status") != "ok"]
    for r in bad:
        k = r["key"]
        console.print(f"[red]{r['status']}[/red] {k['tier']}/{k['model']} {k['device']} {k['dtype']} b{k['batch_size']}: {r.get('error')}")
