"""The run's process safety: workers die with their driver, SIGTERM ends a run like Ctrl-C, a killed cell keeps
what it had measured, the stall timeout and its hard cap, --retry-failed, the ETA, where reports go."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bench import runner
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import load_run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
WIDE = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 40}))


def toy_suite(*variants: VariantSpec, timeout_s: float = 120.0, metrics=("params", "latency"), name="toy") -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=tuple(metrics), warmup_s=0.02, min_run_time_s=0.02,
                   timeout_s=timeout_s)  # fmt: skip
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=tuple(variants) or (LIN,))
    return Suite(name=name, description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


# --- builders the worker imports by name (``test_run_safety:...``; spawn children inherit sys.path) ----------


def _on_meta() -> bool:
    # Sizing counts parameters on the meta device in the driver: answer at once there.
    return torch.empty(0).device.type == "meta"


def hang_writing_pid(pid_file: str, secs: float = 120.0):
    """A builder that writes the worker's pid, then hangs (a cell that never ends)."""
    if _on_meta():
        return torch.nn.Identity()
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(secs)


class _Stuck(torch.nn.Linear):
    """A model whose forward never returns (``how="hang"``) or kills its own process (``"oom"``, as the OOM
    killer would): params are measured, latency never."""

    def __init__(self, how: str) -> None:
        super().__init__(8, 4)
        self.how = how

    def forward(self, x):
        if self.how == "oom":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(600)


def stuck(how: str):
    return _Stuck(how)


# --- workers die with their driver -----------------------------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from test_run_safety import drive
    drive({out!r}, {pid_file!r}, cli={cli!r})
    """
)


def drive(out: str, pid_file: str, cli: bool) -> None:
    """A driver process (run by the tests below): a run of one cell that hangs, via the runner or the CLI."""
    hang = VariantSpec(
        family="hang", builder="test_run_safety:hang_writing_pid", model_args=freeze({"pid_file": pid_file})
    )
    suite = toy_suite(hang, name="hang-suite")
    if not cli:
        runner.run(suite, runner.RunSettings(devices=("cpu",)), Path(out))
        return
    from bench.cli import main
    from bench.registry import SUITES

    SUITES.add(suite.name, lambda: suite)
    sys.exit(main(["run", suite.name, "--device", "cpu", "--out", out, "--no-report"]))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended (no reaper in some containers)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _start_driver(tmp_path: Path, cli: bool) -> tuple[subprocess.Popen[str], int]:
    pid_file = tmp_path / "worker.pid"
    code = DRIVER.format(here=str(HERE), out=str(tmp_path / "res"), pid_file=str(pid_file), cli=cli)
    # Output to a file, not a pipe: an orphaned worker would hold a pipe open and make reading it wait.
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                  text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"the worker never started: {(tmp_path / 'driver.log').read_text()}")
        time.sleep(0.1)
    return driver, int(pid_file.read_text())


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # do not leave it behind when the test fails
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
def test_kill_9_of_the_driver_takes_the_hanging_worker_with_it(tmp_path: Path) -> None:
    driver, worker = _start_driver(tmp_path, cli=False)
    assert _alive(worker)
    driver.kill()  # SIGKILL: no handler runs in the driver
    driver.wait(timeout=10)
    assert _gone_within(worker, 5), "the worker outlived its driver"


@pytest.mark.slow
def test_sigterm_ends_a_run_like_ctrl_c_and_kills_the_worker(tmp_path: Path) -> None:
    driver, worker = _start_driver(tmp_path, cli=True)
    driver.send_signal(signal.SIGTERM)
    driver.wait(timeout=60)
    err = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 128 + signal.SIGTERM, err
    lines = [x for x in err.splitlines() if "aigc-bench" in x]
    assert lines == ["aigc-bench: interrupted (SIGTERM); finished cells are saved"], err
    assert "Traceback" not in err
    assert _gone_within(worker, 5)
    (path,) = (tmp_path / "res" / "hang-suite").glob("*.json")
    assert load_run(path)["records"] == []  # the file stays valid; --resume runs the cell


def test_the_watchdog_ends_an_orphan_where_the_kernel_signal_is_not_armed(tmp_path: Path) -> None:
    """The portable fallback alone (prctl switched off): the worker notices its parent is gone."""
    pid_file = tmp_path / "orphan.pid"
    child = textwrap.dedent(
        f"""
        import os, sys, time
        from unittest import mock
        import bench.worker as w
        with mock.patch.object(w.sys, "platform", "darwin"):  # no PR_SET_PDEATHSIG: the watchdog alone
            assert w.die_with_parent(os.getppid(), poll_s=0.1) is False
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
        """
    )
    middle = textwrap.dedent(
        f"""
        import subprocess, sys, time, os
        subprocess.Popen([sys.executable, "-c", {child!r}])
        while not os.path.exists({str(pid_file)!r}) or not open({str(pid_file)!r}).read():
            time.sleep(0.05)
        os._exit(0)  # the parent dies, leaving its child behind
        """
    )
    subprocess.run([sys.executable, "-c", middle], timeout=60, check=True)
    assert _gone_within(int(pid_file.read_text()), 5)


def test_a_worker_whose_parent_is_already_gone_exits_at_once(tmp_path: Path) -> None:
    code = "import bench.worker as w, os; w.die_with_parent(os.getppid() + 1000003); print('survived')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 70 and "survived" not in r.stdout  # EXIT_ORPHANED


# --- a killed cell keeps what it had measured ------------------------------------------------------------


def _stuck_suite(how: str, timeout_s: float) -> Suite:
    return toy_suite(VariantSpec(family="stuck", builder="test_run_safety:stuck", model_args=freeze({"how": how})),
                     timeout_s=timeout_s)  # fmt: skip


def test_a_cell_killed_like_oom_keeps_its_params_and_names_the_phase(tmp_path: Path) -> None:
    (cell,) = runner.expand(_stuck_suite("oom", 120.0), runner.RunSettings(devices=("cpu",)))
    rec = runner.measure_in_subprocess(cell)
    assert rec["status"] == "failed" and "signal 9" in rec["error"] and "'latency'" in rec["error"]
    assert rec["metrics"]["params"] == 8 * 4 + 4
    assert any("during 'latency'" in n and "kept: params" in n for n in rec["notes"]), rec["notes"]


@pytest.mark.slow
def test_a_timed_out_cell_keeps_the_metrics_measured_before_it(tmp_path: Path) -> None:
    # 12 s of silence after latency starts; the phases before it come every second or two, even on a busy machine.
    (cell,) = runner.expand(_stuck_suite("hang", 12.0), runner.RunSettings(devices=("cpu",)))
    rec = runner.measure_in_subprocess(cell)
    assert rec["status"] == "timeout" and rec["error"].startswith(
        "stall timeout: no progress for 12 s during 'latency'"
    )
    assert rec["metrics"]["params"] == 8 * 4 + 4


def test_the_worker_streams_each_metric_as_it_completes() -> None:
    from bench.worker import measure_cell

    (cell,) = runner.expand(toy_suite(), runner.RunSettings(devices=("cpu",)))
    phases: list[str] = []
    got: list[tuple[str, dict, dict]] = []
    rec = measure_cell(cell, report_phase=phases.append, report_metric=lambda *m: got.append(m))
    assert [name for name, _, _ in got] == ["params", "latency"]
    assert got[0][1]["params"] == 36 and got[0][2] == {}
    assert got[1][2]["latency_ms"] == rec["samples"]["latency_ms"]  # the samples that metric added
    assert {k: v for _, values, _ in got for k, v in values.items()}.items() <= rec["metrics"].items()
    assert "params" in phases and "latency" in phases


# --- stall timeout, hard cap ----------------------------------------------------------------------------


class FakeWorker:
    """A scripted worker on a fake clock: ``script`` is [(seconds after start, message)]; after it, silence."""

    def __init__(self, script: list[tuple[float, tuple]], dies_at: float | None = None) -> None:
        self.now = 0.0
        self.script = list(script)
        self.dies_at = dies_at

    def clock(self) -> float:
        return self.now

    def alive(self) -> bool:
        return self.dies_at is None or self.now < self.dies_at

    def get(self, timeout: float) -> tuple:
        if self.script and self.script[0][0] <= self.now + timeout:
            at, msg = self.script.pop(0)
            self.now = max(self.now, at)
            return msg
        self.now += timeout
        raise queue.Empty


def _watch(w: FakeWorker, timeout_s: float = 10.0) -> runner.WorkerOutcome:
    return runner.watch_worker(w.get, w.alive, timeout_s, clock=w.clock)


def test_a_cell_that_keeps_reporting_progress_outlives_its_timeout() -> None:
    beats = [(t, ("phase", f"accuracy (step {t})")) for t in range(5, 60, 5)]
    w = FakeWorker([*beats, (60.0, ("record", {"status": "ok"}))])
    out = _watch(w)
    assert out.record == {"status": "ok"} and out.fired is None and w.now == 60  # 6 x its 10 s timeout


def test_silence_fires_the_stall_timeout() -> None:
    w = FakeWorker([(1.0, ("phase", "build")), (2.0, ("metric", "params", {"params": 7}, {})), (3.0, ("phase", "x"))])
    out = _watch(w)
    assert out.fired == "stall" and out.phase == "x" and 13.0 <= w.now < 13.6
    assert out.metrics == {"params": 7} and out.metric_names == ["params"]


def test_endless_progress_hits_the_hard_cap() -> None:
    w = FakeWorker([(t / 2, ("phase", "accuracy")) for t in range(1, 1000)])
    out = _watch(w)
    assert out.fired == "total" and runner.HARD_CAP_FACTOR * 10 <= w.now < runner.HARD_CAP_FACTOR * 10 + 1


def test_a_dead_worker_is_not_a_timeout() -> None:
    w = FakeWorker([(1.0, ("metric", "params", {"params": 7}, {}))], dies_at=2.0)
    out = _watch(w)
    assert out.fired is None and out.record is None and out.metrics == {"params": 7} and w.now < 5


def test_limit_fired() -> None:
    assert runner.limit_fired(5, 5, 10) is None
    assert runner.limit_fired(50, 10, 10) == "stall"
    assert runner.limit_fired(100, 1, 10) == "total"
    assert runner.limit_fired(100, 1, 10, factor=40) is None and runner.limit_fired(400, 1, 10, factor=40) == "total"


def test_training_cells_get_the_longer_hard_cap() -> None:
    """A training cell (several models may train in it: DeiT's teacher and students) may run 40x its stall
    timeout in all; a cost cell 10x. (At 10x an accuracy-long DeiT cell was killed at 3000 s under load.)"""
    from dataclasses import replace

    from bench.executors import HARD_CAP_FACTOR, TRAINING_CAP_FACTOR, cap_factor
    from bench.spec import AccuracySpec

    (cell, *_) = runner.expand(toy_suite(LIN), runner.RunSettings(devices=("cpu",)))
    train = replace(
        cell, profile=replace(cell.profile, metrics=("accuracy",), accuracy=AccuracySpec(task="adding", tiers=("t",)))
    )
    assert cap_factor(cell) == HARD_CAP_FACTOR == 10 and cap_factor(train) == TRAINING_CAP_FACTOR == 40


# --- --retry-failed -------------------------------------------------------------------------------------


def _fake(statuses: dict[str, str], calls: list[str]):
    from bench.worker import base_record

    def measure(cell, on_event):
        calls.append(cell.key.family)
        rec = base_record(cell, statuses[cell.key.family], None)
        rec["metrics"] = {"params": 1}
        return rec

    return measure


def test_retry_failed_reruns_failed_and_timed_out_cells_and_replaces_their_records(tmp_path: Path) -> None:
    broken = VariantSpec(
        family="broken", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 5})
    )
    suite = toy_suite(LIN, WIDE, broken)
    settings = runner.RunSettings(devices=("cpu",))
    calls: list[str] = []
    first = runner.run(suite, settings, tmp_path,
                       measure=_fake({"linear": "ok", "wide": "failed", "broken": "timeout"}, calls))  # fmt: skip
    assert first.n_failed == 2
    calls.clear()
    plain = runner.run(suite, settings, tmp_path, resume="latest", measure=_fake({}, calls))
    assert calls == [] and plain.skipped_existing == 3  # --resume alone never retries
    events: list[tuple[str, str]] = []
    res = runner.run(suite, settings, tmp_path, resume="latest", retry_failed=True,
                     measure=_fake({"wide": "ok", "broken": "ok"}, calls),
                     on_event=lambda e, c, p: events.append((e, c.key.family)))  # fmt: skip
    assert sorted(calls) == ["broken", "wide"] and res.path == first.path and res.n_failed == 0
    assert ("resumed", "linear") in events and ("start", "wide") in events
    records = load_run(res.path)["records"]
    assert sorted((r["key"]["family"], r["status"]) for r in records) == [("broken", "ok"), ("linear", "ok"),
                                                                          ("wide", "ok")]  # fmt: skip
    with pytest.raises(runner.UsageError, match="--retry-failed goes with --resume"):
        runner.run(suite, settings, tmp_path, retry_failed=True, measure=_fake({}, calls))


# --- ETA ------------------------------------------------------------------------------------------------


def test_eta_is_the_mean_per_kind_times_the_cells_left() -> None:
    assert runner.estimate_remaining_s({}, ["cost:tiny"]) is None  # nothing finished: no basis
    seen = {"cost:tiny": [2.0, 4.0], "train:micro": [30.0]}
    assert runner.estimate_remaining_s(seen, ["cost:tiny", "cost:tiny", "train:micro"]) == pytest.approx(36.0)
    # a tier not seen yet: the mean of its class; a class not seen yet: the mean of everything
    assert runner.estimate_remaining_s(seen, ["cost:small"]) == pytest.approx(3.0)
    assert runner.estimate_remaining_s({"cost:tiny": [3.0]}, ["train:micro"]) == pytest.approx(3.0)
    assert runner.estimate_remaining_s(seen, []) == 0.0


def test_eta_estimator_follows_the_run_events_on_a_clock() -> None:
    from bench.spec import AccuracySpec

    suite = toy_suite(LIN, WIDE)
    acc = AccuracySpec(task="adding", tiers=("t",))
    from dataclasses import replace

    cells = runner.expand(suite, runner.RunSettings(devices=("cpu",)))
    assert {runner.cell_kind(c) for c in cells} == {"cost:t"}
    train = replace(cells[0], profile=replace(cells[0].profile, metrics=("accuracy",), accuracy=acc))
    assert runner.cell_kind(train) == "train:t"
    pretrain = replace(cells[0], profile=replace(cells[0].profile, metrics=("params", "pretrain"), accuracy=acc))
    assert runner.cell_kind(pretrain) == "train:t"  # a pretraining objective's cell takes minutes, not seconds
    now = [0.0]
    eta = runner.EtaEstimator(cells, clock=lambda: now[0])
    assert eta.remaining_s() is None
    eta.on_event("start", cells[0], None)
    now[0] = 10.0
    eta.on_event("done", cells[0], {"status": "ok"})
    assert eta.remaining_s() == pytest.approx(10.0)  # one cell left, at the mean of one
    eta.on_event("start", cells[1], None)
    now[0] = 14.0
    assert eta.remaining_s() == pytest.approx(6.0)  # the running cell counts down
    now[0] = 30.0
    assert eta.remaining_s() == 0.0  # overrunning: never negative
    eta.on_event("done", cells[1], {"status": "ok"})
    assert eta.remaining_s() == 0.0


def test_resumed_and_skipped_cells_do_not_count_as_measured_time() -> None:
    cells = runner.expand(toy_suite(LIN, WIDE), runner.RunSettings(devices=("cpu",), batch_sizes=(1, 2)))
    now = [0.0]
    eta = runner.EtaEstimator(cells, clock=lambda: now[0])
    eta.on_event("resumed", cells[0], {"status": "ok"})
    eta.on_event("start", cells[1], None)
    now[0] = 1.0
    eta.on_event("done", cells[1], {"status": "skipped"})
    assert eta.remaining_s() is None
    eta.on_event("start", cells[2], None)
    now[0] = 9.0
    eta.on_event("done", cells[2], {"status": "ok"})
    assert eta.remaining_s() == pytest.approx(8.0)  # one cell left


# --- the training heartbeat -----------------------------------------------------------------------------


def test_training_reports_every_step_to_the_heartbeat() -> None:
    from bench.accuracy import make_task, model_factory
    from bench.accuracy.train import train_once
    from bench.spec import AccuracySpec

    spec = AccuracySpec(task="adding", task_args=freeze({"length": 10, "n_train": 64, "n_test": 32}), epochs=2,
                        batch_size=32, seeds=1)  # fmt: skip
    task = make_task(spec.task, **dict(spec.task_args))
    steps: list[tuple[int, int]] = []
    cnn = VariantSpec("cnn", "bench.accuracy.models:cnn1d", freeze({"width": 4}))
    train_once(model_factory(cnn, task), task, spec, seed=0, on_step=lambda *s: steps.append(s))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_accuracy_heartbeat_is_a_throttled_phase() -> None:
    from types import SimpleNamespace

    from bench.metrics.accuracy import _progress

    phases: list[str] = []
    on_seed, on_step = _progress(SimpleNamespace(report_phase=phases.append), seeds=3, every_s=0.0)
    on_seed(1)
    on_step(5, 40)
    assert phases == ["accuracy (seed 2/3)", "accuracy (seed 2/3, step 5/40)"]
    on_seed, on_step = _progress(SimpleNamespace(report_phase=phases.append), seeds=3, every_s=3600.0)
    for i in range(100):
        on_step(i, 100)
    assert len(phases) == 2  # at most one a second (here: an hour)


# --- where reports go -----------------------------------------------------------------------------------


def test_report_folder_is_beside_the_results_or_where_asked() -> None:
    from bench.commands.run import report_folder

    assert report_folder(None, None) == Path("reports")  # the default ./results: the published layout
    assert report_folder(Path("/x/res"), None) == Path("/x/res/reports")
    assert report_folder(Path("/x/res"), Path("/y")) == Path("/y")


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Suite:
    from bench import registry

    suite = toy_suite(metrics=("params",), name="toy-cli")
    registry.SUITES.names()  # load the built-in suites first
    monkeypatch.setitem(registry.SUITES._items, suite.name, lambda: suite)
    return suite


@pytest.mark.slow
def test_run_out_dir_from_an_empty_cwd_leaves_the_cwd_empty(tmp_path: Path, monkeypatch, toy_registered) -> None:
    from bench.cli import main

    cwd, out = tmp_path / "cwd", tmp_path / "elsewhere" / "res"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["run", "toy-cli", "--device", "cpu", "--out", str(out)]) == 0
    assert list(cwd.iterdir()) == []
    (path,) = (out / "toy-cli").glob("*.json")
    assert json.loads(path.read_text())["records"][0]["status"] == "ok"
    assert list((out / "reports" / "toy-cli").glob(f"{path.stem}*.md"))
    rd = tmp_path / "rd"
    assert main(["run", "toy-cli", "--device", "cpu", "--out", str(out), "--report-dir", str(rd)]) == 0
    assert list((rd / "toy-cli").glob("*.md")) and list(cwd.iterdir()) == []
