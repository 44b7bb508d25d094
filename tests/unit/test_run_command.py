"""``aigc-bench run`` as a command, what it prints: strings from files and paths print literally (never as rich
markup), and a bad ``--resume`` file is one error line with nothing before it (exit 2)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from bench import runner
from bench.cli import main
from bench.commands import run as run_command
from bench.errors import StoreError
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.worker import base_record

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
BUSY = "the machine is busy (load 9.0 on 2 cores): latencies will be noisy"
HOSTILE = "[bold red]x[/] [link=https://evil.example]y"


def _suite() -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), warmup_s=0.02, min_run_time_s=0.02)
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(LIN,))
    return Suite(name="toy-cmd", description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The toy suite registered for the CLI, on a machine that always looks busy (the warning must wait)."""
    import bench.env
    from bench import registry

    suite = _suite()
    registry.SUITES.names()  # load the built-in suites first
    monkeypatch.setitem(registry.SUITES._items, suite.name, lambda: suite)
    monkeypatch.setattr(bench.env, "busy_warning", lambda threads: BUSY)
    return suite


def _measured(cell, on_event):  # no worker process: the record a params-only cell gets
    rec = base_record(cell, "ok")
    rec["metrics"] = {"params": 36}
    return rec


def test_a_bad_resume_file_is_one_error_line_and_nothing_before_it(toy: Suite, tmp_path: Path, capsys) -> None:
    """The busy-machine warning (and the progress bar) used to come first: two or three lines, not one."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "aigc-bench/run", "records": [')
    capsys.readouterr()
    code = main(
        ["run", "toy-cmd", "--device", "cpu", "--resume", str(bad), "--out", str(tmp_path / "o"), "--no-report"]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith(f"aigc-bench: error: {bad}: ") and captured.err.count("\n") == 1, captured.err


def test_a_resumed_file_name_prints_literally(toy: Suite, tmp_path: Path, capsys) -> None:
    """``results: [bold]{path}[/bold]`` printed a --resume file named ``[bold red]x[/]`` without its brackets."""
    done = runner.run(toy, runner.RunSettings(devices=("cpu",)), tmp_path / "o", measure=_measured).path
    hostile = tmp_path / HOSTILE / "run.json"
    hostile.parent.mkdir(parents=True)
    done.rename(hostile)
    capsys.readouterr()
    argv = ["run", "toy-cmd", "--device", "cpu", "--resume", str(hostile), "--out", str(tmp_path / "o"), "--no-report"]
    assert main(argv) == 0  # every cell is in the file: nothing is measured
    captured = capsys.readouterr()
    assert f"results: {hostile} (1 cells resumed from the file)" in captured.out.splitlines()
    assert BUSY in captured.err  # the warning still comes, once the run has begun


def test_report_paths_and_report_errors_print_literally(monkeypatch, tmp_path: Path) -> None:
    import bench.report

    folder = tmp_path / HOSTILE
    buf = io.StringIO()
    console = Console(file=buf, width=40)  # narrow: a long path is not wrapped onto a second line either
    monkeypatch.setattr(bench.report, "write_run_reports", lambda path, out: [folder / "r.md", folder / "r.csv"])
    run_command._write_reports(tmp_path / "run.json", folder, console)
    assert buf.getvalue() == f"report: {folder / 'r.md'}\n"

    def refuse(path, out):
        raise StoreError(f"{folder}: cannot write")

    monkeypatch.setattr(bench.report, "write_run_reports", refuse)
    buf.seek(0)
    buf.truncate()
    run_command._write_reports(folder / "run.json", folder, console)
    assert buf.getvalue() == (f"warning: reports not written: {folder}: cannot write "
                              f"(run `aigc-bench report {folder / 'run.json'}`)\n")  # fmt: skip


def test_docs_say_where_reports_go_as_the_code_does() -> None:
    """docs/reports.md lacked the folder names (``--out DIR`` -> ``DIR/reports/<suite>``) and the CSV's ``'``."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text(encoding="utf-8")
    rows = {
        "`aigc-bench run SUITE`": run_command.report_folder(None, None),
        "`aigc-bench run SUITE --out DIR`": run_command.report_folder(Path("DIR"), None),
        "`aigc-bench run SUITE --report-dir DIR`": run_command.report_folder(Path("DIR"), Path("DIR")),
    }
    for command, folder in rows.items():
        prefix = "./" if not folder.is_absolute() and folder.parts[0] != "DIR" else ""
        assert f"| {command} | `{prefix}{folder.as_posix()}/<suite>/`" in doc, command
    assert "gets a `'` prefix" in doc and "`=`, `+`, `-` or `@`" in doc
