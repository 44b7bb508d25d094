"""pytest-benchmark export: its numbers match pytest-benchmark's own Stats, and its compare command reads the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _runfiles import record, run_file
from pytest_benchmark.stats import Stats

from bench.cli import main
from bench.export import pytest_benchmark_stats, to_pytest_benchmark
from bench.store import load_run


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 8, 9, 40])
def test_stats_match_pytest_benchmark(n: int) -> None:
    samples = list(np.random.default_rng(n).lognormal(-4, 0.3, n))
    samples[0] *= 5  # an outlier
    ref = Stats()
    for x in samples:
        ref.update(x)
    ours = pytest_benchmark_stats(samples)
    for field in Stats.fields:
        assert ours[field] == pytest.approx(getattr(ref, field)), field
    assert ours["data"] == samples and ours["iterations"] == 1


def test_export_shape(tmp_path: Path) -> None:
    run = run_file(tmp_path, [record("m1", [10.0, 12.0, 11.0]), record("m2", status="failed")])
    out, left_out = to_pytest_benchmark(load_run(run))
    (b,) = out["benchmarks"]
    assert left_out == ["s/tiny/fam/m2/cpu/fp32/b1/3x8x8/infer"]
    assert b["stats"]["median"] == pytest.approx(0.011) and b["stats"]["rounds"] == 3  # ms -> s
    assert b["extra_info"]["macs"] == 4_089_184_256 and b["extra_info"]["cell"].endswith("/m1/cpu/fp32/b1/3x8x8/infer")
    assert out["machine_info"]["processor"] == "Test CPU 9000"
    assert out["commit_info"] == {"id": "abc123", "time": None, "author_time": None, "dirty": True,
                                  "project": "aigc-bench", "branch": "(unknown)"}  # fmt: skip


def _pytest_benchmark_cli() -> list[str]:
    exe = shutil.which("pytest-benchmark") or shutil.which("py.test-benchmark")
    if exe:
        return [exe]
    return [
        sys.executable,
        "-c",
        "import sys; from pytest_benchmark.cli import main; sys.argv[0] = 'pytest-benchmark'; main()",
    ]


def test_pytest_benchmark_compare_reads_the_export(tmp_path: Path, capsys) -> None:
    base = run_file(tmp_path / "r", [record("m1", [10.0, 10.2, 9.9, 10.1]), record("m2", [20.0, 21.0, 19.5])])
    cur = run_file(tmp_path / "r", [record("m1", [11.0, 11.2, 10.9, 11.1]), record("m2", [20.0, 21.0, 19.5])])
    files = [tmp_path / "0001_base.json", tmp_path / "0002_current.json"]
    for run, f in zip((base, cur), files, strict=True):
        assert main(["export", "--format", "pytest-benchmark", str(run), "-o", str(f)]) == 0
    assert main(["export", "--format", "pytest-benchmark", str(base), "-o", str(files[0])]) == 2  # never overwritten
    assert json.loads(files[0].read_text())["benchmarks"][0]["name"] == "fam[tiny-m1-cpu-fp32-b1-3x8x8-infer]"

    r = subprocess.run([*_pytest_benchmark_cli(), "compare", *map(str, files)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Failed to load" not in out  # pytest-benchmark only warns on files it cannot read
    assert "fam[tiny-m1-cpu-fp32-b1-3x8x8-infer]" in out and "fam[tiny-m2-cpu-fp32-b1-3x8x8-infer]" in out
    assert "0001_base" in out and "0002_current" in out
