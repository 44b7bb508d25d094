"""The malloc regime of a run is an explicit, recorded choice: run --allocator, records, reports, compare.

Steady and system malloc differ by up to 20% on models with large activations (issue 11: efficientnet_b0
0.80x torch.utils.benchmark under steady, 1.0x under system), so a run says which it used and compare
does not judge latency across them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _runfiles import record, run_file
from test_runner import LIN, make_suite

from bench import runner
from bench.allocator import STEADY_LABEL
from bench.cli import main
from bench.compare import Verdict, compare, load_side
from bench.errors import UnknownNameError
from bench.metrics._malloc import glibc
from bench.report.document import environment_line
from bench.store import load_run

LOW_NOISE = 10.0 + np.random.default_rng(7).normal(0, 0.05, 40)


def _latency_cell(report):
    (cell,) = report.cells
    return cell.metric("latency")


@pytest.mark.parametrize(("base", "blocked"), [("default", True), ("system", True), (STEADY_LABEL, False)])
def test_compare_does_not_judge_latency_across_regimes(tmp_path: Path, base: str, blocked: bool) -> None:
    b = run_file(tmp_path / "b", [record("m", LOW_NOISE, latency_malloc=base)])
    c = run_file(tmp_path / "c", [record("m", LOW_NOISE * 1.10, latency_malloc=STEADY_LABEL)])
    report = compare(load_side(b), load_side(c))
    m = _latency_cell(report)
    assert m.verdict is Verdict.REGRESSED
    if blocked:  # like a change of machine: shown, never failing, and the one line says why
        assert [str(e) for e in report.env_changes] == ["allocator: 'system' -> 'steady'"]
        assert report.env_blocked and report.exit_code == 0 and not m.fails
        assert report.summary().startswith("NOT COMPARABLE")
        allowed = compare(load_side(b), load_side(c), allow_env_change=True)
        assert allowed.exit_code == 1
    else:
        assert report.env_changes == () and report.exit_code == 1


def test_runs_that_predate_the_record_are_not_blocked(tmp_path: Path) -> None:
    b = run_file(tmp_path / "b", [record("m", LOW_NOISE)])  # no latency_malloc at all: nothing to tell
    c = run_file(tmp_path / "c", [record("m", LOW_NOISE, latency_malloc=STEADY_LABEL)])
    assert compare(load_side(b), load_side(c)).env_changes == ()


def test_cli_compare_names_the_regime_change(tmp_path: Path, capsys) -> None:
    b = run_file(tmp_path / "b", [record("m", LOW_NOISE, latency_malloc="system")])
    c = run_file(tmp_path / "c", [record("m", LOW_NOISE * 1.10, latency_malloc=STEADY_LABEL)])
    assert main(["compare", str(b), str(c)]) == 0
    assert "allocator: 'system' -> 'steady'" in capsys.readouterr().out


def test_run_settings_carry_the_regime_to_every_cell_and_the_header(tmp_path: Path) -> None:
    suite = make_suite(LIN)
    cells = runner.expand(suite, runner.RunSettings(devices=("cpu",), allocator="system"))
    assert {c.allocator for c in cells} == {"system"}
    assert {c.allocator for c in runner.expand(suite, runner.RunSettings(devices=("cpu",)))} == {"steady"}
    with pytest.raises(UnknownNameError, match="unknown allocator regime 'tcmalloc'.*valid choices: steady, system"):
        runner.expand(suite, runner.RunSettings(devices=("cpu",), allocator="tcmalloc"))

    def fake(cell, on_event):
        from bench.worker import base_record

        return {**base_record(cell, "ok"), "metrics": {"params": 36}}

    res = runner.run(suite, runner.RunSettings(devices=("cpu",), allocator="system"), tmp_path, measure=fake)
    doc = load_run(res.path)
    assert doc["settings"]["allocator"] == "system"
    assert "malloc system" in environment_line(doc)
    # a run under the other regime is not resumed into this file
    assert runner.find_resumable(tmp_path, "toy", doc["suite_hash"], {**doc["settings"], "allocator": "steady"},
                                 "quick") is None  # fmt: skip
    assert runner.find_resumable(tmp_path, "toy", doc["suite_hash"], doc["settings"], "quick") == res.path


def test_report_footer_names_the_regime_of_older_runs_from_their_records() -> None:
    old = {"run_id": "r", "settings": {}, "env": {}, "records": [{"metrics": {"latency_malloc": STEADY_LABEL}}]}
    assert "malloc steady" in environment_line(old)
    assert "malloc ?" in environment_line({"run_id": "r", "settings": {}, "env": {}, "records": []})


def test_cli_run_rejects_an_unknown_regime_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "cv_backbones", "--allocator", "jemalloc"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "invalid choice: 'jemalloc'" in err and "'steady'" in err and "'system'" in err


@pytest.mark.slow
@pytest.mark.skipif(glibc() is None, reason="the steady regime is glibc's")
def test_workers_time_under_the_runs_regime(tmp_path: Path) -> None:
    """Real workers: the latency record says the regime, and under system malloc no earlier metric had set
    malloc's thresholds (memory is measured after latency there)."""
    suite = make_suite(LIN, metrics=("params", "memory", "latency"))
    labels = {}
    for regime in ("system", "steady"):
        settings = runner.RunSettings(devices=("cpu",), batch_sizes=(1,), threads=1, allocator=regime)
        (rec,) = runner.run(suite, settings, tmp_path / regime).records
        assert rec["status"] == "ok", rec["error"]
        assert list(rec["metrics"]).index("latency_p50_ms") < list(rec["metrics"]).index("peak_memory_mb") or (
            regime == "steady"
        )
        labels[regime] = rec["metrics"]["latency_malloc"]
    assert labels == {"system": "system", "steady": STEADY_LABEL}
