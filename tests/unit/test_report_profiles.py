"""``aigc-bench report`` without --combine: the newest run of each profile of a suite, each in its own set."""

from __future__ import annotations

from pathlib import Path

import report_data as rd

from bench.cli import main


def test_report_without_arguments_gives_each_profile_its_newest_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """A published default run and a published executions run of one suite: two report sets, never one combined
    (nor one left out); of two runs of one profile, the older is left out."""
    results, cv = tmp_path / "results", rd.cv_records()
    older = rd.write_run(results, "cv-synth", cv, started="2025-12-02T03:04:05Z", host="old", profile="default")
    default = rd.write_run(results, "cv-synth", cv, started="2026-01-02T03:04:05Z", profile="default")
    execs = rd.write_run(results, "cv-synth", cv, started="2026-02-02T03:04:05Z", host="other", profile="executions")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--format", "md"]) == 0
    names = {p.name for p in (tmp_path / "reports" / "cv-synth").iterdir()}
    assert {f"{default.stem}.md", f"{execs.stem}.md"} <= names and not any("combined" in n for n in names)
    assert f"{older.stem}.md" not in names
    err = capsys.readouterr().err
    assert "cv-synth (default profile): reporting the newest run" in err and "1 older run(s) left out" in err
    assert "executions profile" not in err
