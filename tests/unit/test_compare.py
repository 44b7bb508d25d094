"""Regression checks: verdicts on synthetic samples with known answers, corrections, thresholds, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _runfiles import ENV, record, run_file

from bench.cli import main
from bench.compare import (
    ADDED,
    FAILED,
    REMOVED,
    Verdict,
    adjust_pvalues,
    compare,
    load_side,
    parse_fail_on,
    sample_shift,
    to_markdown,
)
from bench.errors import UsageError

RNG = np.random.default_rng(7)
LOW_NOISE = 10.0 + RNG.normal(0, 0.05, 40)  # ms: ~0.5% spread
HUGE_NOISE = RNG.lognormal(np.log(10.0), 1.0, 8)  # ms: spread of a factor e


def _compare(tmp_path: Path, base_records, cur_records, *, cur_env=None, **kw):
    b = run_file(tmp_path / "b", base_records)
    c = run_file(tmp_path / "c", cur_records, env=cur_env)
    return compare(load_side(b), load_side(c), **kw)


def _latency(report, model: str = "m"):
    (cell,) = [c for c in report.cells if c.key.model == model]
    return cell.metric("latency")


# --------------------------------------------------------------------------- latency verdicts


def test_identical_distributions_are_unchanged(tmp_path: Path) -> None:
    other = 10.0 + np.random.default_rng(8).normal(0, 0.05, 40)  # a second draw of the same distribution
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", other)])
    m = _latency(report)
    assert m.verdict is Verdict.UNCHANGED and abs(m.change) < 1.0
    assert report.exit_code == 0 and report.summary().startswith("OK")


def test_same_samples_give_p_one_and_ratio_one() -> None:
    s = sample_shift(LOW_NOISE, LOW_NOISE, seed=1)
    assert s.ratio == 1.0 and s.p_value == pytest.approx(1.0) and s.ci_low <= 1.0 <= s.ci_high


def test_ten_percent_shift_low_noise_regresses_with_exit_1(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 1.10)])
    m = _latency(report)
    assert m.verdict is Verdict.REGRESSED and m.fails
    assert m.change == pytest.approx(10.0)
    assert m.p_adjusted < 1e-6 and m.ci[0] > 1.05  # the whole CI of the median ratio is beyond +5%
    assert report.exit_code == 1 and report.summary().startswith("FAIL: 1 regression")


def test_ten_percent_shift_huge_noise_is_too_noisy(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", HUGE_NOISE)], [record("m", HUGE_NOISE * 1.10)])
    m = _latency(report)
    assert m.change == pytest.approx(10.0)  # beyond the 5% threshold...
    assert m.p_adjusted > 0.05  # ...but not significant
    assert m.verdict is Verdict.NOISY and not m.fails
    assert report.exit_code == 0


def test_significant_but_below_threshold_is_unchanged(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 1.02)])
    m = _latency(report)
    assert m.p_adjusted < 1e-6 and m.change == pytest.approx(2.0)
    assert m.verdict is Verdict.UNCHANGED and report.exit_code == 0


def test_speedup_is_an_improvement(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 0.8)])
    assert _latency(report).verdict is Verdict.IMPROVED and report.exit_code == 0
    assert len(report.improvements) == 1


def test_latency_threshold_from_fail_on(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 1.10)],
                      thresholds=parse_fail_on("latency:15%"))  # fmt: skip
    assert _latency(report).verdict is Verdict.UNCHANGED and report.exit_code == 0


def test_bootstrap_is_deterministic() -> None:
    a = sample_shift(HUGE_NOISE, HUGE_NOISE * 1.1, seed=3)
    b = sample_shift(HUGE_NOISE, HUGE_NOISE * 1.1, seed=3)
    assert a == b


# --------------------------------------------------------------------------- multiple testing


def test_holm_and_bh_against_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 = 0.02, 0.02, 0.04, 0.04 -> running min from the top
    assert adjust_pvalues(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # NaN (no test) is not part of the family
    out = adjust_pvalues([0.01, float("nan"), 0.02], "holm")
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert adjust_pvalues([0.5, 0.9], "holm") == pytest.approx([1.0, 1.0])  # capped at 1


def test_bh_matches_scipy() -> None:
    from scipy.stats import false_discovery_control

    p = np.random.default_rng(0).uniform(0, 0.2, 25)
    assert adjust_pvalues(list(p), "bh") == pytest.approx(list(false_discovery_control(p, method="bh")))


def test_compare_corrects_over_every_cell(tmp_path: Path) -> None:
    shifted = HUGE_NOISE * 1.3
    models = ("m1", "m2", "m3")
    report = _compare(tmp_path, [record(m, HUGE_NOISE) for m in models], [record(m, shifted) for m in models])
    for m in models:
        lat = _latency(report, m)
        assert lat.p_adjusted == pytest.approx(min(1.0, 3 * lat.p_value))  # equal p-values: Holm gives 3p each
    bh = _compare(tmp_path / "bh", [record(m, HUGE_NOISE) for m in models], [record(m, shifted) for m in models],
                  correction="bh")  # fmt: skip
    assert _latency(bh, "m1").p_adjusted == pytest.approx(_latency(bh, "m1").p_value)  # equal p-values: BH keeps p


# --------------------------------------------------------------------------- --fail-on


def test_fail_on_default_and_partial() -> None:
    ths = {t.metric: t for t in parse_fail_on(None)}
    assert (ths["latency"].value, ths["latency"].unit, ths["latency"].gating) == (5.0, "%", True)
    assert (ths["accuracy"].value, ths["accuracy"].unit) == (1.0, "pt")
    assert ths["macs"].value == 0.0 and ths["macs"].gating and not ths["params"].gating
    ths = {t.metric: t for t in parse_fail_on("latency:10%, params:0%")}
    assert ths["latency"].value == 10.0 and ths["params"].gating and not ths["memory"].gating


@pytest.mark.parametrize("text", ["latency=5%", "latency:5", "latency:-5%", "accuracy:1%", "macs:1pt", "lat:5%",
                                  "latency:5%,latency:3%", "", "latency:5%;memory:5%"])  # fmt: skip
def test_fail_on_bad_syntax_names_metrics_and_syntax(text: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_fail_on(text)
    msg = str(e.value)
    assert "\n" not in msg and "METRIC:VALUE" in msg and "latency:5%,memory:5%,macs:0%,accuracy:1pt" in msg
    if text == "lat:5%":
        assert "latency, memory, macs, params, accuracy" in msg and "did you mean latency" in msg


def test_cli_bad_fail_on_is_one_line_exit_2(capsys) -> None:
    assert main(["compare", "a", "b", "--fail-on", "latency:5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "METRIC:VALUE" in err


# --------------------------------------------------------------------------- exact counts, memory, accuracy


def test_one_op_changing_its_macs_is_caught_exactly(tmp_path: Path) -> None:
    base = 4_089_184_256
    report = _compare(tmp_path, [record("m", LOW_NOISE, macs=base)], [record("m", LOW_NOISE, macs=base + 64)])
    (cell,) = report.cells
    macs = cell.metric("macs")
    assert macs.verdict is Verdict.REGRESSED and macs.fails and "+64" in macs.note
    assert 0 < macs.change < 1e-5  # 64 of 4 G is 1.6e-6 %: any change counts at macs:0%
    assert report.exit_code == 1
    same = _compare(tmp_path / "same", [record("m", LOW_NOISE, macs=base)], [record("m", LOW_NOISE, macs=base)])
    assert same.cells[0].metric("macs").verdict is Verdict.UNCHANGED and same.exit_code == 0


def test_params_change_is_reported_but_not_gating_by_default(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE, params=25_557_033)])
    p = report.cells[0].metric("params")
    assert p.verdict is Verdict.REGRESSED and not p.fails and report.exit_code == 0


def test_memory_is_threshold_only(tmp_path: Path) -> None:
    alloc = {"memory_method": "cuda_allocator"}  # an allocator's peak: exact, no noise floor
    report = _compare(tmp_path, [record("a", LOW_NOISE, **alloc), record("b", LOW_NOISE, **alloc)],
                      [record("a", LOW_NOISE, memory=106.0, **alloc), record("b", LOW_NOISE, memory=104.0, **alloc)])  # fmt: skip
    a, b = (c.metric("memory") for c in report.cells)
    assert a.verdict is Verdict.REGRESSED and a.change == pytest.approx(6.0) and "threshold only" in a.method
    assert b.verdict is Verdict.UNCHANGED and a.p_value is None
    assert report.exit_code == 1


def test_cpu_rss_memory_has_a_noise_floor(tmp_path: Path) -> None:
    rss = {"memory_method": "rss_hwm"}
    report = _compare(tmp_path, [record("a", LOW_NOISE, memory=30.0, **rss), record("b", LOW_NOISE, memory=100.0, **rss)],
                      [record("a", LOW_NOISE, memory=42.0, **rss), record("b", LOW_NOISE, memory=120.0, **rss)])  # fmt: skip
    a, b = (c.metric("memory") for c in report.cells)
    assert a.change == pytest.approx(40.0) and a.verdict is Verdict.UNCHANGED  # +12 MB: RSS noise, not +40%
    assert "within the 16 MB noise" in a.note
    assert b.verdict is Verdict.REGRESSED and report.exit_code == 1  # +20 MB and +20%


def test_accuracy_in_points_with_ci(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("a", accuracy_mean=0.93), record("b", accuracy_mean=0.93, accuracy_ci_low=0.90,
                                                                           accuracy_ci_high=0.96)],
                      [record("a", accuracy_mean=0.91), record("b", accuracy_mean=0.91, accuracy_ci_low=0.88,
                                                                accuracy_ci_high=0.94)])  # fmt: skip
    a, b = (c.metric("accuracy") for c in report.cells)
    assert a.change == pytest.approx(-2.0) and a.verdict is Verdict.REGRESSED and a.fails  # fraction -> points
    assert b.verdict is Verdict.NOISY and b.ci[0] < 0 < b.ci[1]  # +-3 pt intervals: a 2-pt drop is within noise


# --------------------------------------------------------------------------- environment, cells on one side


def test_env_change_is_said_first_and_does_not_fail(tmp_path: Path) -> None:
    env = {**ENV, "threads": 1, "cpu_model": "Other CPU"}
    report = _compare(tmp_path, [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 1.10)], cur_env=env)
    assert {e.field for e in report.env_changes} == {"threads", "cpu_model"}
    m = _latency(report)
    assert m.verdict is Verdict.REGRESSED and m.env_changed and not m.fails
    assert report.exit_code == 0 and report.env_blocked
    assert report.summary().startswith("NOT COMPARABLE")
    md = to_markdown(report)
    assert "Environment changed" in md.split("<details>")[0] and "(env changed)" in md
    allowed = _compare(tmp_path / "allow", [record("m", LOW_NOISE)], [record("m", LOW_NOISE * 1.10)], cur_env=env,
                       allow_env_change=True)  # fmt: skip
    assert allowed.exit_code == 1 and _latency(allowed).fails


def test_added_removed_and_failed_cells(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("gone"), record("both"), record("breaks")],
                      [record("both"), record("new"), record("breaks", status="failed")])  # fmt: skip
    by = {c.key.model: c for c in report.cells}
    assert by["gone"].status == REMOVED and by["new"].status == ADDED
    assert by["breaks"].status == FAILED and by["breaks"].error == "RuntimeError: boom" and by["breaks"].fails
    assert report.exit_code == 1  # ok in the baseline, failing now
    md = to_markdown(report)
    assert "Added (only in current)" in md and "Removed (only in baseline)" in md and "RuntimeError: boom" in md
    only_moves = _compare(tmp_path / "m", [record("gone"), record("both")], [record("both"), record("new")])
    assert only_moves.exit_code == 0


def test_a_cell_twice_on_one_side_is_bad_input(tmp_path: Path) -> None:
    run_file(tmp_path / "b", [record("m")])
    run_file(tmp_path / "b", [record("m")])
    with pytest.raises(UsageError, match="appears twice"):
        compare(load_side(tmp_path / "b"), load_side(tmp_path / "b"))


# --------------------------------------------------------------------------- output formats and CLI


def test_markdown_shape(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE), record("n", LOW_NOISE)],
                      [record("m", LOW_NOISE * 1.10), record("n", LOW_NOISE)])  # fmt: skip
    md = to_markdown(report)
    first, rest = md.split("\n", 1)
    assert first.startswith("❌ **aigc-bench compare** -- FAIL: 1 regression")
    table, details = rest.split("<details>")
    assert "| `tiny/fam/m/cpu/fp32/b1/3x8x8/infer` | latency |" in table and "/n/" not in table
    assert "All 2 cells" in details and "</details>" in details and "/n/" in details


def test_cli_json_and_baseline_names(tmp_path: Path, capsys) -> None:
    b = run_file(tmp_path / "b", [record("m", LOW_NOISE)])
    c = run_file(tmp_path / "c", [record("m", LOW_NOISE * 1.10)])
    bdir = tmp_path / "baselines"
    assert main(["baseline", "save", str(b), "--name", "main", "--dir", str(bdir)]) == 0
    assert main(["baseline", "save", str(c), "--name", "main", "--dir", str(bdir)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["baseline", "save", str(b), "--name", "../evil", "--dir", str(bdir)]) == 2
    assert main(["baseline", "list", "--dir", str(bdir), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["suite"], listed["profile"], listed["cells"], listed["host"]) == (
        "main",
        "s",
        "quick",
        1,
        "ci-1",
    )

    code = main(["compare", "main", str(c), "--baselines-dir", str(bdir), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["exit_code"] == 1 and doc["counts"]["regressed"] == 1
    (cell,) = doc["cells"]
    assert cell["metrics"]["latency"]["verdict"] == "regressed" and cell["metrics"]["latency"]["p_adjusted"] < 0.05

    assert main(["compare", "main", str(c), "--baselines-dir", str(bdir), "--format", "md"]) == 1
    assert capsys.readouterr().out.startswith("❌ **aigc-bench compare**")
    assert main(["compare", "main", "main", "--baselines-dir", str(bdir)]) == 0  # table
    assert "OK: no regression" in capsys.readouterr().out
    assert main(["compare", "nope", str(c), "--baselines-dir", str(bdir)]) == 2
    err = capsys.readouterr().err
    assert "nope: no such file, folder or baseline" in err and "main" in err
    assert main(["baseline", "save", str(c), "--name", "main", "--dir", str(bdir), "--force"]) == 0


def test_too_few_samples_says_so(tmp_path: Path) -> None:
    few = [10.0, 10.5, 9.8, 10.2]
    # Fully separated 4 vs 4 samples: p = 2/C(8,4) = 0.029, times 2 cells (Holm) = 0.057 > 0.05.
    report = _compare(
        tmp_path, [record("a", few), record("b", few)], [record("a", [x * 1.5 for x in few]), record("b", few)]
    )
    m = _latency(report, "a")
    assert m.p_value == pytest.approx(2 / 70) and m.p_adjusted == pytest.approx(4 / 70)
    assert m.verdict is Verdict.NOISY and "only 4/4 samples" in m.note


def test_two_slow_samples_are_not_a_regression(tmp_path: Path) -> None:
    """A/A on a loaded machine (2 cells): 8 samples vs 2 much slower ones cannot be told from noise."""
    base = LOW_NOISE[:8] * 30
    report = _compare(
        tmp_path, [record("a", base), record("b", base)], [record("a", [2011.6, 2400.0]), record("b", base)]
    )
    m = _latency(report, "a")
    assert m.change > 500 and m.p_value == pytest.approx(2 / 45)  # the best p that 8 vs 2 samples allow...
    assert m.p_adjusted == pytest.approx(4 / 45)  # ...times 2 cells (Holm) is above 0.05
    assert m.verdict is Verdict.NOISY and report.exit_code == 0


def test_unstable_samples_cannot_fail(tmp_path: Path) -> None:
    """Significant and beyond the threshold, but the current run's IQR/median is 0.12: a disturbed machine."""
    disturbed = np.linspace(110.0, 140.0, 40)  # median 125, IQR 15: IQR/median 0.12
    report = _compare(tmp_path, [record("m", LOW_NOISE * 10)], [record("m", disturbed)])
    m = _latency(report)
    assert m.p_adjusted < 1e-6 and m.change == pytest.approx(25.0, abs=0.5)
    assert m.verdict is Verdict.NOISY and "unstable measurement" in m.note and report.exit_code == 0


# --------------------------------------------------------------------------- machine-speed reference

REF = 0.5 + np.random.default_rng(9).normal(0, 0.002, 30)  # ms: the reference GEMM, ~0.4% spread


def test_a_slower_machine_is_not_a_regression(tmp_path: Path) -> None:
    """Everything 15% slower, the reference too (the A/A failure seen on a shared VM): unchanged, exit 0."""
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.15, speed_ref=REF * 1.15)])  # fmt: skip
    m = _latency(report)
    assert m.change == pytest.approx(15.0) and m.speed_factor == pytest.approx(1.15)
    assert abs(m.machine_change) < 0.5 and m.verdict is Verdict.UNCHANGED and report.exit_code == 0
    assert m.note.startswith("the machine's, not the code's")
    assert "machine x1.150: +0.0% relative to it, the machine's" in to_markdown(report)  # listed as explained
    assert any("reference ran 15.0% slower in current" in n for n in report.notes)
    raw = _compare(tmp_path / "raw", [record("m", LOW_NOISE, speed_ref=REF)],
                   [record("m", LOW_NOISE * 1.15, speed_ref=REF * 1.15)], speed_adjust=False)  # fmt: skip
    assert _latency(raw).verdict is Verdict.REGRESSED and raw.exit_code == 1
    assert _latency(raw).speed_factor is None and any("--no-speed-adjust" in n for n in raw.notes)


def test_a_code_slowdown_on_a_steady_machine_is_still_caught(tmp_path: Path) -> None:
    """The model 10% slower, the reference unchanged: a regression, exit 1."""
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)], [record("m", LOW_NOISE * 1.10, speed_ref=REF)])
    m = _latency(report)
    assert m.speed_factor == pytest.approx(1.0) and m.change == pytest.approx(10.0)
    assert m.machine_change == pytest.approx(10.0)
    assert m.verdict is Verdict.REGRESSED and report.exit_code == 1


def test_a_code_slowdown_on_a_slower_machine_is_still_caught(tmp_path: Path) -> None:
    """Machine 15% slower and the model 20% slower: +38% raw, +20% relative to the machine (beyond
    5% + 0.5 x 15%): regressed."""
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.20 * 1.15, speed_ref=REF * 1.15)])  # fmt: skip
    m = _latency(report)
    assert m.change == pytest.approx(38.0) and m.machine_change == pytest.approx(20.0)
    assert m.verdict is Verdict.REGRESSED and report.exit_code == 1
    assert "machine x1.150: +20.0% relative to it" in to_markdown(report)


def test_the_reference_vetoes_but_never_accuses(tmp_path: Path) -> None:
    """Machine 10% faster, model unchanged: +11% relative to the machine, ~0 raw: unchanged. Opposite
    directions (raw -12%, relative +10%): unchanged too -- the machine explains the raw change."""
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF), record("n", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE, speed_ref=REF / 1.1),
                       record("n", LOW_NOISE * 1.10 / 1.25, speed_ref=REF / 1.25)])  # fmt: skip
    m, n = _latency(report, "m"), _latency(report, "n")
    assert m.machine_change == pytest.approx(10.0) and abs(m.change) < 0.5 and m.verdict is Verdict.UNCHANGED
    assert n.change == pytest.approx(-12.0) and n.machine_change == pytest.approx(10.0)
    assert n.verdict is Verdict.UNCHANGED and "the machine's" in n.note and report.exit_code == 0


def test_the_reference_noise_widens_the_interval() -> None:
    """Resampling a noisy reference widens the bootstrap interval of the adjusted ratio."""
    noisy_ref = 0.5 * np.random.default_rng(10).lognormal(0, 0.05, 12)
    steady = sample_shift(LOW_NOISE, LOW_NOISE, ref_baseline=REF, ref_current=REF, seed=3)
    shaky = sample_shift(LOW_NOISE, LOW_NOISE, ref_baseline=REF, ref_current=noisy_ref, seed=3)
    width = [x.machine_ci[1] - x.machine_ci[0] for x in (steady, shaky)]
    assert width[1] > 3 * width[0]
    assert shaky.p_both == max(shaky.p_value, shaky.machine_p_value)


def test_no_adjustment_across_an_environment_change(tmp_path: Path) -> None:
    """1 thread: the reference is slower too, but letting it veto would hide the change being compared."""
    env = {**ENV, "threads": 1}
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.6, speed_ref=REF * 1.8)], cur_env=env, allow_env_change=True)  # fmt: skip
    m = _latency(report)
    assert m.speed_factor is None and m.change == pytest.approx(60.0)
    assert m.verdict is Verdict.REGRESSED and report.exit_code == 1
    assert any("environment changed" in n for n in report.notes)


def test_references_of_different_kinds_or_missing_are_not_divided(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF, speed_kind="refnet fp32 cpu 2t v1"),
                                 record("old", LOW_NOISE)],
                      [record("m", LOW_NOISE * 1.15, speed_ref=REF * 1.15, speed_kind="refnet fp32 cpu 2t v2"),
                       record("old", LOW_NOISE * 1.15, speed_ref=REF * 1.15)])  # fmt: skip
    assert _latency(report, "m").speed_factor is None and _latency(report, "old").speed_factor is None
    assert _latency(report, "m").verdict is Verdict.REGRESSED
    assert any("no machine-speed reference of the same kind" in n for n in report.notes)


def test_a_machine_that_changed_speed_during_a_measurement_is_too_noisy(tmp_path: Path) -> None:
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.10, speed_ref=REF, speed_drift=0.18)])  # fmt: skip
    m = _latency(report)
    assert m.p_adjusted < 1e-6 and m.change == pytest.approx(10.0)
    assert m.verdict is Verdict.NOISY and "changed speed during a measurement" in m.note and report.exit_code == 0


def test_cli_no_speed_adjust(tmp_path: Path, capsys) -> None:
    b = run_file(tmp_path / "b", [record("m", LOW_NOISE, speed_ref=REF)])
    c = run_file(tmp_path / "c", [record("m", LOW_NOISE * 1.15, speed_ref=REF * 1.15)])
    assert main(["compare", str(b), str(c), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lat = out["cells"][0]["metrics"]["latency"]
    assert lat["speed_factor"] == pytest.approx(1.15) and lat["machine_change"] == pytest.approx(0.0, abs=0.5)
    assert lat["change"] == pytest.approx(15.0) and lat["verdict"] == "unchanged"
    assert main(["compare", str(b), str(c), "--format", "json", "--no-speed-adjust"]) == 1


def test_a_big_machine_change_widens_what_cannot_be_told(tmp_path: Path) -> None:
    """The machine 23% slower and a model 36% slower (+11% relative, as densenet121 did in an A/A pair):
    models follow the machine only roughly, so within 5% + 0.5 x 23% it is too noisy, not a regression.
    The same +11% on a steady machine is a regression."""
    report = _compare(tmp_path, [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.23 * 1.11, speed_ref=REF * 1.23)])  # fmt: skip
    m = _latency(report)
    assert m.machine_change == pytest.approx(11.0) and m.verdict is Verdict.NOISY
    assert "must exceed 16.5% to tell" in m.note and report.exit_code == 0
    steady = _compare(tmp_path / "steady", [record("m", LOW_NOISE, speed_ref=REF)],
                      [record("m", LOW_NOISE * 1.11, speed_ref=REF)])  # fmt: skip
    assert _latency(steady).verdict is Verdict.REGRESSED and steady.exit_code == 1
    big = _compare(tmp_path / "big", [record("m", LOW_NOISE, speed_ref=REF)],
                   [record("m", LOW_NOISE * 1.23 * 1.25, speed_ref=REF * 1.23)])  # fmt: skip
    assert _latency(big).verdict is Verdict.REGRESSED  # +25% relative: beyond 16.5%
