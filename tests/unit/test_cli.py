"""The CLI: bad input gives one line and exit 2, before anything is written; --help everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cli import build_parser, main


def _never_measure(*args, **kwargs):
    raise AssertionError("bad input reached the runner: it would have started measuring")


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


ONE_CELL = ["run", "cv-backbones", "--profile", "quick", "--family", "resnet", "--tier", "tiny", "--device", "cpu"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "cv-backbone"], "unknown suite 'cv-backbone' (did you mean cv-backbones"),
        (
            ["run", "cv-backbones", "--profile", "fastest"],
            "valid choices: accuracy, accuracy-long, default, executions",
        ),
        (["run", "cv-backbones", "--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["run", "cv-backbones", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "cv-backbones", "--family", "resnett"], "did you mean resnet"),
        (["run", "cv-backbones", "--batch-size", "0"], "between 1 and"),
        (["run", "cv-backbones", "--shard", "3/2"], "K must be between 1 and N"),
        (["list", "nope"], "unknown suite 'nope'"),
        # Values the worker would choke on, and empty values that silently meant "all" or "the default".
        (["run", "cv-backbones", "--threads", "99999999999999999999"], "between 1 and 1024"),
        (["run", "cv-backbones", "--threads", "0"], "between 1 and 1024"),
        (["run", "cv-backbones", "--threads", "9" * 5000], "expected an integer between 1 and 1024"),
        (["run", "cv-backbones", "--batch-size", str(10**26)], "between 1 and 1048576"),
        (["run", "cv-backbones", "--batch-size", ","], "comma list of integers"),
        (["run", "cv-backbones", "--device", ""], "argument --device: expected a comma list of names"),
        (["run", "cv-backbones", "--dtype", ","], "argument --dtype: expected a comma list of names"),
        (["run", "cv-backbones", "--family", ""], "argument --family: expected a comma list of names"),
        (["run", "cv-backbones", "--tier", " "], "argument --tier: expected a comma list of names"),
        (["run", "cv-backbones", "--profile", ""], "argument --profile: expected a name"),
        (["run", "cv-backbones", "--shard", ""], "--shard must look like K/N"),
        (["run", "cv-backbones", "--shard", "2/99999999999999999999"], "N must be between 1 and 10000"),
        (["run", "cv-backbones", "--shard", "1/" + "9" * 5000], "--shard must look like K/N"),
        ([*ONE_CELL, "--shard", "2/3"], "shard 2/3 selects no cells: the selection has only 1 cells"),
        (["run", "seq-backbones", "--family", "cnn", "--tier", "100k"], "the selection has no cells"),
        (["run", "cv-backbones", "--retry-failed"], "--retry-failed goes with --resume"),
        (["run", "cv-backbones", "--resume", ""], "--resume FILE: expected a path"),
        (["run", "cv-backbones", "--report-dir", ""], "argument --report-dir: expected a path"),
        (["run", "cv-backbones", "--data", "", "--weights", "w"], "argument --data: expected a path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("bench.runner.run", _never_measure)  # a case that slips through fails at once
    argv = [*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (bad --batch-size syntax)
        code = e.code
    assert code == 2
    err = _err_line(capsys)
    assert expected in err
    assert not any(tmp_path.iterdir()), "nothing is written on bad input"


def test_argparse_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "--batch-size"])
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["run"]) == 2  # a suite or --model (issue 20): one line naming both
    assert capsys.readouterr().err == (
        "aigc-bench: error: give a suite (a name from aigc-bench list, or path/to/suite.py) or --model BUILDER\n"
    )


def test_cuda_without_gpu(capsys, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["run", "cv-backbones", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "valid choices: auto, cpu" in _err_line(capsys)


def test_unwritable_output_folder_fails_before_measuring(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    assert main(["run", "cv-backbones", "--profile", "quick", "--out", str(blocker / "results")]) == 2
    assert "not writable" in _err_line(capsys) or "cannot" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"


def test_an_over_long_output_path_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("bench.runner.run", _never_measure)
    for out in (tmp_path / ("x" * 5000), tmp_path / "/".join(["y" * 200] * 30)):  # a name > NAME_MAX; > PATH_MAX
        assert main(["run", "cv-backbones", "--profile", "quick", "--out", str(out)]) == 2
        assert "File name too long" in _err_line(capsys)
    assert not any(tmp_path.iterdir())


def test_help_everywhere_documents_exit_codes(capsys) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        # each lists the codes it can return: 3 is run's, 1 is compare's (issue 20)
        assert "exit codes" in out and ("3  run finished" in out) == (name == "run"), name
        assert ("1  compare" in out) == (name == "compare"), name
