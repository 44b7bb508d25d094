"""Does ``aigc-bench compare`` stay quiet on no change and speak up on a real one? (A/A and A/B)

A/A: ``--reps`` times, two back-to-back quick runs of cv-backbones on the same machine and code are
compared (``aigc-bench compare A B``). Nothing changed, so every reported regression is a false
alarm. Target: at most 1 repetition of 10 reports one (exit 1).

A/B: a baseline run with torch's default thread count, then a run with ``--threads 1`` -- a real
slowdown (>= 10% on a 2-core machine). Threads are one of the environment fields that make runs
"not comparable", so the comparison is made with ``--allow-env-change``; it must find regressions
and exit 1. (Without the flag it must say the environment changed and exit 0: checked too.)

    python benchmarks/compare_aa_ab.py [--reps 10] [--family resnet,vit] [--out /tmp/aa-ab] [--skip-ab]

The A/B premise holds on a quiet machine only: when other jobs load the cores, the default
thread count oversubscribes them and ``--threads 1`` can be the faster run (observed at a load
average of 7 on 2 cores). The load average is printed with every run.

Restrict ``--family`` to keep it short: each run builds and times one model per family. Timings on
a shared machine are noisy; the script prints every figure it bases its verdicts on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def aigc_bench(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def run_suite(out: Path, args: argparse.Namespace, *extra: str) -> Path:
    """One quick run into ``out``; returns its run file (read even if the CLI's summary printing fails)."""
    cmd = ["run", args.suite, "--profile", args.profile, "--device", "cpu", "--out", str(out), "--no-report", *extra]
    if args.family:
        cmd += ["--family", args.family]
    if args.tier:
        cmd += ["--tier", args.tier]
    t0 = time.monotonic()
    r = aigc_bench(*cmd)
    files = sorted((out / args.suite).glob("*.json"))
    if not files:
        sys.exit(f"run failed (exit {r.returncode}) without a results file:\n{r.stdout}\n{r.stderr}")
    doc = json.loads(files[-1].read_text())
    bad = [f"{x['key']['model']}: {x['error']}" for x in doc["records"] if x["status"] != "ok"]
    if bad:
        print(f"  warning: {len(bad)} cells not ok: {'; '.join(bad)}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # other jobs on the machine skew every timing
    print(f"  ran {out.name}: {len(doc['records'])} cells in {time.monotonic() - t0:.0f} s (exit {r.returncode}); "
          f"load average {load} on {os.cpu_count()} CPUs")  # fmt: skip
    return files[-1]


def compare(base: Path, cur: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    r = aigc_bench("compare", str(base), str(cur), "--format", "json", *flags)
    if r.returncode not in (0, 1):
        sys.exit(f"compare failed (exit {r.returncode}): {r.stderr}")
    return r.returncode, json.loads(r.stdout)


def latency_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"cell": c["id"].split("/", 1)[1], **c["metrics"]["latency"]}
        for c in report["cells"]
        if "latency" in c["metrics"]
    ]


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def aa(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    print(f"A/A: {args.reps} repetitions of two back-to-back runs")
    reps = []
    for i in range(1, args.reps + 1):
        a = run_suite(out / f"aa{i:02d}" / "a", args)
        b = run_suite(out / f"aa{i:02d}" / "b", args)
        code, rep = compare(a, b, "--fail-on", args.fail_on)
        lat = latency_rows(rep)
        changes = [abs(m["change"]) for m in lat if m["change"] is not None]
        row = {
            "rep": i,
            "exit": code,
            "cells": rep["counts"]["compared"],
            "regressed": rep["counts"]["regressed"],
            "failing": rep["counts"]["failing"],
            "too_noisy": rep["counts"]["too_noisy"],
            "improved": rep["counts"]["improved"],
            "max_abs_latency_change_pct": max(changes, default=None),
            "median_abs_latency_change_pct": statistics.median(changes) if changes else None,
            "regressed_metrics": [
                f"{c['id'].split('/', 1)[1]}:{k}"
                for c in rep["cells"]
                for k, m in c["metrics"].items()
                if m["verdict"] == "regressed"
            ],  # fmt: skip
        }
        reps.append(row)
        print(f"  rep {i:2d}: exit {code}, {row['cells']} cells, {row['regressed']} regressed, {row['too_noisy']} too noisy, "
              f"{row['improved']} improved; |latency change| median {fmt_pct(row['median_abs_latency_change_pct'])}, "
              f"max {fmt_pct(row['max_abs_latency_change_pct'])} {' '.join(row['regressed_metrics'])}")  # fmt: skip
    n_alarm = sum(r["exit"] == 1 for r in reps)
    verdict = "PASS" if n_alarm <= 0.1 * args.reps else "FAIL"  # the target: a false-alarm rate of at most 1 in 10
    print(f"A/A: {n_alarm} of {args.reps} repetitions reported a regression (target <= 1 of 10): {verdict}")
    return {"repetitions": reps, "false_alarms": n_alarm, "verdict": verdict}


def ab(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    print("A/B: default threads (baseline) vs --threads 1 (current)")
    base = run_suite(out / "ab" / "base", args)
    cur = run_suite(out / "ab" / "threads1", args, "--threads", "1")
    blocked_code, blocked = compare(base, cur, "--fail-on", args.fail_on)
    code, rep = compare(base, cur, "--fail-on", args.fail_on, "--allow-env-change")
    env = ", ".join(f"{e['field']} {e['baseline']!r} -> {e['current']!r}" for e in rep["env_changes"]) or "none"
    print(f"  environment changes: {env}")
    for m in latency_rows(rep):
        p = "" if m["p_adjusted"] is None else f"p(adj)={m['p_adjusted']:.2g}"
        print(
            f"  {m['cell']}: {m['baseline']:.2f} -> {m['current']:.2f} ms ({fmt_pct(m['change'])}) {m['verdict']} {p}"
        )
    slow = [m["change"] for m in latency_rows(rep) if m["change"] is not None]
    ok = code == 1 and blocked_code == 0 and blocked["env_blocked"]
    print(f"A/B: exit {code} with --allow-env-change ({rep['counts']['regressed']} regressed of {rep['counts']['compared']}); "
          f"exit {blocked_code} without it (env blocked: {blocked['env_blocked']}); median slowdown "
          f"{fmt_pct(statistics.median(slow) if slow else None)}: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return {"exit": code, "exit_without_allow": blocked_code, "counts": rep["counts"], "latency": latency_rows(rep),
            "env_changes": rep["env_changes"], "verdict": "PASS" if ok else "FAIL"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="cv-backbones")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--family", default="resnet,vit", help="comma list of families ('' for all)")
    ap.add_argument("--tier", default="tiny", help="comma list of tiers ('' for the profile's)")
    ap.add_argument("--reps", type=int, default=10, help="A/A repetitions")
    ap.add_argument("--fail-on", default="latency:5%,memory:5%,macs:0%,accuracy:1pt")
    ap.add_argument(
        "--out", type=Path, default=Path("/tmp/aigc-bench-aa-ab"), help="results folder (one per invocation)"
    )
    ap.add_argument("--skip-aa", action="store_true")
    ap.add_argument("--skip-ab", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    out = args.out / time.strftime("%Y%m%dT%H%M%S")
    print(
        f"suite {args.suite}, profile {args.profile}, families {args.family or 'all'}, fail on {args.fail_on}; results in {out}"
    )
    figures: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_aa:
        figures["aa"] = aa(args, out)
    if not args.skip_ab:
        figures["ab"] = ab(args, out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
