"""``aigc-bench flops``: malformed input shapes exit 2 with one line; timm names may carry a pretrained tag."""

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


def test_timm_pretrained_tag_is_accepted_and_never_downloads(monkeypatch, capsys) -> None:
    import timm
    import timm.models._builder as builder

    calls = []
    create = timm.create_model

    def spy(name, **kwargs):
        calls.append((name, kwargs))
        return create(name, **kwargs)

    def no_download(*args, **kwargs):
        raise AssertionError("weights must never be loaded")

    monkeypatch.setattr(timm, "create_model", spy)
    monkeypatch.setattr(builder, "load_pretrained", no_download)
    code, out, err = _run(["flops", "timm:vit_tiny_patch16_224.augreg_in21k", "--json"], capsys)
    assert code == 0, err  # was: "unknown timm model" (exit 2)
    assert calls == [("vit_tiny_patch16_224.augreg_in21k", {"pretrained": False})]
    tagged = json.loads(out)["macs"]
    code, out, _ = _run(["flops", "timm:vit_tiny_patch16_224", "--json"], capsys)
    # the tag selects its config: the in21k head has 21,843 classes instead of 1,000 (width 192)
    assert code == 0 and tagged - json.loads(out)["macs"] == (21_843 - 1_000) * 192


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18.bogus", "unknown pretrained tag 'bogus' of timm model 'resnet18' (its tags: a1_in1k"),
        ("vit_tiny_patch16_224.augreg_in12k", "did you mean augreg_in21k"),
        ("resnet18.", "a pretrained tag must follow"),
        ("resnet1800.tv_in1k", "unknown timm model 'resnet1800'"),
    ],
)
def test_bad_timm_names_and_tags_exit_2_with_one_line(name: str, expected: str, capsys) -> None:
    code, _, err = _run(["flops", f"timm:{name}"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
