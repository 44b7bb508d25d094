"""The pretraining suite in the usual machinery: sized tiers, one cell per objective, the pretrain metric, report."""

from __future__ import annotations

import math

import pytest

from bench import runner
from bench.registry import get_suite, list_suites
from bench.sizing import resolve_tier
from bench.spec import AccuracySpec, Profile, Suite, Tier, VariantSpec, freeze

BUILD = "bench.pretraining.objective:build"


def test_suite_groups_objectives_as_tiers_at_matched_backbone_size() -> None:
    assert "pretraining" in list_suites()
    suite = get_suite("pretraining")
    assert [t.name for t in suite.tiers] == ["language", "vision", "joint"]
    assert set(suite.families) == {"mlm", "clm", "denoise", "mass", "random-init", "mae", "rotnet", "simclr", "moco",
                                   "supervised", "clip", "align-noisy"}  # fmt: skip
    for tier in suite.tiers:
        variants = resolve_tier(tier)
        assert all(abs(v.param_error) <= v.tolerance for v in variants), [
            (v.model, v.achieved_params) for v in variants
        ]
    widths = {v.knob_value for v in resolve_tier(suite.tier("vision"))}
    assert len(widths) == 1  # one backbone for every vision objective
    for name in ("quick", "default"):
        spec = suite.profile(name).accuracy
        assert spec is not None and spec.task == "pretraining" and set(spec.tiers) == {"language", "vision", "joint"}
    assert suite.profile("default").accuracy.seeds >= 3 and suite.profile("quick").accuracy.seeds == 1


def test_one_cell_per_objective() -> None:
    suite = get_suite("pretraining")
    cells = runner.expand(suite, runner.RunSettings(profile="quick", devices=("cpu",)))
    assert len(cells) == 5 + 6 + 3 and len({c.key.id for c in cells}) == 14


def _tiny_suite() -> Suite:
    plan = {"budgets": {"language": 3e8, "vision": 3e8, "joint": 3e8}, "batch_size": 16, "checkpoints": (0.5, 1.0),
            "labelled_train": 40, "labelled_test": 40, "pool_factor": 10.0, "samples": 8, "heldout_docs": 16}  # fmt: skip
    spec = AccuracySpec(task="pretraining", task_args=freeze(plan), tiers=("language", "joint"), epochs=1.0,
                        batch_size=16, seeds=2)  # fmt: skip

    def v(family: str, objective: str) -> VariantSpec:
        return VariantSpec(family, BUILD, freeze({"objective": objective, "width": 16}), name=family, count="backbone")

    tiers = (Tier("language", 10_000, (v("clm", "clm"), v("random-init", "random-init-language")), tolerance=10.0,
                  input_shape=(40,)),
             Tier("joint", 10_000, (v("clip", "clip"),), tolerance=10.0, input_shape=(3, 32, 32)))  # fmt: skip
    return Suite("pretraining", "tiny", "pretraining", tiers, (Profile("tiny", metrics=("params", "pretrain"),
                                                                       accuracy=spec),), default_profile="tiny")  # fmt: skip


@pytest.fixture(scope="module")
def measured() -> dict[str, dict]:
    from bench.worker import measure_cell

    cells = runner.expand(_tiny_suite(), runner.RunSettings(devices=("cpu",)))
    return {c.key.family: measure_cell(c) for c in cells}


@pytest.mark.slow  # three cells pretrained and evaluated (~25 s on 2 cores)
def test_the_pretrain_metric_records_budget_and_downstream(measured: dict[str, dict]) -> None:
    clm, floor, clip = measured["clm"], measured["random-init"], measured["clip"]
    for r in (clm, floor, clip):
        assert r["status"] == "ok", r["error"]
    m = clm["metrics"]
    assert m["pretrain_steps"] == math.floor(3e8 / m["step_flops"]) > 0
    assert m["pretrain_flops"] == m["pretrain_steps"] * m["step_flops"] <= m["pretrain_budget_flops"]
    assert m["step_flops"] > m["step_forward_flops"] > 0
    assert m["pretrain_seeds"] == 2 and m["probe_acc_ci95"] is not None and 0 <= m["probe_acc_mean"] <= 1
    assert m["clm_perplexity"] > 1 and 0 <= m["grammar_accept"] <= 1 and m["downstream"] == "agreement"
    assert m["pool_size"] >= 10 * m["labelled_size"]
    assert len(clm["samples"]["probe_curve_acc"]) == 2 * 2  # two checkpoints x two seeds
    assert len(clm["samples"]["pretrain_loss"]) == 2 * m["pretrain_steps"]
    assert floor["metrics"]["pretrain_steps"] == 0 and floor["metrics"]["pretrain_flops"] == 0
    assert "clm_perplexity" not in floor["metrics"]
    c = clip["metrics"]
    assert c["downstream"] == "shape" and 0 <= c["zeroshot_acc_mean"] <= 1 and c["pretrain_steps"] > 0


@pytest.mark.slow  # shares the measured cells
def test_report_tables_and_curve(measured: dict[str, dict]) -> None:
    from bench.pretraining import report

    run = {"records": list(measured.values()), "settings": {"profile": "tiny"}}
    text = report.markdown(run, "run")
    assert "· language" in text and "· joint" in text and "| clm |" in text and "| random-init |" in text
    xs, ys = report.curve({**measured["clm"]["metrics"], "samples": measured["clm"]["samples"]})
    assert len(xs) == len(ys) == 2 and xs[-1] == measured["clm"]["metrics"]["pretrain_flops"]
    assert report.figure(run).png.startswith(b"\x89PNG")


def test_report_refuses_a_run_without_pretraining_cells(tmp_path) -> None:
    from bench.pretraining import report

    assert report.main([str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    with pytest.raises(Exception, match="no finished pretraining cells"):
        report.markdown({"records": []}, "x")


def test_a_profile_without_a_plan_fails_the_cell_in_one_line() -> None:
    from bench.worker import measure_cell

    suite = _tiny_suite()
    bare = Suite(suite.name, "bare", suite.input_kind, suite.tiers[:1],
                 (Profile("bare", metrics=("pretrain",)),), default_profile="bare")  # fmt: skip
    cell = runner.expand(bare, runner.RunSettings(devices=("cpu",), families=("clm",)))[0]
    r = measure_cell(cell)
    assert r["status"] == "failed" and "no pretraining plan" in r["error"]
