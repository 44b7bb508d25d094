"""How long does a profile take with the old worker start and the new one, side by side? (issue 15)

Runs ``aigc-bench run SUITE --profile P --device cpu`` end to end (reports included, as a user sees it) in
interleaved rounds:

- old: a worker spawned per cell once the cell is due, every tier resolved at each start
  (``AIGC_BENCH_WORKER_START=spawn``, ``AIGC_BENCH_CACHE_DIR=off``): the start before issue 15;
- new: the next cell's worker started ahead, paused while a timed metric runs (``WorkerPool``), and resolved
  tiers read from the cache (filled once by an untimed run first; a cold-cache run is timed once too).

Then checks that both measured the same cells with the same statuses and identical params and MACs, and
prints the median ratio new/old of each cell's latency p50 and how many latencies each side judged
INVALID (fidelity: the ratio should sit near 1 and the counts agree). Timing needs a quiet machine: run it
alone, never next to other work.

    python benchmarks/worker_start.py [--suite cv-backbones] [--profile quick] [--rounds 2] [--threads N]
        [--family vgg,inception,...]

Exit status: 0 when the cells, statuses, params and MACs agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_once(suite: str, profile: str, out: Path, env: dict[str, str], threads: int | None,
             family: str | None = None) -> float:  # fmt: skip
    cmd = [sys.executable, "-m", "bench.cli", "run", suite, "--profile", profile, "--device", "cpu", "--out", str(out)]
    cmd += ["--threads", str(threads)] if threads else []
    cmd += ["--family", family] if family else []
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took


def records(out: Path, suite: str) -> dict[str, dict[str, Any]]:
    from bench.spec import CellKey

    (path,) = (out / suite).glob("*.json")
    return {CellKey.from_dict(r["key"]).id: r for r in json.loads(path.read_text())["records"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="cv-backbones")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--family", default=None, help="only these families (comma list), e.g. the 9 of issue 15's target")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="worker-start-") as tmp:
        root = Path(tmp)
        old = {"AIGC_BENCH_WORKER_START": "spawn", "AIGC_BENCH_CACHE_DIR": "off"}
        new = {"AIGC_BENCH_WORKER_START": "warm", "AIGC_BENCH_CACHE_DIR": str(root / "cache")}
        cold = run_once(args.suite, args.profile, root / "cold", new, args.threads, args.family)  # fills the cache
        print(f"new start, cold cache (resolves every tier once): {cold:.1f} s", flush=True)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(args.rounds):
            for side in ("old", "new") if i % 2 == 0 else ("new", "old"):  # neither side always goes second
                took = run_once(
                    args.suite,
                    args.profile,
                    root / f"{side}{i}",
                    old if side == "old" else new,
                    args.threads,
                    args.family,
                )
                times[side].append(took)
                print(f"round {i + 1} {side}: {took:.1f} s", flush=True)
        a, b = records(root / "old0", args.suite), records(root / "new0", args.suite)
    ok = set(a) == set(b)
    for cid in sorted(set(a) & set(b)):
        same = a[cid]["status"] == b[cid]["status"] and all(
            a[cid]["metrics"].get(m) == b[cid]["metrics"].get(m) for m in ("params", "macs")
        )
        if not same:
            print(f"DIFFERENT: {cid}: {a[cid]['status']} {b[cid]['status']}")
            ok = False
    ratios = [b[c]["metrics"]["latency_p50_ms"] / a[c]["metrics"]["latency_p50_ms"] for c in a
              if c in b and a[c]["metrics"].get("latency_p50_ms") and b[c]["metrics"].get("latency_p50_ms")]  # fmt: skip
    invalid = {k: sum(r["metrics"].get("latency_validity") == "invalid" for r in v.values()) for k, v in
               (("old", a), ("new", b))}  # fmt: skip
    print(f"\n{args.suite} --profile {args.profile}, {len(a)} cells, median of {args.rounds} rounds:")
    print("| start | seconds | runs |")
    print("|---|---|---|")
    for side in ("old", "new"):
        print(f"| {side} | {statistics.median(times[side]):.1f} | {', '.join(f'{t:.1f}' for t in times[side])} |")
    print(f"| new, cold cache | {cold:.1f} | 1 |")
    if ratios:
        print(f"latency p50 new/old: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
              f"max {max(ratios):.3f}) over {len(ratios)} cells; INVALID latencies: old {invalid['old']}, "
              f"new {invalid['new']}")  # fmt: skip
    print("cells, statuses, params and MACs: " + ("identical" if ok else "DIFFER"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
