"""Acceptance (issue 13): a new metric is ONE file. Declared in a temporary package, it is measured (after the
metrics it needs), stored, shown in the Markdown and CSV reports, judged by compare and exported, with no
other file touched: everything else reads the metric catalogue (``bench.catalogue``)."""

from __future__ import annotations

import csv
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import catalogue, runner
from bench.cli import main
from bench.executors import InProcessExecutor
from bench.registry import unregister_metric
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import columns, load_results, load_run

#: the whole metric: this file, in a package of its own, is all a contributor writes
ACHIEVED = '''
"""Achieved compute rate: the forward pass's FLOPs over its median latency."""

from bench.catalogue import Column, Judge
from bench.registry import register_metric


@register_metric("achieved", needs=("macs", "latency_p50_ms"), columns=(
    Column("fwd_gflops", unit="GFLOP/s", better="higher", header="GFLOP/s", frame=True, export=True,
           judge=Judge("threshold", 10.0)),
))
def achieved(ctx):
    seconds = ctx.results["latency_p50_ms"] / 1e3
    return {"fwd_gflops": 2 * ctx.results["macs"] / seconds / 1e9}
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The metric's file in a temporary package on ``sys.path``, imported; unregistered afterwards."""
    pkg = tmp_path / "plugins" / "my_metrics"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "achieved.py").write_text(ACHIEVED)
    monkeypatch.syspath_prepend(str(pkg.parent))
    importlib.import_module("my_metrics.achieved")
    yield pkg / "achieved.py"
    unregister_metric("achieved")
    for name in ("my_metrics.achieved", "my_metrics"):
        sys.modules.pop(name, None)
    assert catalogue.producer("fwd_gflops") is None


def _suite() -> Suite:
    lin = VariantSpec(family="linear", builder="torch.nn:Linear",
                      model_args=freeze({"in_features": 64, "out_features": 64}))  # fmt: skip
    # the new metric listed first: the worker still runs it after flops and latency, which it needs
    prof = Profile(name="quick", batch_sizes=(4,), metrics=("achieved", "params", "flops", "latency"), warmup_s=0.01,
                   min_run_time_s=0.05, timeout_s=120.0)  # fmt: skip
    tier = Tier(name="t", target_params=4160, tolerance=50.0, input_shape=(64,), variants=(lin,))
    return Suite(name="toy", description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


def test_a_metric_in_one_file_is_measured_stored_reported_compared_and_exported(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # measured: through the runner and an executor, after the metrics it needs
    result = runner.run(_suite(), runner.RunSettings(devices=("cpu",)), tmp_path / "out", executor=InProcessExecutor())
    (rec,) = result.records
    m = rec["metrics"]
    assert rec["status"] == "ok"
    assert m["fwd_gflops"] > 0
    assert m["fwd_gflops"] == pytest.approx(2 * m["macs"] / (m["latency_p50_ms"] / 1e3) / 1e9)

    # stored: in the run file, and a column of every load_results frame
    stored = load_run(result.path)["records"][0]["metrics"]
    assert stored["fwd_gflops"] == m["fwd_gflops"]
    assert "fwd_gflops" in columns() and "fwd_gflops" in load_results(result.path).columns

    # reported: a column of the Markdown table (its declared header) and of the tidy CSV
    assert main(["report", str(result.path), "--out", str(tmp_path / "reports"), "--format", "md,csv"]) == 0
    (md,) = (tmp_path / "reports" / "toy").glob("*.md")
    header = next(line for line in md.read_text().splitlines() if "p50 (ms)" in line)
    assert "GFLOP/s" in header
    (csv_path,) = (tmp_path / "reports" / "toy").glob("*.csv")
    (row,) = csv.DictReader(csv_path.open())
    assert float(row["fwd_gflops"]) == pytest.approx(m["fwd_gflops"])

    # compared: half the rate in a copy of the run is a regression beyond the declared 10% threshold
    slower = json.loads(result.path.read_text())
    slower["records"][0]["metrics"]["fwd_gflops"] /= 2
    slower_path = tmp_path / "slower.json"
    slower_path.write_text(json.dumps(slower))
    capsys.readouterr()
    code = main(["compare", str(result.path), str(slower_path), "--fail-on", "fwd_gflops:10%", "--format", "json"])
    verdict = json.loads(capsys.readouterr().out)["cells"][0]["metrics"]["fwd_gflops"]
    assert code == 1 and verdict["verdict"] == "regressed" and verdict["fails"] and verdict["unit"] == "GFLOP/s"
    assert verdict["change"] == pytest.approx(-50.0)
    assert main(["compare", str(result.path), str(result.path), "--fail-on", "fwd_gflops:10%"]) == 0

    # exported: in each benchmark's extra_info
    out = tmp_path / "export.json"
    assert main(["export", str(result.path), "--format", "pytest-benchmark", "-o", str(out)]) == 0
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["extra_info"]["fwd_gflops"] == pytest.approx(m["fwd_gflops"])
