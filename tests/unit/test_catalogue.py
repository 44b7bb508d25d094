"""The metric catalogue (``bench.catalogue``): declared where metrics register, read by everyone else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import catalogue, runner
from bench.catalogue import Column, Judge
from bench.registry import METRICS, register_metric, unregister_metric
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze

PUBLISHED = sorted((Path(__file__).resolve().parents[2] / "results").glob("*/*.json"))


def test_the_built_in_metrics_declare_what_readers_used_to_list() -> None:
    """The lists report, compare, export and the store hard-coded before the catalogue, now derived from it."""
    assert catalogue.csv_columns() == (
        "params", "macs", "flops", "other_flops", "macs_flagged", "fvcore_macs", "fcm_macs", "fvcore_diff_pct",
        "fcm_diff_pct", "bytes_moved", "arith_intensity", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
        "latency_mean_ms", "latency_std_ms", "latency_iqr_ms", "latency_n", "throughput", "tokens_per_s",
        "achieved_gflops", "mfu", "bandwidth_util", "attainable_gflops", "bound", "compile_s", "first_call_ms", "graph_breaks",
        "recompiles", "dtype_applied", "peak_memory_mb", "weights_mb",
        "activations_mb", "energy_j_per_sample", "avg_power_w", "accuracy_mean", "accuracy_std", "accuracy_ci95", "accuracy_seeds", "dataset",
        "train_budget",
    )  # fmt: skip
    assert [c.compare_name for c in catalogue.judged()] == ["latency", "memory", "macs", "params", "accuracy",
                                                             "instructions", "probe_acc", "finetune_acc",
                                                             "zeroshot_acc"]  # fmt: skip
    assert catalogue.default_fail_on() == "latency:5%,memory:5%,macs:0%,accuracy:1pt"
    assert set(catalogue.exported()) == {"params", "macs", "flops", "throughput", "peak_memory_mb",
                                         "latency_p50_ms", "accuracy_mean", "compile_s", "first_call_ms"}  # fmt: skip
    assert catalogue.frame_columns() == ("params", "macs", "flops", "latency_p50_ms", "latency_p90_ms",
                                         "latency_p99_ms", "throughput", "peak_memory_mb")  # fmt: skip
    assert [c.name for c in catalogue.table_columns("variant")] == [
        "params",
        "macs",
        "accuracy_mean",
        "distill_accuracy_mean",
    ]
    assert [c.header for c in catalogue.table_columns("cell")] == ["p50 (ms)", "p90 (ms)", "samples/s", "tokens/s",
                                                                   "MFU", "compile (s)", "first call (ms)",
                                                                   "peak mem (MB)"]  # fmt: skip
    assert catalogue.timed("tokens_per_s") and not catalogue.timed("peak_memory_mb")


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.parent.name)
def test_every_stored_metric_is_declared_by_the_metric_that_stores_it(path: Path) -> None:
    stored = {name for r in json.loads(path.read_text())["records"] for name in r["metrics"]}
    assert stored and stored <= {c.name for c in catalogue.columns()}


@pytest.fixture
def plugin() -> Iterator[list[str]]:
    """Metric names registered by a test, removed again afterwards (the registries are process-wide)."""
    names: list[str] = []
    yield names
    for n in names:
        unregister_metric(n)
    assert catalogue.producer("params_k") is None


def test_a_column_belongs_to_one_metric(plugin: list[str]) -> None:
    with pytest.raises(ValueError, match="already produced by metric 'params'"):
        register_metric("copycat", columns=(Column("params"),))(lambda ctx: {})
    assert "copycat" not in METRICS


def test_derived_metrics_run_after_what_they_need(plugin: list[str]) -> None:
    _register_params_k(plugin)
    assert catalogue.run_order(["params_k", "latency", "params"]) == ["latency", "params", "params_k"]
    assert catalogue.run_order(["params_k"]) == ["params_k"]  # nothing listed produces params: the worker says so
    assert catalogue.missing_needs("params_k", {"params": None}) == ["params"]


def test_a_derived_metric_sees_the_values_measured_before_it(plugin: list[str]) -> None:
    from bench.worker import measure_result

    _register_params_k(plugin)
    derived_first = _cell(("params_k", "params"))
    r = measure_result(derived_first)
    assert r.ok and r.metrics["params"] == 36 and r.metrics["params_k"] == pytest.approx(0.036)
    alone = measure_result(_cell(("params_k",)))
    assert alone.ok and "params_k" not in alone.metrics
    assert alone.notes == ("params_k: not measured: it needs params, which this cell did not measure",)


def test_judge_and_column_refuse_unknown_choices() -> None:
    with pytest.raises(ValueError, match="unknown judge kind"):
        Judge("fuzzy", 1.0)
    with pytest.raises(ValueError, match="names its raw sample array"):
        Judge("sampled", 5.0)
    with pytest.raises(ValueError, match="better must be one of lower, higher"):
        Column("x", better="bigger")
    with pytest.raises(ValueError, match="scope must be one of cell, variant"):
        Column("x", scope="run")


def _register_params_k(plugin: list[str]) -> None:
    @register_metric("params_k", columns=(Column("params_k", unit="k"),), needs=("params",))
    def params_k(ctx) -> dict:
        return {"params_k": ctx.results["params"] / 1000}

    plugin.append("params_k")


def _cell(metrics: tuple[str, ...]):
    variant = VariantSpec(family="linear", builder="torch.nn:Linear",
                          model_args=freeze({"in_features": 8, "out_features": 4}))  # fmt: skip
    prof = Profile(name="quick", metrics=metrics)
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(variant,))
    suite = Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                  default_profile="quick")  # fmt: skip
    (cell,) = runner.expand(suite, runner.RunSettings(devices=("cpu",)))
    return cell


def test_reading_the_catalogue_imports_no_torch() -> None:
    """compare, export and every CLI start read the catalogue: it must not cost torch's import (~1 s)."""
    import subprocess
    import sys

    code = "import sys, bench.catalogue as c; c.columns(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_schema_doc_lists_every_declared_column() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "results-schema.md").read_text()
    missing = [c.name for c in catalogue.columns() if f"`{c.name}`" not in doc]
    assert not missing, f"docs/results-schema.md's metrics table lacks {missing}"
