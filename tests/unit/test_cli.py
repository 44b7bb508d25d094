"""The CLI: bad input gives one line and exit 2, before anything is written; --help everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cli import build_parser, main


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "cv-backbone"], "unknown suite 'cv-backbone' (did you mean cv-backbones"),
        (["run", "cv-backbones", "--profile", "fastest"], "valid choices: default, full, quick"),
        (["run", "cv-backbones", "--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["run", "cv-backbones", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "cv-backbones", "--family", "resnett"], "did you mean resnet"),
        (["run", "cv-backbones", "--batch-size", "0"], "positive integers"),
        (["run", "cv-backbones", "--shard", "3/2"], "K must be between 1 and N"),
        (["list", "nope"], "unknown suite 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path: Path, capsys) -> None:
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
        main(["run"])
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


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


def test_help_everywhere_documents_exit_codes(capsys) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "exit codes" in out and "3  run finished" in out, name
