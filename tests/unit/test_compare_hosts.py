"""Cells measured on different hosts (Ray records' ``host_env``, issue 15): their latency is shown but never fails
unless --allow-host-change; counts are judged as always; runs without ``host_env`` are left to the run-level check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _runfiles import ENV, record, run_file

from bench.cli import main
from bench.compare import compare, load_side, to_markdown

SLOW = 10.0 + np.random.default_rng(3).normal(0, 0.05, 40)


def _on(host: str, samples, **kw) -> dict:
    rec = record("m", samples, **kw)
    rec["host_env"] = {**{k: ENV[k] for k in ("cpu_model", "cpu_cores", "gpu_name")}, "host": host, "torch": "2.14.1"}
    return rec


def _sides(tmp_path: Path, base: dict, cur: dict) -> tuple[Path, Path]:
    return run_file(tmp_path / "b", [base]), run_file(tmp_path / "c", [cur])


def test_a_cell_measured_on_another_host_is_shown_and_never_fails(tmp_path: Path) -> None:
    b, c = _sides(tmp_path, _on("node-1", SLOW), _on("node-2", SLOW * 1.2, macs=5_000_000_000))
    report = compare(load_side(b), load_side(c))
    (cell,) = report.cells
    lat, macs = cell.metric("latency"), cell.metric("macs")
    assert lat.verdict.value == "regressed" and lat.env_changed and not lat.fails
    assert macs.fails  # a count does not depend on the host: judged as always
    assert "measured on node-1 (Test CPU 9000, 2 cores) in the baseline and node-2" in cell.notes[-1]
    assert any("different hosts" in n and "--allow-host-change" in n for n in report.notes)
    assert "node-2" in to_markdown(report)


def test_allow_host_change_judges_them(tmp_path: Path) -> None:
    b, c = _sides(tmp_path, _on("node-1", SLOW), _on("node-2", SLOW * 1.2))
    report = compare(load_side(b), load_side(c), allow_host_change=True)
    (cell,) = report.cells
    assert cell.metric("latency").fails and report.exit_code == 1
    assert "judged anyway" in cell.notes[-1]
    assert main(["compare", str(b), str(c)]) == 0  # the CLI: shown, not failing
    assert main(["compare", str(b), str(c), "--allow-host-change"]) == 1


def test_the_same_host_on_both_sides_is_judged_and_a_local_baseline_counts_as_its_runs_host(tmp_path: Path) -> None:
    b, c = _sides(tmp_path, _on("node-1", SLOW), _on("node-1", SLOW * 1.2))
    (cell,) = compare(load_side(b), load_side(c)).cells
    assert cell.metric("latency").fails and not any("measured on" in n for n in cell.notes)
    # a local run (no host_env) on ENV's host ci-1 against a Ray cell measured on node-3: different hosts
    b2, c2 = run_file(tmp_path / "b2", [record("m", SLOW)]), run_file(tmp_path / "c2", [_on("node-3", SLOW * 1.2)])
    (cell,) = compare(load_side(b2), load_side(c2)).cells
    assert not cell.metric("latency").fails and "ci-1" in cell.notes[-1] and "node-3" in cell.notes[-1]


def test_runs_without_host_env_keep_todays_verdicts(tmp_path: Path) -> None:
    b = run_file(tmp_path / "b", [record("m", SLOW)])
    c = run_file(tmp_path / "c", [record("m", SLOW * 1.2)], host="ci-7", env={**ENV, "host": "ci-7"})
    (cell,) = compare(load_side(b), load_side(c)).cells
    assert cell.metric("latency").fails  # CI runners change names: the run-level check (CPU, torch...) decides


def test_a_hostile_host_name_stays_literal_in_markdown(tmp_path: Path) -> None:
    b, c = _sides(tmp_path, _on("node-1", SLOW), _on("<img src=x>|`x", SLOW * 1.2))
    md = to_markdown(compare(load_side(b), load_side(c)))
    assert "<img" not in md
