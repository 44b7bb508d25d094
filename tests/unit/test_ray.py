"""``--executor ray`` (issue 15) on a local two-node Ray cluster; skipped where Ray is not installed."""

from __future__ import annotations

import os
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
SETTINGS = runner.RunSettings(devices=("cpu",), threads=1)


def toy_suite() -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params", "flops"), timeout_s=120.0)
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(LIN, WIDE, BAD))
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
