"""``aigc-bench report`` without --combine: the newest run of each profile of a suite, each in its own set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import report_data as rd

from bench.cli import main


def _set(path: Path, **header: Any) -> Path:
    doc = json.loads(path.read_text())
    doc.update(header)
    path.write_text(json.dumps(doc))
    return path


def test_report_without_arguments_gives_each_profile_its_newest_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """A published default run and a published executions run of one suite: two report sets, never one combined
    (nor one left out); two runs of one profile still report the newest."""
    results = tmp_path / "results"
    default = _set(
        rd.write_run(results, "cv-synth", rd.cv_records(), started="2026-01-02T03:04:05Z"), profile="default"
    )
    execs = _set(rd.write_run(results, "cv-synth", rd.cv_records(), started="2026-02-02T03:04:05Z", host="other"),
                 profile="executions")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--format", "md"]) == 0
    names = {p.name for p in (tmp_path / "reports" / "cv-synth").iterdir()}
    assert {f"{default.stem}.md", f"{execs.stem}.md"} <= names and not any("combined" in n for n in names)
    assert "left out" not in capsys.readouterr().err
