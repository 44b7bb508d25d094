"""``--metric instructions`` (``bench.metrics.instructions``): counts under callgrind, judged with a tight threshold."""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from _runfiles import record, run_file

from bench import runner
from bench.compare import METRICS, CellPair, Judging, Threshold, ThresholdCheck, Verdict, check_for, compare, load_side
from bench.metrics import MetricContext
from bench.metrics import instructions as ins
from bench.spec import CellKey, Profile, Suite, Tier, VariantSpec, freeze

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))


#: a model large enough that callgrind's fixed per-process wobble (a few hundred instructions: 0.76% of
#: Linear(8, 4)'s 63k once) is small beside it: Linear(1024, 1024) counts ~406k per call
BIG = VariantSpec(
    family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 1024, "out_features": 1024})
)


def _cell(metrics: tuple[str, ...] = ("instructions",), variant: VariantSpec = LIN):
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), warmup_s=0.05, min_run_time_s=0.05)
    args = dict(variant.model_args)
    params = (args["in_features"] + 1) * args["out_features"]
    tier = Tier(name="t", target_params=params, tolerance=1.0, input_shape=(args["in_features"],), variants=(variant,))
    suite = Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                  default_profile="quick")  # fmt: skip
    return runner.expand(suite, runner.RunSettings(devices=("cpu",), metrics=metrics))[0]


def test_run_metric_adds_it_to_the_profile_and_unknown_names_exit_2() -> None:
    assert _cell().profile.metrics == ("params", "instructions")
    from bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="instructions"):
        _cell(metrics=("instructionz",))


def test_without_valgrind_the_metric_says_why_in_one_note(monkeypatch) -> None:
    monkeypatch.setattr(ins.shutil, "which", lambda name: None)
    cell = _cell()
    ctx = MetricContext(cell=cell, model=None, inputs=(), device=None, dtype=None)  # type: ignore[arg-type]
    assert ins.instructions_metric(ctx) == {}
    assert ctx.notes == ["instructions: not measured: valgrind not found (apt-get install valgrind)"]
    cuda = CellKey.from_dict({**cell.key.to_dict(), "device": "cuda"})
    from dataclasses import replace

    assert "CPU cells" in ins.unavailable(replace(cell, key=cuda))


def test_compare_judges_counts_with_a_one_percent_threshold() -> None:
    spec = METRICS["instructions"]
    assert spec.kind == "threshold" and spec.default == 1.0 and spec.optional and not spec.gating
    check = check_for(spec, Threshold("instructions", 1.0, "%"), Judging())
    assert isinstance(check, ThresholdCheck)
    pair = CellPair(_cell().key, {}, {})
    assert check.judge(pair, 1_000_000, 1_003_000).verdict is Verdict.UNCHANGED  # +0.3%: the A/A wobble
    assert check.judge(pair, 1_000_000, 1_050_000).verdict is Verdict.REGRESSED  # +5%
    assert check.judge(pair, 1_000_000, 950_000).verdict is Verdict.IMPROVED


def test_runs_without_counts_do_not_list_its_threshold(tmp_path: Path) -> None:
    plain = run_file(tmp_path / "a", [record("m")])
    report = compare(load_side(plain), load_side(plain))
    assert "instructions" not in [t.metric for t in report.thresholds]
    counted = run_file(tmp_path / "b", [record("m", instructions=1_000_000)])
    slower = run_file(tmp_path / "c", [record("m", instructions=1_020_000)])
    report = compare(load_side(counted), load_side(slower))
    assert "instructions" in [t.metric for t in report.thresholds]
    m = next(m for m in report.cells[0].metrics if m.metric == "instructions")
    assert m.verdict is Verdict.REGRESSED and m.change == pytest.approx(2.0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed (apt-get install valgrind)")
def test_counts_of_one_cell_agree_within_half_a_percent() -> None:
    cell = _cell(variant=BIG)
    assert ins.unavailable(cell) is None
    # Two counts side by side (valgrind runs one thread; its start-up is most of the time), each from its own
    # spawned process: count_instructions puts this interpreter on PATH while valgrind runs, process-wide.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        a, b = pool.map(ins.count_instructions, [cell, cell], [2, 2])
    assert a > 300_000 and abs(a - b) / a < 0.005, (a, b)  # SIMD: fewer instructions than its 1M multiply-adds
