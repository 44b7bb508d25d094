"""Cells measured on different hosts (``--executor ray``): their latencies are not judged against each other.

A Ray run stores, per record, the fingerprint of the host that measured it (``host_env``; bench.executors_ray).
Two runs of one cluster may measure a cell on different nodes; a latency ratio across two machines says nothing
about the code, so such a cell's machine-dependent metrics are marked like an environment change (shown, never
failing) unless ``--allow-host-change``. Counts (MACs, params) and accuracy do not depend on the host and are
judged as always. Runs without ``host_env`` (every local run) are left to the run-level environment check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bench.compare.model import COMPARED, CellComparison
from bench.compare.thresholds import METRICS
from bench.spec import CellKey

#: what tells one host from another: its name and its hardware
HOST_FIELDS = ("host", "cpu_model", "cpu_cores", "gpu_name")
#: metric kinds that do not depend on the machine (bench.compare.checks): judged across hosts as always
HOST_FREE_KINDS = ("exact", "points")


def rows_with_hosts(doc: Mapping[str, Any], rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``iter_rows``' rows of ``doc`` (in record order) with the host that measured each (``bench.env.measured_on``,
    read defensively: the file is untrusted) and whether the record named it itself (``ray``: a Ray run)."""
    from bench.env import measured_on

    for rec, row in zip(doc["records"], rows, strict=True):
        row["measured_on"] = _fields(measured_on(rec, doc))
        row["ray"] = isinstance(rec.get("host_env"), Mapping)
        yield row


def _fields(m: Mapping[str, Any]) -> dict[str, Any]:
    return {f: m.get(f) if isinstance(m.get(f), str | int) else None for f in HOST_FIELDS}


def host_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The host that measured a row (``rows_with_hosts``): its name and hardware."""
    src = row.get("measured_on") or {}
    return tuple(src.get(f) for f in HOST_FIELDS)


def host_label(host: Sequence[Any]) -> str:
    """``node-2 (AMD EPYC, 2 cores)``, ``node-2 (..., NVIDIA H200)``."""
    name, cpu, cores, gpu = host
    hw = ", ".join(str(x) for x in (cpu, f"{cores} cores" if cores is not None else None, gpu) if x is not None)
    return f"{name or '?'} ({hw})" if hw else str(name or "?")


def mark_host_changes(
    cells: Sequence[CellComparison],
    brows: Mapping[CellKey, Mapping[str, Any]],
    crows: Mapping[CellKey, Mapping[str, Any]],
    allow: bool,
) -> tuple[tuple[CellComparison, ...], list[str]]:
    """The cells with host-dependent verdicts marked (never failing) where a compared cell's two sides were
    measured on different hosts and either side says which host (``host_env``); and the report's note."""
    out, moved = [], 0
    for cell in cells:
        b, c = brows.get(cell.key), crows.get(cell.key)
        if cell.status != COMPARED or b is None or c is None or not (b.get("ray") or c.get("ray")):
            out.append(cell)
            continue
        hb, hc = host_of(b), host_of(c)
        if hb == hc:
            out.append(cell)
            continue
        moved += 1
        where = f"measured on {host_label(hb)} in the baseline and {host_label(hc)} now"
        if allow:
            out.append(replace(cell, notes=(*cell.notes, f"{where} (judged anyway: --allow-host-change)")))
            continue
        other = f"other host: {host_label(hb)} -> {host_label(hc)}"  # shown with the verdict's evidence
        metrics = tuple(m if METRICS[m.metric].kind in HOST_FREE_KINDS else
                        replace(m, env_changed=True, note=f"{m.note}; {other}" if m.note else other)
                        for m in cell.metrics)  # fmt: skip
        out.append(replace(cell, metrics=metrics, notes=(*cell.notes, f"{where}: its timings are shown, never "
                                                                       "failing (--allow-host-change judges them)")))  # fmt: skip
    notes = []
    if moved:
        notes.append(f"{moved} cell(s) were measured on different hosts on the two sides (Ray): their latency and "
                     "memory verdicts cannot fail" + (" -- judged anyway (--allow-host-change)" if allow else
                                                      "; pass --allow-host-change to judge them"))  # fmt: skip
    return tuple(out), notes
