"""The pretraining report: its tables in `aigc-bench report` (every format), the floor verdict, hostile names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _runfiles import record, run_file

from bench.pretraining import report


def _rec(family: str, probe: float, ci: float | None, tier: str = "vision", **more: Any) -> dict[str, Any]:
    r = record(f"{family}[width=64]", family=family, tier=tier, probe_acc_mean=probe, probe_acc_ci95=ci,
               finetune_acc_mean=0.3, finetune_acc_ci95=0.02, pretrain_steps=10, pretrain_flops=4e11,
               step_flops=4e10, pretrain_budget_flops=4e11, pretrain_seeds=3, downstream="shape",
               downstream_chance=0.274, **more)  # fmt: skip
    r["key"]["suite"] = "pretraining"
    r["samples"] = {"probe_curve_flops": [2e11, 4e11] * 3, "probe_curve_acc": [probe - 0.01, probe] * 3}
    return r


@pytest.mark.parametrize(
    ("probe", "ci", "floor", "floor_ci", "verdict"),
    [
        (0.40, 0.02, 0.33, 0.02, "beats"),  # intervals apart
        (0.36, 0.03, 0.33, 0.02, "≈ floor"),  # above, inside the noise: not a win
        (0.30, 0.03, 0.33, 0.02, "≈ floor"),
        (0.25, 0.01, 0.33, 0.02, "below"),
        (0.34, None, 0.33, None, "beats"),  # one seed: means
        (0.33, None, 0.33, None, "≈ floor"),
    ],
)
def test_versus_floor_needs_the_intervals_apart(probe, ci, floor, floor_ci, verdict) -> None:
    row = {"probe_acc_mean": probe, "probe_acc_ci95": ci}
    assert report.versus_floor(row, {"probe_acc_mean": floor, "probe_acc_ci95": floor_ci}) == verdict


def test_aigc_bench_report_renders_the_objective_tables_in_every_format(tmp_path: Path) -> None:
    from bench.report import write_reports

    hostile = "rot<script>alert(1)</script>|`x`"
    run = run_file(tmp_path / "res", [_rec("mae", 0.40, 0.02), _rec(hostile, 0.30, 0.02),
                                      _rec("random-init", 0.33, 0.02)])  # fmt: skip
    written = write_reports(run, tmp_path / "rep", formats="md,html,tex,csv")
    md = next(p for p in written if p.suffix == ".md").read_text()
    assert "Pretraining objectives at equal compute · vision" in md
    assert "| mae | **40.0 ± 2.0** |" in md and "| random-init | 33.0 ± 2.0 |" in md
    section = md[md.index("Pretraining objectives at equal compute") :]
    row = next(line for line in section.splitlines() if line.startswith("| mae |"))
    assert row.endswith("| beats |")
    assert "<script>" not in md and "<script>" not in next(p for p in written if p.suffix == ".html").read_text()
    assert "vision" in next(p for p in written if p.suffix == ".tex").read_text()
    assert any(p.name.endswith("probe-vs-flops.png") for p in written)


def test_a_rerun_cell_shows_the_later_run_and_keeps_suite_order() -> None:
    first = {"records": [_rec("mae", 0.30, 0.02), _rec("rotnet", 0.31, 0.02)]}
    later = {"records": [_rec("mae", 0.45, 0.02)]}
    rows = report.cells(first, later)["vision"]
    assert [r["family"] for r in rows] == ["rotnet", "mae"] and rows[1]["probe_acc_mean"] == 0.45


def test_other_suites_get_no_objective_tables() -> None:
    assert report.tables({"records": [record("m")]}) == []


def test_compare_judges_the_objective_accuracies_in_points_and_gates_only_when_named(tmp_path: Path) -> None:
    from bench.compare import compare, load_side, parse_fail_on

    base = run_file(tmp_path / "a", [_rec("mae", 0.40, 0.01), _rec("rotnet", 0.40, 0.01)])
    worse = run_file(tmp_path / "b", [_rec("mae", 0.30, 0.01), _rec("rotnet", 0.405, 0.01)])
    report = compare(load_side(base), load_side(worse))
    assert {"probe_acc", "finetune_acc"} <= {t.metric for t in report.thresholds}
    regressed = {(c.key.family, m.metric) for c, m in report.regressions}
    assert ("mae", "probe_acc") in regressed and ("rotnet", "probe_acc") not in regressed
    (mae,) = [m for c, m in report.regressions if c.key.family == "mae" and m.metric == "probe_acc"]
    assert mae.change == pytest.approx(-10.0) and mae.ci is not None  # points, with the CI of the difference
    assert report.exit_code == 0  # optional: not in the default --fail-on
    assert compare(load_side(base), load_side(worse), thresholds=parse_fail_on("probe_acc:1pt")).exit_code == 1


def test_the_main_table_leaves_out_a_latency_column_no_cell_measured() -> None:
    """Pretraining cells time no latency: no empty 'cpu p50' column -- unless a cell failed, whose status
    shows there."""
    import json

    from _published import published

    from bench.report.frames import frame_from_records
    from bench.report.main_table import build_tables

    records = json.loads(published("pretraining").read_text())["records"]
    (main,) = build_tables(frame_from_records(records))
    assert not [c.key for c in main.columns if c.group], [c.key for c in main.columns]  # no per-device column
    assert "bold" not in main.caption  # nothing to rank
    records[0] = {**records[0], "status": "failed", "error": "RuntimeError: boom", "metrics": {}}
    (main,) = build_tables(frame_from_records(records))
    assert [c.key for c in main.columns if c.group] == ["cpu:latency_p50_ms"]
    assert "failed" in [c.text for g in main.groups for r in g.rows for c in r.cells]
