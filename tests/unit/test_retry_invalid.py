"""``run --resume --retry-invalid``: the cells whose latency was judged INVALID are measured again, in place; the
others are kept as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import runner
from bench.cli import main
from bench.errors import UsageError
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_run


def _suite() -> Suite:
    variants = tuple(VariantSpec(family=f, builder="torch.nn:Linear", model_args=freeze({"in_features": 8,
                                 "out_features": 4})) for f in ("a", "b", "c"))  # fmt: skip
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=variants)
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), default_profile="quick",
                 profiles=(Profile(name="quick", metrics=("params",)),))  # fmt: skip


def test_retry_invalid_measures_again_only_the_invalid_latencies(tmp_path: Path) -> None:
    calls: list[str] = []

    def measure(cell, on_event):
        calls.append(cell.key.family)
        verdict = "invalid" if cell.key.family == "b" and calls.count("b") == 1 else "valid"
        return {"key": cell.key.to_dict(), "status": "ok",
                "metrics": {"params": 36, "latency_p50_ms": 1.0 + len(calls), "latency_validity": verdict}}  # fmt: skip

    settings = runner.RunSettings(devices=("cpu",))
    first = runner.run(_suite(), settings, tmp_path, measure=measure)
    assert calls == ["a", "b", "c"]
    again = runner.run(_suite(), settings, tmp_path, resume=first.path, retry_invalid=True, measure=measure)
    assert calls[3:] == ["b"] and again.path == first.path
    stored = {r["key"]["family"]: r["metrics"] for r in load_run(first.path)["records"]}
    assert stored["b"] == {"params": 36, "latency_p50_ms": 5.0, "latency_validity": "valid"}
    assert stored["a"]["latency_p50_ms"] == 2.0 and len(load_run(first.path)["records"]) == 3
    with pytest.raises(UsageError, match="--retry-invalid goes with --resume"):
        runner.run(_suite(), settings, tmp_path, retry_invalid=True, measure=measure)


def test_a_record_stored_before_verdicts_is_judged_as_the_report_judges_it(tmp_path: Path) -> None:
    """No stored ``latency_validity`` (files older than the verdicts): judged now (``stored_or_judged``); a machine
    speed reference that moved 30% makes it INVALID, so it is measured again; a steady one does not."""
    calls: list[str] = []

    def measure(cell, on_event):
        calls.append(cell.key.family)
        drift = 0.3 if cell.key.family == "b" and calls.count("b") == 1 else 0.0
        return {"key": cell.key.to_dict(), "status": "ok",
                "metrics": {"params": 36, "latency_p50_ms": 1.0, "speed_ref_drift": drift}}  # fmt: skip

    settings = runner.RunSettings(devices=("cpu",))
    first = runner.run(_suite(), settings, tmp_path, measure=measure)
    runner.run(_suite(), settings, tmp_path, resume=first.path, retry_invalid=True, measure=measure)
    assert calls == ["a", "b", "c", "b"]


def test_the_cli_refuses_retry_invalid_without_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "cv-backbones", "--retry-invalid"]) == 2
    assert "--retry-invalid goes with --resume" in capsys.readouterr().err
