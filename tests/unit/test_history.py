"""``aigc-bench history`` (``bench.history``): series over stored runs and their change points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _runfiles import ENV, record

from bench.cli import main
from bench.errors import UsageError
from bench.history import change_points, load_series, steps_of, write_history
from bench.store import RunWriter, reserve_path


def _runs(folder: Path, values: dict[str, list[float]]) -> None:
    """One run file per index, started an hour apart, each cell's ``latency_p50_ms`` from ``values``."""
    n = len(next(iter(values.values())))
    for i in range(n):
        path = reserve_path(folder, "s", host=f"h{i:03d}")
        recs = [record(model, [v[i]] * 3) for model, v in values.items()]
        header = {"run_id": f"run{i:03d}", "suite": "s", "suite_hash": "h", "suite_definition": {}, "profile": "quick",
                  "settings": {}, "env": {**ENV, "git_commit": f"c{i:03d}"},
                  "started_at": f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"}  # fmt: skip
        RunWriter(path, header, recs).finish()


def test_a_ten_percent_step_is_found_at_its_index() -> None:
    rng = np.random.default_rng(0)
    for at in (3, 12, 27):
        v = list(10.0 * (1 + rng.normal(0, 0.01, 30)))
        v[at:] = [x * 1.10 for x in v[at:]]
        assert change_points(v) == [at]


def test_noise_alone_and_one_slow_run_are_not_steps() -> None:
    rng = np.random.default_rng(1)
    for seed in range(20):
        v = list(10.0 * (1 + np.random.default_rng(seed).normal(0, 0.02, 40)))
        assert change_points(v) == [], seed
    spike = list(10.0 * (1 + rng.normal(0, 0.005, 20)))
    spike[9] *= 1.3  # one disturbed run
    assert change_points(spike) == []
    assert change_points([5.0] * 10) == [] and change_points([1.0, 2.0]) == []


def test_two_steps_and_their_levels() -> None:
    v = [10.0] * 8 + [11.0] * 8 + [9.0] * 8
    cps = change_points(v)
    assert cps == [8, 16]
    st = steps_of(v, cps)
    assert [(s.before, s.after) for s in st] == [(10.0, 11.0), (11.0, 9.0)]
    assert st[0].change_pct == pytest.approx(10.0)


def test_history_of_stored_runs_finds_the_step_and_writes_table_and_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stepped = list(10.0 * (1 + rng.normal(0, 0.01, 20)))
    stepped[12:] = [x * 1.10 for x in stepped[12:]]
    _runs(tmp_path / "results", {"slow": stepped, "steady": list(5.0 * (1 + rng.normal(0, 0.01, 20)))})
    series = {s.cell.split("/")[3]: s for s in load_series(tmp_path / "results")}
    assert [st.index for st in series["slow"].steps] == [12] and series["steady"].steps == ()
    assert series["slow"].points[12].commit == "c012" and series["slow"].points[0].run_id == "run000"
    assert series["slow"].steps[0].change_pct == pytest.approx(10.0, abs=2.0)
    out = tmp_path / "reports" / "history"
    assert main(["history", str(tmp_path / "results"), "--cell", "*slow*", "-o", str(out)]) == 0
    md = (out / "history.md").read_text()
    assert "| 12 (`run012`) | `c012` |" in md and md.count(".png") == 1
    pngs = list(out.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_the_html_report_links_to_the_history_beside_it(tmp_path: Path) -> None:
    from bench.report import write_reports

    _runs(tmp_path / "results", {"m": [10.0] * 4})
    first = write_reports([tmp_path / "results"], tmp_path / "reports", formats="html")
    assert "history.md" not in next(p for p in first if p.suffix == ".html").read_text()
    write_history(load_series(tmp_path / "results"), tmp_path / "reports" / "history")
    again = write_reports([tmp_path / "results"], tmp_path / "reports", formats="html", on_conflict="overwrite")
    html = next(p for p in again if p.suffix == ".html").read_text()
    assert '<a href="../history/history.md">' in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["EMPTY"], "no aigc-bench run files found"),
        (["RESULTS", "--metric", "latency_p50"], "did you mean latency_p50_ms"),
        (["RESULTS", "--cell", "*nope*"], "no cell with latency_p50_ms matches *nope*"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    _runs(tmp_path / "results", {"m": [10.0] * 4})
    paths = {"EMPTY": str(tmp_path / "empty"), "RESULTS": str(tmp_path / "results")}
    argv = ["history", *(paths.get(a, a) for a in args), "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(UsageError):
        load_series(tmp_path / "empty")


def test_published_runs_load_as_series() -> None:
    root = Path(__file__).resolve().parents[2] / "results"
    series = load_series(root)
    assert series and all(len(s.points) >= 1 for s in series)
    assert json.dumps([s.cell for s in series])  # ids are plain strings
