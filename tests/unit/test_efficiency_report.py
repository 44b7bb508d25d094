"""Efficiency in the report (issue 16): derived from stored results -- published runs gain achieved GFLOP/s and say
the peak was not measured; a run with a peak and bytes moved gets MFU in the main table, the efficiency table
and a roofline figure, recomputed identically from the file every time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _published import V1_RUNS, published

from bench import catalogue
from bench.report import write_reports
from bench.report.document import build_report
from bench.report.efficiency import NO_PEAK, add_derived
from bench.report.formatting import fmt_sig
from bench.report.frames import frame_from_runs
from bench.store import load_run

CV = published("cv-backbones")
PEAK = {"cpu": {"threads": 2, "gemm": {"fp32": {"gflops": 250.0, "size": 2048, "sizes": []}},
                "bandwidth": {"gbs": 40.0, "copy": {"samples": [39.0]}, "triad": {"samples": [40.0]}}}}  # fmt: skip


def _report(doc: dict, path: Path | None = None):
    return build_report(frame_from_runs([(path, doc)]), [doc])


def test_a_published_run_gains_achieved_gflops_and_says_the_peak_was_not_measured() -> None:
    """The run published before the peak and bytes moved existed (kept under tests/unit/data/v1)."""
    old = next(p for p in V1_RUNS if p.stem == "cv-backbones")
    doc = load_run(old)
    frame = add_derived(frame_from_runs([(old, doc)]), [doc])
    ok = frame[frame["status"] == "ok"]
    for row in ok.itertuples():
        assert row.achieved_gflops == pytest.approx(row.flops / (row.latency_p50_ms / 1e3) / 1e9)
    assert "mfu" not in frame and "bound" not in frame  # absent, never zero
    report = _report(doc, old)
    (table,) = report.efficiency
    assert NO_PEAK in table.caption and "bytes moved not counted in this run" in table.caption
    assert [c.header for c in table.columns] == ["GMACs/sample", "p50 (ms)", "GFLOP/s"]
    assert report.environment[0].endswith(" · peak not measured in this run")
    assert all("mfu" not in c.key for t in report.tables for c in t.columns)


def _with_peak() -> dict:
    doc = load_run(CV)
    doc["records"] = [r for r in doc["records"] if r["key"]["tier"] == "tiny"]
    for r in doc["records"]:
        r["metrics"]["bytes_moved"] = r["metrics"]["flops"] / (3.0 if r["key"]["family"] == "efficientnet" else 20.0)
        r["metrics"]["arith_intensity"] = r["metrics"]["flops"] / r["metrics"]["bytes_moved"]
    doc["env"]["peak"] = PEAK
    return doc


def test_a_run_with_its_peak_gets_mfu_the_efficiency_table_and_a_roofline(tmp_path: Path) -> None:
    doc = _with_peak()
    report = _report(doc)
    main = report.tables[0]
    resnet = next(r for r in doc["records"] if r["key"]["family"] == "resnet" and r["key"]["batch_size"] == 8)
    m = resnet["metrics"]
    mfu = m["flops"] / (m["latency_p50_ms"] / 1e3) / 1e9 / 250.0
    assert main.cell("tiny · b8", "resnet", "cpu:mfu").text == fmt_sig(mfu)
    (eff,) = report.efficiency
    assert eff.cell("tiny · b8", "resnet", "cpu:mfu").text == fmt_sig(mfu)
    # ridge 250 / 40 = 6.25 FLOP/B: intensity 20 is compute-bound, 3 memory-bound
    assert eff.cell("tiny · b8", "resnet", "cpu:bound").text == "compute"
    assert eff.cell("tiny · b1", "efficientnet", "cpu:bound").text == "memory"
    assert "Lowest intensity: efficientnet (3.00 FLOP/B" in eff.caption and NO_PEAK not in eff.caption
    (fig,) = [f for f in report.figures if f.slug.startswith("roofline")]
    assert fig.slug == "roofline-cpu" and fig.png.startswith(b"\x89PNG") and b"<svg" in fig.svg
    assert "fp32 GEMM 250 GFLOP/s, bandwidth 40 GB/s" in report.environment[0]


def test_derived_metrics_are_recomputed_identically_from_a_stored_run(tmp_path: Path) -> None:
    doc = _with_peak()
    path = tmp_path / "results" / "cv-backbones" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    stored = load_run(path)
    frame = add_derived(frame_from_runs([(path, stored)]), [stored])
    for row, record in zip(frame.to_dict("records"), stored["records"], strict=True):
        again = catalogue.derive({**record["key"], **record["metrics"]}, stored)
        for name, value in again.items():
            assert row[name] == value or (isinstance(value, float) and math.isclose(row[name], value, rel_tol=0))
    first = {p.name: p.read_bytes() for p in write_reports(path, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write_reports(path, tmp_path / "b")}
    assert first == second and any(n.endswith("roofline-cpu.png") for n in first)
    assert "mfu" in first["run.csv"].decode().splitlines()[0].split(",")


def test_mfu_above_one_is_explained_under_the_efficiency_table() -> None:
    """A peak timed with torch.mm alone (runs before the oneDNN kernel was timed) says so; a two-kernel peak
    names fewer multiplications than counted instead; no cell above 1, no sentence."""
    doc = _with_peak()
    low = json.loads(json.dumps(doc))
    low["env"]["peak"]["cpu"]["gemm"]["fp32"]["gflops"] = 1.0  # every cell far above this "peak"
    (eff,) = _report(low).efficiency
    assert "MFU above 1 in" in eff.caption and "torch.mm alone" in eff.caption
    low["env"]["peak"]["cpu"]["gemm"]["fp32"]["kernels"] = {"mm": {"gflops": 1.0}, "conv1x1": {"gflops": 0.5}}
    (eff,) = _report(low).efficiency
    assert "MFU above 1 in" in eff.caption and "fewer multiplications than counted" in eff.caption
    doc["env"]["peak"]["cpu"]["gemm"]["fp32"]["gflops"] = 1e6
    (eff,) = _report(doc).efficiency
    assert "MFU above 1" not in eff.caption
