"""``--executor ray`` (issue 15) on a local two-node Ray cluster; skipped where Ray is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from bench import runner  # noqa: E402
from bench.executors import InProcessExecutor  # noqa: E402
from bench.executors_ray import RayExecutor, measure_on_host  # noqa: E402
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze  # noqa: E402

pytestmark = pytest.mark.slow
LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
WIDE = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 40}))
BAD = VariantSpec(family="broken", builder="torch.nn:Linear", model_args=freeze({"in_features": 3, "out_features": 4}))
#: a cell that takes a few seconds to build: the driver is killed while it runs
SLOW = VariantSpec(
    family="slow", builder="test_ray:slow_linear", model_args=freeze({"in_features": 8, "out_features": 4})
)
SETTINGS = runner.RunSettings(devices=("cpu",), threads=1)


def slow_linear(**kw):
    """``nn.Linear`` after a pause (the driver-kill test needs a cell still running when it kills)."""
    import torch

    time.sleep(float(os.environ.get("AIGC_TEST_SLOW_S", "4")))
    return torch.nn.Linear(**kw)


def toy_suite(*variants: VariantSpec) -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params", "flops"), timeout_s=120.0)
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=variants or (LIN, WIDE, BAD))
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    # Ray workers import the task functions of this file by name: put it on their path.
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
    yield c
    ray.shutdown()
    c.shutdown()


def dies_once(cell, marker_dir: str):
    """A task body whose Ray worker dies on its first try for the 'wide' cell, and always for 'broken'."""
    mark = Path(marker_dir) / cell.key.family
    if cell.key.family == "broken" or (cell.key.family == "wide" and not mark.exists()):
        mark.touch()
        os._exit(1)
    return measure_on_host(cell)


def _summary(records):
    return {r["key"]["family"]: (r["status"], r["metrics"].get("params"), r["metrics"].get("macs")) for r in records}


def test_ray_gives_the_cells_and_statuses_of_the_local_executor(cluster, tmp_path: Path) -> None:
    local = runner.run(toy_suite(), SETTINGS, tmp_path / "local", executor=InProcessExecutor())
    far = runner.run(toy_suite(), SETTINGS, tmp_path / "ray", executor=RayExecutor())
    assert _summary(far.records) == _summary(local.records)
    assert all(r["host_env"]["host"] and "cpu_model" in r["host_env"] for r in far.records)


def test_a_dead_ray_worker_is_retried_once_then_failed_and_the_others_are_stored(cluster, tmp_path: Path) -> None:
    task = ray.remote(max_calls=1, max_retries=0)(dies_once)

    class Bound:
        def options(self, **kw):
            opts = task.options(**kw)
            return type("R", (), {"remote": lambda self, cell: opts.remote(cell, str(tmp_path))})()

    res = runner.run(toy_suite(), SETTINGS, tmp_path / "out", executor=RayExecutor(task=Bound()))
    by = {r["key"]["family"]: r for r in res.records}
    assert by["linear"]["status"] == "ok" and by["wide"]["status"] == "ok", {k: r["error"] for k, r in by.items()}
    assert "retried 1x" in by["wide"]["notes"][-1]
    assert by["broken"]["status"] == "failed" and "Ray worker died" in by["broken"]["error"]


def test_ray_measures_the_quick_cv_profile_as_the_local_executor_does(cluster, tmp_path: Path) -> None:
    """The acceptance's parity check on a real suite: cv-backbones' quick profile (tiny tier, batch 1), params
    and MACs only (latency on two 1-CPU Ray nodes would only measure the nodes): same cells, same statuses,
    identical counts, and every record says which host measured it."""
    from bench.registry import get_suite

    cv = get_suite("cv-backbones")
    (quick,) = [p for p in cv.profiles if p.name == "quick"]
    suite = replace(cv, profiles=(replace(quick, metrics=("params", "flops")),), default_profile="quick")
    settings = replace(SETTINGS, profile="quick")
    local = runner.run(suite, settings, tmp_path / "local", executor=InProcessExecutor())
    far = runner.run(suite, settings, tmp_path / "ray", executor=RayExecutor())
    (tiny,) = [t for t in cv.tiers if t.name == "tiny"]
    assert len(local.records) == len(tiny.variants) >= 9
    assert _summary(far.records) == _summary(local.records)
    assert all(r["status"] == "ok" for r in far.records)
    assert {r["host_env"]["host"] for r in far.records} == {os.uname().nodename}


DRIVER = """
import sys
sys.path.insert(0, {here!r})
import ray
from bench import runner
from bench.executors_ray import RayExecutor
from test_ray import LIN, SETTINGS, SLOW, WIDE, toy_suite

ray.init(address={address!r}, include_dashboard=False, log_to_driver=False,
         runtime_env={{"env_vars": {{"PYTHONPATH": {here!r}, "AIGC_TEST_SLOW_S": "30"}}}})
runner.run(toy_suite(LIN, SLOW, WIDE), SETTINGS, {out!r}, executor=RayExecutor(max_in_flight=1))
"""


def test_a_killed_driver_leaves_a_run_that_resume_finishes_with_the_missing_cells_only(cluster, tmp_path: Path) -> None:
    """Kill the driver (SIGKILL, no clean-up) while the slow cell runs: the cells it had finished are in the
    run file; ``resume`` runs only the others and the file ends with each cell once."""
    from bench.store import load_run

    here = str(Path(__file__).parent)
    out = tmp_path / "out"
    script = textwrap.dedent(DRIVER.format(here=here, address=cluster.address, out=str(out)))
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        path = None
        while time.monotonic() < deadline and driver.poll() is None:
            found = list((out / "toy").glob("*.json"))
            if found and len(load_run(found[0])["records"]) >= 1:
                path = found[0]
                break
            time.sleep(0.5)
        assert path is not None, (
            f"the driver stored no cell: {driver.stderr.read().decode()[-2000:] if driver.poll() is not None else 'still running'}"
        )
        time.sleep(1.0)  # the slow cell is running now (one cell in flight at a time)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = {r["key"]["family"] for r in load_run(path)["records"]}
    assert before == {"linear"}, before  # in order, one at a time: the slow cell had not finished
    ran: list[str] = []  # the resumed run's slow cell takes the default few seconds (this session's runtime_env)
    res = runner.run(toy_suite(LIN, SLOW, WIDE), SETTINGS, out, resume="latest", executor=RayExecutor(),
                     on_event=lambda kind, cell, _p: ran.append(cell.key.family) if kind == "done" else None)  # fmt: skip
    assert sorted(ran) == ["slow", "wide"]
    assert res.path == path and res.skipped_existing == 1
    assert sorted(r["key"]["family"] for r in load_run(path)["records"]) == ["linear", "slow", "wide"]


def hangs(cell):
    """A task body that never finishes in time (a stuck host): the driver must cancel it past the cap."""
    time.sleep(120)


def test_a_task_past_its_hard_cap_is_cancelled_and_recorded_as_a_timeout_without_retry(cluster, tmp_path) -> None:
    task = ray.remote(max_calls=1, max_retries=0)(hangs)
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), timeout_s=0.1)  # cap 10 x 0.1 = 1 s
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(LIN,))
    suite = Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                  default_profile="quick")  # fmt: skip
    t0 = time.monotonic()
    res = runner.run(suite, SETTINGS, tmp_path / "out", executor=RayExecutor(task=task, grace_s=1.0))
    (rec,) = res.records
    assert rec["status"] == "timeout" and "cancelled by the driver" in rec["error"], rec
    assert not any("retried" in n for n in rec.get("notes", []))
    assert time.monotonic() - t0 < 60
