"""The runner: cell expansion, isolation of failures, timeouts, resume after a kill, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import runner
from bench.errors import UnknownNameError, UsageError
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_results, load_run

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
BIG = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 400}))
BAD = VariantSpec(family="broken", builder="torch.nn:Linear", model_args=freeze({"in_features": 3, "out_features": 4}))


def make_suite(*variants: VariantSpec, timeout_s: float = 120.0, metrics=("params", "latency")) -> Suite:
    prof = Profile(name="quick", batch_sizes=(1, 2), metrics=tuple(metrics), warmup_s=0.05, min_run_time_s=0.05,
                   timeout_s=timeout_s)  # fmt: skip
    tier = Tier(name="t", target_params=36, tolerance=10.0, input_shape=(8,), variants=tuple(variants) or (LIN,))
    return Suite(name="toy", description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


def test_expand_is_the_cartesian_product_in_a_stable_order() -> None:
    suite = make_suite(LIN, BIG)
    cells = runner.expand(suite, runner.RunSettings(devices=("cpu",)))
    assert len(cells) == 2 * 2  # variants x batch sizes
    assert [c.key.id for c in cells] == [c.key.id for c in runner.expand(suite, runner.RunSettings(devices=("cpu",)))]
    assert {c.key.batch_size for c in cells} == {1, 2}
    only = runner.expand(suite, runner.RunSettings(devices=("cpu",), batch_sizes=(4,), families=("wide",)))
    assert [(c.key.family, c.key.batch_size) for c in only] == [("wide", 4)]


@pytest.mark.parametrize(
    ("settings", "what"),
    [
        (runner.RunSettings(devices=("tpu",)), "device"),
        (runner.RunSettings(dtypes=("fp8",)), "dtype"),
        (runner.RunSettings(profile="fast"), "profile"),
        (runner.RunSettings(families=("lstm",)), "family"),
    ],
)
def test_bad_names_name_the_valid_choices(settings: runner.RunSettings, what: str) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {what}.*valid choices"):
        runner.expand(make_suite(), settings)


def test_cuda_without_gpu_is_a_usage_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="'cuda' is not available.*valid choices: auto, cpu"):
        runner.expand(make_suite(), runner.RunSettings(devices=("cuda",)))


def test_shards_partition_the_cells() -> None:
    cells = runner.expand(make_suite(LIN, BIG, BAD), runner.RunSettings(devices=("cpu",)))
    shards = [runner.select_shard(cells, k, 4) for k in range(1, 5)]
    ids = [c.key.id for s in shards for c in s]
    assert sorted(ids) == sorted(c.key.id for c in cells) and len(ids) == len(set(ids))
    assert runner.select_shard(cells, 2, 4) == runner.select_shard(list(reversed(cells)), 2, 4)
    with pytest.raises(UsageError):
        runner.parse_shard("5/4")
    with pytest.raises(UsageError):
        runner.parse_shard("two")


def test_one_failing_cell_does_not_sink_the_run(tmp_path: Path) -> None:
    """Real worker processes: a model whose forward raises is recorded as failed, the rest measured."""
    suite = make_suite(LIN, BAD)
    res = runner.run(suite, runner.RunSettings(devices=("cpu",), batch_sizes=(1,)), tmp_path)
    by_family = {r["key"]["family"]: r for r in res.records}
    assert by_family["linear"]["status"] == "ok"
    assert by_family["linear"]["metrics"]["params"] == 8 * 4 + 4
    assert len(by_family["linear"]["samples"]["latency_ms"]) >= 1
    assert by_family["broken"]["status"] == "failed"
    assert "latency" in by_family["broken"]["error"] or "RuntimeError" in by_family["broken"]["error"]
    assert res.n_failed == 1
    df = load_results(res.path)
    assert set(df.status) == {"ok", "failed"}


def test_hanging_cell_times_out(tmp_path: Path) -> None:
    hang = VariantSpec(family="hang", builder=f"{__name__}:sleeper", model_args=freeze({"secs": 60}))
    suite = make_suite(hang, timeout_s=8.0)
    res = runner.run(suite, runner.RunSettings(devices=("cpu",), batch_sizes=(1,)), tmp_path)
    (rec,) = res.records
    assert rec["status"] == "timeout" and "timeout" in rec["error"]


def test_resume_after_a_simulated_kill_runs_only_missing_cells(tmp_path: Path) -> None:
    suite = make_suite(LIN, BIG)
    settings = runner.RunSettings(devices=("cpu",))
    calls: list[str] = []

    def fake(cell, on_event):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is killed after two cells
        calls.append(cell.key.id)
        return _ok(cell)

    with pytest.raises(KeyboardInterrupt):
        runner.run(suite, settings, tmp_path, measure=fake)
    (path,) = (tmp_path / "toy").glob("*.json")
    doc = load_run(path)
    assert len(doc["records"]) == 2 and doc["finished_at"] is None
    first = list(calls)
    calls.clear()

    def fake2(cell, on_event):
        calls.append(cell.key.id)
        return _ok(cell)

    res = runner.run(suite, settings, tmp_path, resume="latest", measure=fake2)
    assert res.path == path and res.skipped_existing == 2
    assert len(calls) == 2 and not set(calls) & set(first)
    doc = json.loads(path.read_text())
    assert len(doc["records"]) == 4 and doc["finished_at"] is not None
    assert list((tmp_path / "toy").glob("*.json")) == [path]  # nothing new written, nothing overwritten


def sleeper(secs: float):
    """A 'model builder' that hangs in the worker, for the timeout test.

    Sizing counts parameters on the meta device in the main process: answer that at once.
    """
    import time

    import torch

    if torch.empty(0).device.type == "meta":
        return torch.nn.Identity()
    time.sleep(secs)


def _ok(cell):
    from bench.worker import base_record

    rec = base_record(cell, "ok")
    rec["metrics"] = {"params": 1}
    return rec
