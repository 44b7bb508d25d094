"""End to end: the CLI runs a few real cells of cv-backbones into a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench.store import load_results, load_run

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``aigc-bench`` as a user would, with the bench package under test importable."""
    env = {**os.environ, "PYTHONPATH": str(Path(bench.__file__).resolve().parent.parent), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_quick_run_two_families_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "res"
    # --tier tiny: the quick profile's micro tier trains for accuracy (tests/unit/test_accuracy.py covers it).
    args = ("run", "cv-backbones", "--profile", "quick", "--device", "cpu", "--family", "resnet,vit",
            "--tier", "tiny", "--out", str(out), "--no-report")  # fmt: skip
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = (out / "cv-backbones").glob("*.json")
    assert str(path.name) in r.stdout.replace("\n", "")
    doc = load_run(path)
    assert doc["finished_at"] and doc["profile"] == "quick" and doc["env"]["torch"]
    df = load_results(out)
    assert sorted(df.family) == ["resnet", "vit"] and set(df.status) == {"ok"}
    for row in df.itertuples():
        assert abs(row.params / row.target_params - 1) <= 0.10  # matched size
        assert row.macs > 0 and row.flops == 2 * row.macs
        assert row.latency_p50_ms > 0 and len(row.latency_samples) >= 3 and row.peak_memory_mb > 0
        assert row.throughput == pytest.approx(1000.0 / row.latency_p50_ms, rel=1e-6)
    assert "resnet" in r.stdout and "p50 (ms)" in r.stdout  # the summary table

    r2 = cli(*args, "--resume", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert "2 cells resumed" in r2.stdout.replace("\n", " ")
    assert list((out / "cv-backbones").glob("*.json")) == [path]
    assert len(load_run(path)["records"]) == 2
