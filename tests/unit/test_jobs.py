"""``--jobs N`` (issue 15): the scheduling rule, tested with a device double that reports 2 GPUs."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from bench import runner
from bench.executors_parallel import ParallelExecutor, Slot, plan_slots
from bench.spec import CellSpec, Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_run
from bench.worker import base_record

FAMILIES = [VariantSpec(family=f"f{i}", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4 + i}))
            for i in range(4)]  # fmt: skip


def suite() -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), timeout_s=60.0)
    tier = Tier(name="t", target_params=40, tolerance=50.0, input_shape=(8,), variants=tuple(FAMILIES))
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


class DeviceDouble:
    """Stands in for the workers of a 2-GPU machine: each cell 'runs' for a moment in its slot's thread and
    records where it ran (the CUDA_VISIBLE_DEVICES its worker would see) and which cells overlapped it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, Slot] = {}
        self.overlaps: list[tuple[str, ...]] = []  # the devices of the cells running together, at each start
        self.envs: dict[str, dict[str, str]] = {}

    def measure(self, cell: CellSpec, on_event, slot: Slot, more: bool, stop) -> dict:
        with self.lock:
            self.running[cell.key.id] = slot
            self.overlaps.append(tuple(sorted(s.name for s in self.running.values())))
            self.envs[cell.key.id] = dict(slot.env)
        on_event("phase", cell, "params")
        time.sleep(0.05)
        with self.lock:
            del self.running[cell.key.id]
        rec = base_record(cell, "ok")
        rec["metrics"] = {"params": 1}
        return rec


def _cells(devices: tuple[str, ...]) -> list[CellSpec]:
    # expand() checks devices against the machine: make the cuda cells by hand from cpu ones
    from dataclasses import replace

    base = runner.expand(suite(), runner.RunSettings(devices=("cpu",)))
    return [replace(c, key=replace(c.key, device=d)) for d in devices for c in base]


def test_the_scheduling_rule() -> None:
    slots, warn = plan_slots(4, ["cuda"], ["0", "1"])
    assert [(s.name, s.env) for s in slots] == [("cuda:0", {"CUDA_VISIBLE_DEVICES": "0"}),
                                                 ("cuda:1", {"CUDA_VISIBLE_DEVICES": "1"})] and warn is None  # fmt: skip
    slots, warn = plan_slots(4, ["cpu", "cuda"], ["0", "1"])  # CPU cells one at a time beside the GPUs
    assert [s.name for s in slots] == ["cuda:0", "cuda:1", "cpu:0"] and warn is None
    slots, warn = plan_slots(2, ["cpu"], [])  # asked for on CPU: allowed, with a warning
    assert [s.name for s in slots] == ["cpu:0", "cpu:1"] and "share the cores" in warn
    assert [s.name for s in plan_slots(1, ["cpu", "cuda"], ["0", "1"])[0]] == ["cuda:0", "cpu:0"]
    with pytest.raises(ValueError):
        plan_slots(0, ["cpu"], [])


def test_one_cell_per_gpu_and_cpu_cells_never_together(tmp_path: Path) -> None:
    double = DeviceDouble()
    slots, _ = plan_slots(3, ["cpu", "cuda"], ["0", "1"])
    ex = ParallelExecutor(3, slots, measure=double.measure)
    cells = _cells(("cuda", "cpu"))
    events: list[tuple[str, str, object]] = []
    for c in cells:
        ex.submit(c, lambda e, c, p: events.append((e, c.key.id, p)))
    done = list(ex.as_completed())
    ex.close()
    assert sorted(d.cell.key.id for d in done) == sorted(c.key.id for c in cells)
    assert max(len(o) for o in double.overlaps) >= 2  # it did run cells at once
    for o in double.overlaps:
        assert len(o) == len(set(o)) and sum(n.startswith("cpu") for n in o) <= 1  # one per GPU, one CPU
    for c in cells:
        want = {"CUDA_VISIBLE_DEVICES": "0"} if c.key.device == "cuda" else {}
        assert double.envs[c.key.id] in ([want, {"CUDA_VISIBLE_DEVICES": "1"}] if want else [want])
    assert {d.record["concurrency"]["slot"] for d in done} == {"cuda:0", "cuda:1", "cpu:0"}
    assert all(d.record["concurrency"]["jobs"] == 3 for d in done)
    assert all(not d.record["notes"] for d in done)  # no CPU cell shared with another CPU cell
    starts = [p for e, _, p in events if e == "start"]
    assert len(starts) == len(cells) and all("slot" in p for p in starts)  # the progress view shows where


def test_jobs_on_cpu_share_the_machine_and_say_so(tmp_path: Path) -> None:
    double = DeviceDouble()
    slots, warn = plan_slots(2, ["cpu"], [])
    ex = ParallelExecutor(2, slots, measure=double.measure)
    res = runner.run(suite(), runner.RunSettings(devices=("cpu",)), tmp_path, executor=ex)
    assert max(len(o) for o in double.overlaps) == 2
    recs = load_run(res.path)["records"]
    assert len(recs) == 4 and max(r["concurrency"]["shared_with"] for r in recs) == 1
    shared = [r for r in recs if r["concurrency"]["shared_with"]]
    assert shared and all("not that of a machine to itself" in r["notes"][-1] for r in shared)


def test_a_cell_whose_device_has_no_slot_fails_alone() -> None:
    ex = ParallelExecutor(2, plan_slots(2, ["cpu", "cuda"], [])[0], measure=DeviceDouble().measure)
    for c in _cells(("cuda", "cpu"))[3:5]:
        ex.submit(c)
    got = {d.cell.key.device: d.record["status"] for d in ex.as_completed()}
    ex.close()
    assert got == {"cuda": "failed", "cpu": "ok"}


def test_close_stops_the_cells_still_running() -> None:
    stopped: list[str] = []

    def hang(cell, on_event, slot, more, stop):
        while not stop():  # the real watch loop kills its worker when it sees the stop
            time.sleep(0.01)
        stopped.append(cell.key.id)
        return base_record(cell, "failed", "cancelled")

    ex = ParallelExecutor(2, plan_slots(2, ["cpu"], [])[0], measure=hang)
    for c in _cells(("cpu",)):
        ex.submit(c)
    consumer = threading.Thread(target=lambda: list(ex.as_completed()), daemon=True)
    consumer.start()
    time.sleep(0.2)
    ex.close()
    consumer.join(timeout=5)
    assert len(stopped) == 2 and not consumer.is_alive()  # the two running stopped; the two pending never ran


def test_the_progress_view_shows_every_cell_in_flight_and_where() -> None:
    from rich.console import Console

    from bench.report.terminal import ProgressView

    a, b = _cells(("cuda",))[:2]
    view = ProgressView(Console(file=io.StringIO()), total=2)
    view.on_event("start", a, {"slot": "cuda:0"})
    view.on_event("start", b, {"slot": "cuda:1"})
    view.on_event("phase", b, "latency")
    text = view.progress.tasks[0].description
    assert "@cuda:0 · start" in text and "@cuda:1 · latency" in text
    view.on_event("done", a, base_record(a, "ok"))
    assert view.flight.keys() == {b.key.id}


def test_run_jobs_and_executor_options_are_checked() -> None:
    from bench.executors import LocalProcessExecutor
    from bench.executors_parallel import choose_executor

    cells = _cells(("cuda", "cpu"))
    ex, warn, n = choose_executor("local", 4, cells, gpu_ids=["0", "1"])
    assert isinstance(ex, ParallelExecutor) and [s.name for s in ex.slots] == ["cuda:0", "cuda:1", "cpu:0"]
    assert n == 3 and warn is None
    assert isinstance(choose_executor("local", 1, cells)[0], LocalProcessExecutor)
    with pytest.raises(runner.UsageError, match="--ray-address goes with --executor ray"):
        choose_executor("local", 1, cells, ray_address="auto")
    with pytest.raises(runner.UsageError, match="valid choices: local, ray"):
        choose_executor("slurm", 1, cells)
