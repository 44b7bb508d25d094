"""The executor seam: the runner only submits cells and takes records back as they complete
(``bench.executors``); the in-process executor runs a suite end to end without worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import executors, runner
from bench.executors import CellDone, InProcessExecutor, SerialExecutor
from bench.spec import CellSpec, Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_results, load_run
from bench.worker import base_record

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
WIDE = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 40}))
BAD = VariantSpec(family="broken", builder="torch.nn:Linear", model_args=freeze({"in_features": 3, "out_features": 4}))
SETTINGS = runner.RunSettings(devices=("cpu",))


def toy_suite(*variants: VariantSpec) -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params", "latency"), warmup_s=0.01, min_run_time_s=0.01,
                   timeout_s=120.0)  # fmt: skip
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=variants)
    return Suite(name="toy", description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


@pytest.fixture
def no_measuring_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way the runner could measure a cell itself fails the test: only the executor may."""

    def refuse(*args, **kwargs):
        raise AssertionError("the runner measured a cell itself instead of through its executor")

    for name in ("measure_in_subprocess", "measure_here"):
        monkeypatch.setattr(executors, name, refuse)
    monkeypatch.setattr("bench.worker.measure_cell", refuse)
    monkeypatch.setattr("multiprocessing.get_context", refuse)


def _record(cell: CellSpec, params: int) -> dict:
    rec = base_record(cell, "ok")
    rec["metrics"] = {"params": params}
    return rec


class FakeExecutor:
    """Hands records back in the reverse order of submission (a pool where the last cell finishes first);
    logs every call; raises ``interrupt_after`` records in (a Ctrl-C while waiting)."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.submitted: list[tuple[CellSpec, object]] = []
        self.interrupt_after = interrupt_after

    def submit(self, cell: CellSpec, on_event=None) -> None:
        self.calls.append(("submit", cell.key.family))
        self.submitted.append((cell, on_event))

    def as_completed(self) -> Iterator[CellDone]:
        self.calls.append(("as_completed", ""))
        for i, (cell, on_event) in enumerate(reversed(self.submitted)):
            if i == self.interrupt_after:
                raise KeyboardInterrupt
            if on_event:
                on_event("start", cell, None)
            yield CellDone(cell, _record(cell, 100 + i))

    def close(self) -> None:
        self.calls.append(("close", ""))


@pytest.mark.usefixtures("no_measuring_here")
def test_the_runner_only_submits_and_takes_results_as_they_complete(tmp_path: Path) -> None:
    fake = FakeExecutor()
    events: list[tuple[str, str]] = []
    res = runner.run(toy_suite(LIN, WIDE, BAD), SETTINGS, tmp_path, executor=fake,
                     on_event=lambda e, c, p: events.append((e, c.key.family)))  # fmt: skip
    order = ["linear", "wide", "broken"]
    assert fake.calls == [*(("submit", f) for f in order), ("as_completed", ""), ("close", "")]
    assert [r["key"]["family"] for r in res.records] == order[::-1]  # in the order they completed
    assert events == [x for f in order[::-1] for x in (("start", f), ("done", f))]
    stored = {r["key"]["family"]: r["metrics"]["params"] for r in load_run(res.path)["records"]}
    assert stored == {"broken": 100, "wide": 101, "linear": 102}
    assert load_run(res.path)["finished_at"] is not None

    again = FakeExecutor()  # a resume submits nothing: every cell is in the file
    assert runner.run(toy_suite(LIN, WIDE, BAD), SETTINGS, tmp_path, resume=res.path, executor=again).path == res.path
    assert again.calls == [("as_completed", ""), ("close", "")]


@pytest.mark.usefixtures("no_measuring_here")
def test_an_interrupt_while_waiting_keeps_the_finished_cells_and_closes_the_executor(tmp_path: Path) -> None:
    fake = FakeExecutor(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        runner.run(toy_suite(LIN, WIDE), SETTINGS, tmp_path, executor=fake)
    assert fake.calls[-1] == ("close", "")
    (path,) = (tmp_path / "toy").glob("*.json")
    doc = load_run(path)
    assert [r["key"]["family"] for r in doc["records"]] == ["wide"] and doc["finished_at"] is None
    rest = FakeExecutor()
    runner.run(toy_suite(LIN, WIDE), SETTINGS, tmp_path, resume="latest", executor=rest)
    assert [c for c in rest.calls if c[0] == "submit"] == [("submit", "linear")]  # --resume runs the missing cell


def test_a_bad_selection_still_closes_the_executor(tmp_path: Path) -> None:
    fake = FakeExecutor()
    with pytest.raises(runner.UsageError):
        runner.run(toy_suite(LIN), runner.RunSettings(devices=("cpu",), shard=(2, 5)), tmp_path, executor=fake)
    assert fake.calls == [("close", "")]
    with pytest.raises(TypeError, match="not both"):
        runner.run(toy_suite(LIN), SETTINGS, tmp_path, executor=fake, measure=lambda cell, on_event: {})


def test_the_default_executor_measures_each_cell_in_a_worker_process(tmp_path, monkeypatch) -> None:
    seen: list[str] = []

    def in_subprocess(cell, on_event, **how):
        seen.append(cell.key.family)
        return _record(cell, 1)

    monkeypatch.setattr(executors, "measure_in_subprocess", in_subprocess)
    monkeypatch.setattr(executors, "WarmWorker", lambda: type("Idle", (), {"discard": lambda self: None})())
    runner.run(toy_suite(LIN, WIDE), SETTINGS, tmp_path)
    assert seen == ["linear", "wide"]


def test_a_serial_executor_starts_a_cell_only_when_the_previous_record_is_taken() -> None:
    cells = runner.expand(toy_suite(LIN, WIDE, BAD), SETTINGS)
    measured: list[str] = []
    ex = SerialExecutor(lambda cell, on_event: measured.append(cell.key.family) or _record(cell, 1))
    for c in cells:
        ex.submit(c)
    assert measured == []  # submit never measures
    results = ex.as_completed()
    assert next(results).cell == cells[0] and measured == ["linear"]
    ex.close()  # drops the cells not started
    assert list(results) == [] and measured == ["linear"]
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(cells[0])


def test_the_in_process_executor_runs_a_suite_end_to_end(tmp_path: Path) -> None:
    """Real measurements in this process: records as a worker makes them, a failing cell isolated as a
    record, phases reported, and torch's threads and random state left as they were."""
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    events: list[tuple[str, str, object]] = []
    settings = runner.RunSettings(devices=("cpu",), threads=1 if threads > 1 else 2)
    res = runner.run(toy_suite(LIN, BAD), settings, tmp_path, executor=InProcessExecutor(),
                     on_event=lambda e, c, p: events.append((e, c.key.family, p)))  # fmt: skip
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)
    by_family = {r["key"]["family"]: r for r in res.records}
    assert by_family["linear"]["status"] == "ok" and by_family["linear"]["metrics"]["params"] == 8 * 4 + 4
    assert len(by_family["linear"]["samples"]["latency_ms"]) >= 1
    assert by_family["broken"]["status"] == "failed" and res.n_failed == 1
    assert [(e, f) for e, f, _ in events if e != "phase"] == [("start", "linear"), ("done", "linear"),
                                                              ("start", "broken"), ("done", "broken")]  # fmt: skip
    assert ("phase", "linear", "latency") in events
    assert set(load_results(res.path).status) == {"ok", "failed"}
