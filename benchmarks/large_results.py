"""How long do report, merge, export and compare take on a very large (valid) results file?

Writes a synthetic run file of ``--cells`` cells with ``--samples`` latency samples each (the defaults,
4 cells of 1,000,000 samples, make a file of about 97 MB, the size an adversarial pass found
``compare`` unable to finish in 300 s), a second one with the same cells measured 2% slower, then
times each command as a user runs it (a fresh ``python -m bench.cli`` process, so the times include
start-up, reading and validating the file):

* ``report FILE``                             (every format, figures included)
* ``merge FILE -o MERGED``
* ``export --format pytest-benchmark FILE -o OUT``
* ``compare FILE OTHER --format json``

    python benchmarks/large_results.py [--cells 4] [--samples 1000000] [--out /tmp/large-results] [--timeout 600]

Prints one line per command: seconds, exit code, and the file size. A command that runs past
``--timeout`` is reported as such (the script goes on with the next one).

On the shared 2-core VM (loaded by other jobs), 97 MB files: report 3.3 s, merge 4.0 s, export 8.6 s,
compare 6.4 s. Before the bootstrap drew its medians directly (``bench.compare.RESAMPLE_MAX``),
compare did not finish in 300 s; what remains is reading, validating and writing JSON (linear).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def make_run(path: Path, cells: int, samples: int, *, scale: float, seed: int, run_id: str) -> None:
    """A valid run file: ``cells`` cells of ``samples`` lognormal latencies (median ~10 ms x ``scale``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for i in range(cells):
        lat = rng.lognormal(np.log(10.0 * scale), 0.05, samples).tolist()  # full precision: ~22 bytes a sample
        ref = (rng.lognormal(np.log(5.0), 0.02, 20)).round(6).tolist()
        srt = sorted(lat)
        key = {"suite": "large", "tier": "tiny", "family": f"fam{i}", "model": f"model{i}", "device": "cpu",
               "dtype": "fp32", "batch_size": 1, "input_shape": [3, 224, 224], "seq_len": None, "mode": "infer"}  # fmt: skip
        records.append({
            "key": key,
            "variant": {"builder": "x:y", "model_args": {}, "target_params": 1_000_000, "achieved_params": 1_000_000},
            "status": "ok", "error": None,
            "metrics": {"params": 1_000_000, "macs": 10**9, "latency_p50_ms": srt[samples // 2],
                        "latency_n": samples, "peak_memory_mb": 100.0, "speed_ref_ms": sorted(ref)[10],
                        "speed_ref_drift": 0.0, "speed_ref_kind": "refnet fp32 cpu 2t v1"},
            "samples": {"latency_ms": lat, "speed_ref_ms": ref},
            "notes": [], "started_at": "2026-01-01T00:00:00Z", "duration_s": 1.0,
        })  # fmt: skip
    doc = {
        "schema_version": 1, "kind": "aigc-bench/run", "run_id": run_id, "suite": "large",
        "suite_hash": "0123456789abcdef", "suite_definition": {}, "profile": "quick",
        "settings": {"devices": ["cpu"], "threads": 2, "shard": None, "cells": cells},
        "env": {"host": "bench", "cpu_model": "Synthetic", "threads": 2, "torch": "2.14.1", "python": "3.11.7",
                "os": "Linux-6.1-x86_64", "cpu_cores": 2, "git_commit": "abc"},
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T01:00:00Z", "records": records,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def timed(args: list[str], timeout: float) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, f"did not finish in {timeout:g} s"
    dt = time.perf_counter() - t0
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:160]
    return dt, f"exit {proc.returncode}" + (f" ({tail})" if proc.returncode not in (0, 1) else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/large-results"))
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty; choose another --out")
    a, b = out / "a" / "run.json", out / "b" / "run.json"
    t0 = time.perf_counter()
    make_run(a, args.cells, args.samples, scale=1.0, seed=1, run_id="a")
    make_run(b, args.cells, args.samples, scale=1.02, seed=2, run_id="b")
    print(f"generated 2 files of {args.cells} cells x {args.samples:,} samples, "
          f"{a.stat().st_size / 1e6:.0f} MB each, in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    steps = [
        ("report", ["report", str(a), "--out", str(out / "reports")]),
        ("merge", ["merge", str(a), "-o", str(out / "merged.json")]),
        ("export", ["export", "--format", "pytest-benchmark", str(a), "-o", str(out / "export.json")]),
        ("compare", ["compare", str(a), str(b), "--format", "json", "-o", str(out / "compare.json")]),
    ]
    for name, cli in steps:
        dt, what = timed(cli, args.timeout)
        print(f"{name:8s} {dt:7.1f} s  {what}", flush=True)


if __name__ == "__main__":
    main()
