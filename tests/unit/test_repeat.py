"""``run --repeat K`` (``bench.repeat``): K processes per latency cell, rounds interleaved, and compare per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runfiles import record, run_file

from bench import runner
from bench.cli import main
from bench.compare import Verdict, compare, load_side
from bench.repeat import DRIFT_METRIC, PROCESS_SAMPLES, PROCESSES_METRIC, REF_PROCESS_SAMPLES, Rounds, combine
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_results, load_run

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
WIDE = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 40}))


def _suite() -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params", "latency"), warmup_s=0.05, min_run_time_s=0.05)
    tier = Tier(name="t", target_params=36, tolerance=100.0, input_shape=(8,), variants=(LIN, WIDE))
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


class FakeProcesses:
    """Measures a cell as a worker would, each call a new 'process' whose samples sit at 10 + its number."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, cell: Any, on_event: Any = None) -> dict[str, Any]:
        from bench.worker import base_record

        self.calls.append((cell.key.family, cell.profile.metrics))
        n = len(self.calls)
        rec = base_record(cell, "ok")
        rec["metrics"] = {"latency_p50_ms": 10.0 + n, "latency_number_per_sample": 1, "latency_threads": 1,
                          "speed_ref_drift": 0.01 * n, **({"params": 36} if "params" in cell.profile.metrics else {})}  # fmt: skip
        rec["samples"] = {"latency_ms": [10.0 + n, 10.1 + n, 9.9 + n], "speed_ref_ms": [5.0, 5.0 + n / 10]}
        rec["notes"] = ["same note"]
        return rec


def test_rounds_are_interleaved_and_later_rounds_time_latency_only(tmp_path: Path) -> None:
    fake = FakeProcesses()
    result = runner.run(_suite(), runner.RunSettings(devices=("cpu",), repeat=3), tmp_path, measure=fake)
    fams = [f for f, _ in fake.calls]
    assert fams == ["linear", "wide"] * 3  # cell 1, cell 2, cell 1, cell 2, ... (pyperf-style)
    assert [m for _, m in fake.calls[2:]] == [("latency",)] * 4  # params etc. measured once, in round 1
    doc = load_run(result.path)
    assert doc["schema_version"] == 2 and doc["settings"]["repeat"] == 3
    lin = next(r for r in doc["records"] if r["key"]["family"] == "linear")
    assert lin["samples"][PROCESS_SAMPLES] == [11.0, 13.0, 15.0]  # processes 1, 3, 5 measured it
    assert lin["samples"]["latency_ms"] == pytest.approx([11, 11.1, 10.9, 13, 13.1, 12.9, 15, 15.1, 14.9])
    assert lin["metrics"][PROCESSES_METRIC] == 3 and lin["metrics"]["params"] == 36
    assert lin["metrics"]["latency_p50_ms"] == pytest.approx(13.0) and lin["metrics"]["latency_n"] == 9
    assert lin["samples"][REF_PROCESS_SAMPLES] == pytest.approx([5.05, 5.15, 5.25])
    assert lin["metrics"]["speed_ref_drift"] == pytest.approx(0.05)  # the largest of its processes'
    assert lin["notes"][0] == "same note" and "3 processes" in lin["notes"][1] and len(doc["records"]) == 2
    assert result.records[0]["metrics"][PROCESSES_METRIC] == 3  # the run's result holds the combined records too
    assert f"{PROCESS_SAMPLES}_samples" in load_results(result.path).columns


def test_without_repeat_the_run_and_its_header_are_as_before(tmp_path: Path) -> None:
    fake = FakeProcesses()
    result = runner.run(_suite(), runner.RunSettings(devices=("cpu",)), tmp_path, measure=fake)
    doc = load_run(result.path)
    assert len(fake.calls) == 2 and "repeat" not in doc["settings"] and "metrics" not in doc["settings"]
    assert all(PROCESS_SAMPLES not in r["samples"] for r in doc["records"])


def test_a_failed_round_makes_the_cell_failed_and_says_which() -> None:
    ok = record("m", [10.0, 10.1])
    bad = {**record("m", status="failed"), "notes": []}
    out = combine([ok, bad, ok])
    assert out["status"] == "failed" and out["notes"] == ["latency: process 2 of 3 failed"]
    assert combine([ok]) == ok  # one process: the record as it was
    rounds = Rounds(2, [])
    assert rounds.add("x", ok) == (1, None)  # a cell not expected twice is never combined


def test_repeat_with_parallel_jobs_is_refused(tmp_path: Path) -> None:
    code = main(["run", "cv-backbones", "--repeat", "3", "--jobs", "2", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 2
    with pytest.raises(SystemExit) as e:
        main(["run", "cv-backbones", "--repeat", "0", "--out", str(tmp_path)])
    assert e.value.code == 2


# --------------------------------------------------------------------------- compare over processes


def _processes(rng: np.random.Generator, medians: list[float], n: int = 40) -> dict[str, Any]:
    """A record measured in len(medians) processes: samples tight around each process's median."""
    samples = [float(m * x) for m in medians for x in 1 + rng.normal(0, 0.004, n)]
    rec = record("m", samples, speed_ref=[5.0] * (2 * len(medians)))
    rec["samples"][PROCESS_SAMPLES] = [float(np.median(samples[i * n : (i + 1) * n])) for i in range(len(medians))]
    rec["samples"][REF_PROCESS_SAMPLES] = [5.0] * len(medians)
    rec["metrics"][PROCESSES_METRIC] = len(medians)
    return rec


def _verdict(tmp_path: Path, base: dict[str, Any], cur: dict[str, Any], name: str) -> Any:
    b, c = run_file(tmp_path / f"{name}b", [base]), run_file(tmp_path / f"{name}c", [cur])
    report = compare(load_side(b), load_side(c), n_boot=300)
    return report.cells[0].metrics[0]


def test_a_per_process_shift_counts_once_not_as_many_samples(tmp_path: Path) -> None:
    """Two of three processes landed 7% slow (the A/A failure mode): pooled, 80 tight samples make that a
    significant regression; per process it is 3 against 3, which no test can call significant."""
    rng = np.random.default_rng(3)
    base, cur = _processes(rng, [10.0, 10.0, 10.0]), _processes(rng, [10.0, 10.7, 10.7])
    m = _verdict(tmp_path, base, cur, "aa")
    assert m.metric == "latency" and m.verdict is Verdict.NOISY and m.change == pytest.approx(7.0, abs=0.5)
    assert m.n_baseline == m.n_current == 3 and "per-process medians (3/3 processes)" in m.method
    assert "only 3/3 processes" in m.note and "--repeat" in m.note
    for rec in (base, cur):  # the same samples without their per-process medians: today's pooled test
        del rec["samples"][PROCESS_SAMPLES]
    assert _verdict(tmp_path, base, cur, "pooled").verdict is Verdict.REGRESSED


def test_a_five_percent_slowdown_of_every_process_is_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = _processes(rng, list(10.0 * (1 + rng.normal(0, 0.01, 10))))
    cur = _processes(rng, list(10.6 * (1 + rng.normal(0, 0.01, 10))))
    m = _verdict(tmp_path, base, cur, "ab")
    assert m.verdict is Verdict.REGRESSED and m.change == pytest.approx(6.0, abs=1.5)


def test_one_disturbed_process_does_not_void_a_caught_slowdown(tmp_path: Path) -> None:
    """The machine moved 27% during one process of ten (the largest drift, kept as speed_ref_drift): one
    value of ten in the test, so the slowdown still counts; when the median process moved, it is too noisy."""
    rng = np.random.default_rng(4)
    base = _processes(rng, list(10.0 * (1 + rng.normal(0, 0.01, 10))))
    cur = _processes(rng, list(10.6 * (1 + rng.normal(0, 0.01, 10))))
    for rec in (base, cur):
        rec["metrics"].update({"speed_ref_drift": -0.27, DRIFT_METRIC: 0.02})
    assert _verdict(tmp_path, base, cur, "one").verdict is Verdict.REGRESSED
    cur["metrics"][DRIFT_METRIC] = 0.15
    m = _verdict(tmp_path, base, cur, "most")
    assert m.verdict is Verdict.NOISY and "changed speed during a measurement" in m.note
    for rec in (base, cur):  # without the median (an older file), the largest drift decides, as before
        del rec["metrics"][DRIFT_METRIC]
    assert _verdict(tmp_path, base, cur, "old").verdict is Verdict.NOISY


def test_combine_keeps_the_median_process_drift_and_validity_judges_by_it() -> None:
    from bench.validity import INVALID, judge

    recs = []
    for i, drift in enumerate([0.01, -0.27, 0.02, -0.03, 0.0]):
        rec = record("m", [10.0 + i / 100, 10.01 + i / 100], speed_ref=[5.0, 5.0])
        rec["metrics"]["speed_ref_drift"] = drift
        recs.append(rec)
    out = combine(recs)["metrics"]
    assert out["speed_ref_drift"] == -0.27 and out[DRIFT_METRIC] == 0.02  # by size: 0, .01, .02, -.03, -.27
    assert "speed" not in [c for c, _ in judge(out).reasons]
    assert judge({**out, DRIFT_METRIC: -0.2}).status is INVALID
    assert "median process" in dict(judge({**out, DRIFT_METRIC: -0.2}).reasons)["speed"]


def test_one_side_without_processes_falls_back_to_the_pooled_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = _processes(rng, [10.0] * 10)
    old = record("m", list(10.0 * (1 + rng.normal(0, 0.004, 60))), speed_ref=[5.0] * 20)
    m = _verdict(tmp_path, old, base, "old")
    assert "per-process" not in m.method and m.n_baseline == 60


def test_detectable_change_follows_the_spread_and_the_process_count() -> None:
    from bench.compare.stats import detectable_change

    # (1.96 + 0.84) x 0.02/1.349 x sqrt(2/10) / sqrt(3/pi): a 2% spread tells about 1.9% with 10 a side
    assert detectable_change(0.02, 10, 10, 0.05) == pytest.approx(1.90, abs=0.02)
    assert detectable_change(0.20, 10, 10, 0.05) == pytest.approx(19.0, abs=0.2)  # linear in the spread
    assert detectable_change(0.02, 40, 40, 0.05) == pytest.approx(0.95, abs=0.02)  # 1/sqrt(n)
    assert detectable_change(0.02, 10, 10, 0.005) > detectable_change(0.02, 10, 10, 0.05)
    assert detectable_change(0.02, 0, 10, 0.05) == float("inf")


def test_too_noisy_processes_say_how_big_a_change_they_could_tell(tmp_path: Path) -> None:
    """Processes whose medians spread 20% (a VM whose speed moves between processes): a 6% slowdown is
    beyond the threshold but not significant, and the note says what this spread can tell."""
    rng = np.random.default_rng(6)
    base = _processes(rng, list(10.0 * (1 + rng.normal(0, 0.15, 10))))
    cur = _processes(rng, list(10.6 * (1 + rng.normal(0, 0.15, 10))))
    m = _verdict(tmp_path, base, cur, "wide")
    assert m.verdict is Verdict.NOISY and "processes tell a change of about" in m.note
    assert "--metric instructions" in m.note
