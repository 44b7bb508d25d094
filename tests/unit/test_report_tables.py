"""Report tables on synthetic records: numbers, best-marking, ratios, CPU/CUDA side by side, flags, failures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import report_data as rd

from bench.errors import UnknownNameError
from bench.report import write_reports
from bench.report.figures import pareto_front
from bench.report.tables import (
    KEY,
    RunAnalysis,
    build_tables,
    fit_exponent,
    flagged_macs,
    fmt_sig,
    frame_from_records,
    scaling_tables,
    tidy_frame,
    unit_prefix,
)
from bench.store import load_results


@pytest.mark.parametrize(
    ("value", "text"),
    [(31.24, "31.2"), (4.6, "4.60"), (0.012345, "0.0123"), (1234.5, "1234"), (100, "100"), (9.996, "10.0"),
     (0.0, "0"), (-2.345, "-2.35"), (None, "–"), (math.nan, "–"), ("x", "–"), (math.inf, "–")],
)  # fmt: skip
def test_three_significant_figures(value: object, text: str) -> None:
    assert fmt_sig(value) == text


def test_unit_prefix_follows_the_median() -> None:
    assert unit_prefix([25e6, 5e6]) == (1e6, "M")
    assert unit_prefix([4.1e9, 1.2e9]) == (1e9, "G")
    assert unit_prefix([3e6, 6e6, 1.2e7]) == (1e6, "M")
    assert unit_prefix([2e4]) == (1e3, "K")


def _cv_table(**kw):
    tables = build_tables(frame_from_records(rd.cv_records(**kw)))
    assert len(tables) == 1
    return tables[0]


def test_layout_groups_columns_and_units() -> None:
    t = _cv_table()
    assert t.title == "cv-synth · fp32 · infer"
    assert [g.label for g in t.groups] == ["tiny · b1", "tiny · b8", "small · b1", "small · b8"]
    assert [r.labels[0] for r in t.groups[0].rows] == ["resnet", "vit", "convnext"]  # the suite's order
    keys = [c.key for c in t.columns]
    assert keys[:3] == ["params", "macs", "accuracy"]
    assert keys[-1] == "speedup"
    assert "cpu:latency_p90_ms" in keys and "cuda:peak_memory_mb" in keys and "cpu:ratio" in keys
    heads = {c.key: c.header for c in t.columns}
    assert heads["params"] == "params (M)" and heads["macs"] == "GMACs/sample" and heads["accuracy"] == "accuracy (%)"
    assert heads["cpu:latency_p50_ms"] == "p50 (ms)" and heads["cpu:ratio"] == "vs resnet"
    assert {c.group for c in t.columns if c.key.startswith("cuda:")} == {"cuda"}


def test_values_and_best_marking() -> None:
    t = _cv_table()
    p50 = t.cell("tiny · b1", "resnet", "cpu:latency_p50_ms")
    assert p50.text == "10.0" and p50.best  # 10 < 12.5 < 18 ms
    assert not t.cell("tiny · b1", "vit", "cpu:latency_p50_ms").best
    assert t.cell("tiny · b1", "vit", "cpu:peak_memory_mb").best  # 130 MB is the least
    assert (
        t.cell("tiny · b1", "resnet", "cpu:throughput").text == "100"
        and t.cell("tiny · b1", "resnet", "cpu:throughput").best
    )
    acc = t.cell("tiny · b1", "convnext", "accuracy")
    assert acc.text == "93.0 ± 0.30" and acc.best  # 0.93 ± 0.003 as percent
    assert t.cell("small · b1", "vit", "accuracy").best
    # params are matched by design: never marked
    assert not any(r.cells[0].best for g in t.groups for r in g.rows)
    # per-sample MACs: batch 8 cells store 8x the MACs
    assert t.cell("tiny · b8", "resnet", "macs").text == "1.25"
    assert t.cell("tiny · b1", "resnet", "params").text == "5.83"


def test_ratio_against_the_reference_family() -> None:
    t = _cv_table()
    assert t.cell("tiny · b1", "vit", "cpu:ratio").text == "1.80×"  # 18 / 10 ms
    assert t.cell("tiny · b1", "resnet", "cpu:ratio").text == "1.00×"
    assert t.cell("small · b1", "convnext", "cuda:ratio").text == "1.20×"
    other = build_tables(frame_from_records(rd.cv_records()), reference_family="vit")[0]
    assert {c.header for c in other.columns if c.key.endswith(":ratio")} == {"vs vit"}
    assert other.cell("tiny · b1", "resnet", "cpu:ratio").text == "0.556×"  # 10 / 18


def test_cpu_and_cuda_side_by_side_with_speedup() -> None:
    t = _cv_table()
    sp = t.cell("small · b1", "vit", "speedup")
    assert sp.text == "8.00×" and sp.value == pytest.approx(8.0)
    assert t.cell("small · b1", "vit", "cuda:latency_p50_ms").text == "5.62"  # 45 / 8
    cpu_only = build_tables(frame_from_records([r for r in rd.cv_records() if r["key"]["device"] == "cpu"]))[0]
    assert "speedup" not in [c.key for c in cpu_only.columns]
    assert {c.group for c in cpu_only.columns} == {"", "cpu"}


def test_flagged_flops_show_ours_and_theirs() -> None:
    t = _cv_table()
    c = t.cell("small · b1", "vit", "macs")
    assert c.text == "4.60 (fvcore 4.25)" and c.value == pytest.approx(4.6)
    assert c.notes and "fvcore" in t.notes[c.notes[0] - 1]
    assert t.cell("small · b1", "resnet", "macs").text == "4.10"  # agrees with fvcore: one number
    # no flag, but FlopCounterMode 3% apart
    recs = rd.cv_records()
    for r in recs:
        r["metrics"].pop("fvcore_macs", None)
        r["metrics"]["macs_flagged"] = False
        if r["key"]["family"] == "resnet" and r["status"] == "ok":
            r["metrics"]["fcm_macs"] = r["metrics"]["macs"] * 0.97
            r["metrics"]["fcm_diff_pct"] = -3.0
    t2 = build_tables(frame_from_records(recs))[0]
    assert t2.cell("tiny · b1", "resnet", "macs").text == "1.25 (FCM 1.21)"
    assert t2.cell("tiny · b1", "vit", "macs").text == "1.26"
    # flagged by the counter: only the counter that disagrees is shown; if none does, all are
    row = {"macs": 100.0, "macs_flagged": True, "fvcore_macs": 100.5, "fcm_macs": 90.0}
    assert flagged_macs(row) == [("FCM", 90.0)]
    assert flagged_macs({**row, "fcm_macs": 100.0}) == [("fvcore", 100.5), ("FCM", 100.0)]
    assert flagged_macs({**row, "macs_flagged": False, "fcm_macs": 100.0}) == []


def test_failed_cell_shows_status_and_error_footnote() -> None:
    t = _cv_table()
    c = t.cell("small · b8", "convnext", "cuda:latency_p50_ms")
    assert c.text == "failed" and c.status == "failed" and len(c.notes) == 1
    note = t.notes[c.notes[0] - 1]
    assert "CUDA out of memory" in note and "small/convnext_small cuda b8" in note
    assert t.cell("small · b8", "convnext", "speedup").text == "–"
    assert t.cell("small · b8", "convnext", "cpu:latency_p50_ms").text == "180"
    assert not c.best


def test_identical_errors_share_a_footnote() -> None:
    recs = rd.cv_records()
    for r in recs:
        if r["key"]["device"] == "cuda" and r["key"]["batch_size"] == 8 and r["key"]["tier"] == "small":
            r.update(status="timeout", error="exceeded 600 s", metrics={})
    t = build_tables(frame_from_records(recs))[0]
    timeouts = [n for n in t.notes if n.startswith("timeout")]
    assert len(timeouts) == 1 and timeouts[0].count("cuda b8") == 3


def test_no_accuracy_column_without_accuracy() -> None:
    t = _cv_table(accuracy=False)
    assert "accuracy" not in [c.key for c in t.columns]


def test_latest_run_wins_for_a_cell_measured_twice(tmp_path: Path) -> None:
    old = rd.cv_records()
    new = [r for r in rd.cv_records() if r["key"]["family"] == "resnet"]
    for r in new:
        r["metrics"]["latency_p50_ms"] = 5.0
    rd.write_run(tmp_path, "cv-synth", old, started="2026-01-01T00:00:00Z")
    rd.write_run(tmp_path, "cv-synth", new, started="2026-01-03T00:00:00Z")
    frame = load_results(tmp_path)
    t = build_tables(frame)[0]
    assert t.cell("tiny · b1", "resnet", "cpu:latency_p50_ms").text == "5.00"
    assert t.cell("tiny · b1", "vit", "cpu:latency_p50_ms").text == "18.0"
    assert len(tidy_frame(frame)) == len(old) + len(new)  # the CSV keeps every record


def test_unknown_reference_family_names_the_choices(tmp_path: Path) -> None:
    rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records())
    with pytest.raises(UnknownNameError, match="resnet"):
        write_reports(tmp_path / "results", tmp_path / "reports", "csv", reference_family="resnett")


def test_sequence_suite_groups_by_length_and_fits_exponents() -> None:
    frame = frame_from_records(rd.seq_records())
    t = build_tables(frame)[0]
    assert [g.label for g in t.groups][:2] == ["small · T=64 · b1", "small · T=128 · b1"]
    heads = {c.key: c.header for c in t.columns}
    assert (
        heads["cpu:tokens_per_s"] == "tokens/s" and heads["macs"] == "MMACs/sample" and heads["cpu:ratio"] == "vs lstm"
    )
    assert t.cell("small · T=512 · b1", "transformer", "cpu:ratio").text == "8.00×"  # 128 / 16 ms
    (s,) = scaling_tables(frame)
    assert "fitted here" in s.title
    k = {r.labels[1]: [c.value for c in r.cells] for g in s.groups for r in g.rows}
    assert k["lstm"] == pytest.approx([1.0, 1.0, 1.0])
    assert k["transformer"] == pytest.approx([2.0, 2.0, 2.0])


def test_stored_fits_and_crossovers_are_shown_as_stored() -> None:
    """The runner's shape (bench.scaling.analyse): one fit per series and metric, crossovers per family pair."""
    series = {"tier": "small", "device": "cpu", "dtype": "fp32", "batch_size": 1, "mode": "infer"}
    fits = [{**series, "family": f, "metric": m, "exponent": k, "r2": 0.99, "seq_lens": [64, 512], "values": [1, 2]}
            for f, k0 in (("lstm", 0.98), ("transformer", 1.97)) for m, k in (("macs", k0 + 0.01), ("latency_p50_ms", k0))]  # fmt: skip
    cross = [{**series, "metric": "latency_p50_ms", "a": "transformer", "b": "lstm", "seq_lens": [64, 512],
              "seq_len": 181.0, "crossings": [], "relation": "crosses"}]  # fmt: skip
    analysis = RunAnalysis.from_doc({"run_id": "r1", "analysis": {"x": "seq_len", "fits": fits, "crossovers": cross}})
    exps, crossing = scaling_tables(frame_from_records(rd.seq_records()), [analysis])
    assert "analysis" in exps.title and [c.header for c in exps.columns] == ["latency exponent", "MACs exponent"]
    assert exps.groups[0].label == "cpu · fp32 · b1 · infer"
    assert [(r.labels, [c.text for c in r.cells]) for r in exps.groups[0].rows] == [
        (("small", "lstm"), ["0.980 (R² 0.990)", "0.990 (R² 0.990)"]),
        (("small", "transformer"), ["1.97 (R² 0.990)", "1.98 (R² 0.990)"]),
    ]
    row = crossing.groups[0].rows[0]
    assert row.labels == ("small", "latency", "transformer", "lstm") and [c.text for c in row.cells] == [
        "181",
        "crosses",
    ]


def test_the_runners_analysis_is_read() -> None:
    scaling = pytest.importorskip("bench.scaling")
    recs = rd.seq_records()
    doc = {"run_id": "r1", "analysis": scaling.analyse(recs, pairs=[("transformer", "lstm")])}
    tables = scaling_tables(frame_from_records(recs), [RunAnalysis.from_doc(doc)])
    assert [t.title for t in tables] == [
        "Scaling with sequence length (from the run's analysis)",
        "Crossovers between families",
    ]
    lstm = next(r for r in tables[0].groups[0].rows if "lstm" in r.labels)
    assert lstm.cells[0].value == pytest.approx(1.0)
    assert {r.cells[1].text for r in tables[1].groups[0].rows} <= {"A above B throughout", "touches"}


def test_a_plain_list_of_stored_exponents_is_listed() -> None:
    entries = [{"metric": "latency", "exponent": 1.5, "note": "x"}]
    (t,) = scaling_tables(frame_from_records(rd.seq_records()), [RunAnalysis("r1", tuple(entries))])
    assert [c.key for c in t.columns] == ["metric", "exponent", "note"]
    assert [c.text for c in t.groups[0].rows[0].cells] == ["latency", "1.50", "x"]


def test_no_scaling_table_for_vision_suites() -> None:
    assert scaling_tables(frame_from_records(rd.cv_records())) == []


def test_fit_exponent_and_pareto_front() -> None:
    slope, r2 = fit_exponent([64, 128, 256], [3.0 * t**1.5 for t in (64, 128, 256)])
    assert slope == pytest.approx(1.5) and r2 == pytest.approx(1.0)
    assert fit_exponent([64, 64], [1, 2]) is None
    pts = [(10, 91), (12.5, 93), (18, 88), (30, 94), (9, 80)]
    assert pareto_front(pts) == [(9, 80), (10, 91), (12.5, 93), (30, 94)]


def test_tidy_frame_is_one_row_per_cell_in_a_stable_order() -> None:
    recs = rd.cv_records()
    tidy = tidy_frame(frame_from_records(recs[::2] + recs[1::2]))
    assert len(tidy) == len(recs)
    key = [k for k in KEY if k != "execution"]  # eager-only cells: no execution column (tests/unit/test_execution.py)
    assert list(tidy.columns[: len(key) + 2]) == [*key, "status", "error"]
    assert not [c for c in tidy.columns if c.endswith("_samples") or c.startswith("_") or c == "path"]
    assert list(tidy.columns[-2:]) == ["run_id", "host"]
    assert tidy["input_shape"].iloc[0] == "3x32x32"
    first = tidy.iloc[0]
    assert (first["tier"], first["family"], first["device"], first["batch_size"]) == ("tiny", "convnext", "cpu", 1)
    # the order of records within a tier does not matter (tiers keep the run's order)
    assert tidy.equals(tidy_frame(frame_from_records(recs)))


def test_terminal_summary_uses_the_same_pivot() -> None:
    from rich.console import Console

    from bench.report.terminal import print_summary

    console = Console(record=True, width=400, color_system=None)
    print_summary(console, rd.cv_records({"convnext": "convnext[dims=88]"}), "cv-synth")
    text = console.export_text()
    assert "convnext[dims=88]" in text  # not swallowed as rich markup
    assert "failed[2]" in text and "[2] failed: CUDA out of memory" in text  # [1] is the FLOP flag
    # the other counters' count under the table, not in the cell (it wrapped rows at 120-140 columns; issue 20)
    assert "4.60[1]" in text and "MACs by other counters: vit_small: fvcore 4.25" in text and "tiny · b1" in text
