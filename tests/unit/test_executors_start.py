"""Cheaper local cells (issue 15): the next cell's worker is started ahead and paused while a clock-timed metric
runs (``bench.executors.WorkerPool``); resolved tiers are cached on disk (``bench.sizing``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_executors import LIN, SETTINGS, WIDE, toy_suite  # noqa: I001

from bench import executors, runner, sizing
from bench.spec import Knob, Tier, VariantSpec, freeze


class FakeWorker:
    made: list[FakeWorker] = []

    def __init__(self) -> None:
        self.log: list[str] = []
        FakeWorker.made.append(self)

    def pause(self) -> None:
        self.log.append("pause")

    def resume(self) -> None:
        if self.log and self.log[-1] == "pause":  # as WarmWorker: SIGCONT only to a stopped worker
            self.log.append("resume")

    def discard(self) -> None:
        self.log.append("discard")


def test_the_spare_is_stopped_while_a_timed_metric_runs_and_one_worker_measures_one_cell(monkeypatch) -> None:
    FakeWorker.made = []
    given: list[tuple[str, object]] = []

    def fake_measure(cell, on_event=None, *, env=None, worker=None, on_phase=None, stop=None):
        given.append((cell.key.family, worker))
        for phase in ("start", "build", "params", "latency", "epoch 1/5", "memory", "latency"):
            on_phase(phase)
        return {"status": "ok"}

    monkeypatch.setattr(executors, "WarmWorker", FakeWorker)
    monkeypatch.setattr(executors, "measure_in_subprocess", fake_measure)
    cells = runner.expand(toy_suite(LIN, WIDE), SETTINGS)
    pool = executors.WorkerPool("warm")
    pool.measure(cells[0], more=True)
    first, spare = FakeWorker.made
    assert given == [("linear", first)]
    # latency is timed (paused), params/memory are not (resumed); a metric's own progress text changes nothing
    assert spare.log == ["pause", "resume", "pause"]
    pool.measure(cells[1], more=False)  # the last cell: the spare measures it, no new spare is started
    assert given[1] == ("wide", spare) and len(FakeWorker.made) == 2
    pool.close()
    assert "discard" not in spare.log  # a worker that measured its cell is not a spare any more


def test_timed_metrics_come_from_the_catalogue() -> None:
    assert "latency" in executors.timed_metrics()
    assert {"params", "flops", "memory"} <= executors.untimed_phases() and "latency" not in executors.untimed_phases()


def test_a_bad_worker_start_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(executors.WORKER_START_ENV, "forky")
    with pytest.raises(runner.UsageError, match="worker start .forky.; valid choices: spawn, warm"):
        executors.WorkerPool()
    monkeypatch.setenv(executors.WORKER_START_ENV, "spawn")
    assert executors.WorkerPool().start == "spawn"


# --- resolved tiers cached on disk -------------------------------------------------------------------------

KNOBBED = VariantSpec(family="knobbed", builder="torch.nn:Linear", model_args=freeze({"in_features": 8}),
                      knob=Knob(name="out_features", values=(1, 2, 4, 8, 16)))  # fmt: skip


def _tier(target: int = 36) -> Tier:
    return Tier(name="t", target_params=target, tolerance=0.5, input_shape=(8,), variants=(LIN, KNOBBED))


def test_a_resolved_tier_is_read_back_from_the_cache_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(sizing.CACHE_ENV, str(tmp_path))
    calls: list[str] = []
    real = sizing._resolve
    monkeypatch.setattr(sizing, "_resolve", lambda spec, tier: calls.append(spec.family) or real(spec, tier))
    first = sizing._cached_resolve(_tier())
    assert calls == ["linear", "knobbed"] and len(list(tmp_path.glob("*.json"))) == 1
    again = sizing._cached_resolve(_tier())
    assert calls == ["linear", "knobbed"] and again == first  # nothing built the second time
    assert again[1].knob_value == 4 and again[1].model_args == freeze({"in_features": 8, "out_features": 4})
    sizing._cached_resolve(_tier(target=150))  # another declaration: another key, resolved again
    assert calls[2:] == ["linear", "knobbed"] and len(list(tmp_path.glob("*.json"))) == 2


def test_a_damaged_cache_entry_is_ignored_and_the_cache_can_be_turned_off(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(sizing.CACHE_ENV, str(tmp_path))
    good = sizing._cached_resolve(_tier())
    (entry,) = tmp_path.glob("*.json")
    for bad in ("{not json", json.dumps({"format": sizing.CACHE_FORMAT, "variants": [{"family": "x"}]}), "[]"):
        entry.write_text(bad)
        assert sizing._cached_resolve(_tier()) == good
    monkeypatch.setenv(sizing.CACHE_ENV, "off")
    assert sizing.cache_dir() is None
    entry.unlink()
    assert sizing._cached_resolve(_tier()) == good and not list(tmp_path.glob("*.json"))


def test_the_suite_hash_is_the_same_with_and_without_the_cache(tmp_path, monkeypatch) -> None:
    suite = toy_suite(LIN, WIDE)
    monkeypatch.setenv(sizing.CACHE_ENV, "off")
    plain = runner.definition_hash(runner.suite_definition(suite))
    monkeypatch.setenv(sizing.CACHE_ENV, str(tmp_path))
    sizing._cached_resolve(suite.tiers[0])  # fills the cache
    assert runner.definition_hash(runner.suite_definition(suite)) == plain


@pytest.mark.slow
def test_warm_workers_measure_the_same_cells_as_spawned_ones(tmp_path: Path) -> None:
    """Real workers: each cell still in its own process (distinct pids), same statuses and params."""
    runs = {}
    for start in ("warm", "spawn"):
        ex = executors.LocalProcessExecutor(start=start)
        res = runner.run(toy_suite(LIN, WIDE), SETTINGS, tmp_path / start, executor=ex)
        runs[start] = {r["key"]["family"]: (r["status"], r["metrics"]["params"]) for r in res.records}
        assert ex._pool._spare is None  # closed: no worker left waiting
    assert runs["warm"] == runs["spawn"] == {"linear": ("ok", 36), "wide": ("ok", 360)}


def test_a_worker_keeps_torch_compiles_cuda_home_warning_to_itself() -> None:
    """torch.compile on a CPU-only machine logs "No CUDA runtime is found" once per compiled cell; a worker raises
    that logger to ERROR in its own process (the caller's loggers are untouched: the worker is a child)."""
    import logging
    import subprocess
    import sys

    from bench.worker import QUIET_LOGGERS

    before = {n: logging.getLogger(n).level for n in QUIET_LOGGERS}
    code = "from bench.worker import quiet_worker_logs\nquiet_worker_logs()\nfrom torch.utils import cpp_extension\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "No CUDA runtime" not in done.stderr, done.stderr[-500:]
    assert {n: logging.getLogger(n).level for n in QUIET_LOGGERS} == before
