"""End to end: the CLI runs a few real cells of seq-backbones and stores a scaling analysis with them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench.store import load_results, load_run

pytestmark = pytest.mark.slow


def test_quick_run_three_families_with_scaling_analysis(tmp_path: Path) -> None:
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(Path(bench.__file__).resolve().parent.parent), "COLUMNS": "200"}
    args = ["run", "seq-backbones", "--profile", "quick", "--device", "cpu", "--family", "lstm,transformer,gru_seq2seq",
            "--tier", "100k", "--out", str(out), "--no-report"]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = (out / "seq-backbones").glob("*.json")
    df = load_results(out)
    assert sorted(set(df.family)) == ["gru_seq2seq", "lstm", "transformer"] and set(df.status) == {"ok"}
    assert sorted(set(df.seq_len)) == [64, 256]
    for row in df.itertuples():
        assert abs(row.backbone_params / row.target_params - 1) <= 0.05
        assert row.achieved_params == row.backbone_params < row.params
        assert row.macs_per_token == pytest.approx(row.macs / row.seq_len)
        assert row.tokens_per_s == pytest.approx(row.seq_len * 1000.0 / row.latency_p50_ms, rel=1e-6)
        assert row.peak_memory_mb > 0
    analysis = load_run(path)["analysis"]
    fits = {(f["family"], f["metric"]): f for f in analysis["fits"]}
    assert fits[("lstm", "macs")]["exponent"] == pytest.approx(1.0, abs=1e-3)
    assert 1 < fits[("transformer", "macs")]["exponent"] < 2
    assert ("transformer", "latency_p50_ms") in fits
    assert {(c["a"], c["b"]) for c in analysis["crossovers"]} >= {("transformer", "lstm")}
