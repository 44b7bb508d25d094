"""``aigc-bench flops``: malformed input shapes exit 2 with one line."""

from __future__ import annotations

import json

import pytest

from bench.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("", "not an empty string"),  # was: the default shape, silently
        ("   ", "not an empty string"),
        ("3,,224", "an empty element"),  # was: read as 3,224
        ("3,224,", "an empty element"),
        ("0,3", "sizes start at 1"),
        ("-1", "positive integers"),
        ("a,b", "positive integers"),
        ("1.5", "positive integers"),
        ("99999999999999999999,3", "at most 2,147,483,647"),  # was: a traceback (int64 overflow)
    ],
)
def test_malformed_input_shapes_exit_2_with_one_line(shape: str, expected: str, capsys) -> None:
    code, out, err = _run(["flops", "timm:resnet18", "--input-shape", shape, "--json"], capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err and expected in err, err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batch-size", "99999999999"], "--batch-size must be between 1 and"),
        (["--batch-size", "0"], "--batch-size must be between 1 and"),
        (["--input-shape", "3,2147483647,2147483647", "--batch-size", "2147483647"], "overflow"),
    ],
)
def test_huge_sizes_exit_2_with_one_line(argv: list[str], expected: str, capsys) -> None:
    code, out, err = _run(["flops", "timm:resnet18", *argv, "--json"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_suite_inputs_too_large_to_build_for_real_are_refused(capsys) -> None:
    code, _, err = _run(["flops", "cv-backbones/tiny/resnet", "--batch-size", "100000"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "too large" in err, err


def test_shape_spellings_that_stay_accepted(capsys) -> None:
    counts = []
    for shape in ("3,64,64", "3x64x64", "3, 64, 64"):
        code, out, _ = _run(["flops", "timm:resnet18", "--input-shape", shape, "--json"], capsys)
        assert code == 0
        counts.append(json.loads(out)["macs"])
    assert counts[0] == counts[1] == counts[2] > 0
