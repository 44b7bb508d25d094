"""Does ``aigc-bench compare`` stay quiet on no change and speak up on a real one? (A/A and A/B)

A/A: ``--reps`` times, two back-to-back quick runs of cv-backbones on the same machine and code are
compared (``aigc-bench compare A B``). Nothing changed, so every reported regression is a false
alarm. Target: at most 1 repetition of 10 reports one (exit 1).

Each A/A pair is also compared with ``--no-speed-adjust``, side by side: how many false alarms the
machine-speed reference vetoed.

A/B: a baseline run with torch's default thread count, then a run with ``--threads 1`` -- a real
slowdown (>= 10% on a 2-core machine). Threads are one of the environment fields that make runs
"not comparable", so the comparison is made with ``--allow-env-change``; it must find regressions
and exit 1. (Without the flag it must say the environment changed and exit 0: checked too.)

A/B variant: the same run twice, the second with one family's forward made ``--slowdown`` slower
(``benchmarks/slowdown/sitecustomize.py`` spins after each forward): on the same machine and
environment, so the machine-speed reference is in play and must not veto it. That family must
regress (exit 1), the others not.

    python benchmarks/compare_aa_ab.py [--reps 10] [--family resnet,vit] [--out /tmp/aa-ab] [--skip-ab]
                                       [--slowdown resnet:0.10] [--skip-variant] [--variant-reps 1]
                                       [--repeat K] [--metric instructions]

``--repeat K`` runs every cell in K processes (``aigc-bench run --repeat``), so ``compare`` tests per-process
medians; issue 19's acceptance, quick profile on the 2-core VM:

    python benchmarks/compare_aa_ab.py --repeat 10 --reps 20 --skip-ab --slowdown resnet:0.05 --variant-reps 10 \
        --fail-on latency:3%,memory:5%,macs:0%,accuracy:1pt \
        --json /tmp/aa-ab-repeat10.json          # A/A <= 1 false alarm in 20; 5% caught in >= 9 of 10

With both A/A and the variant, the runs go in triples A, B, B' (B' = B with the family slowed): A-B is an
A/A pair, B-B' a variant pair, so 20 A/A and 10 variant pairs take 50 runs, not 60 (``--separate``: variant
pairs of their own).

The gate must sit below the effect it has to catch: the slowed variant is +5.0% by construction, so against
the default ``latency:5%`` it lands on the threshold and is caught about half the time, however many
processes are taken. Catching 5% means gating at about 3%, which ``--repeat 10`` must keep quiet in A/A.
    python benchmarks/compare_aa_ab.py --reps 20 --skip-ab --skip-variant --json /tmp/aa-ab-today.json  # today's
    python benchmarks/compare_aa_ab.py --metric instructions --reps 5 --skip-ab --slowdown resnet:0.05 \
        --variant-reps 2 --json /tmp/aa-ab-instr.json   # counts within 0.5% A/A; the 5% variant detected

Every figure carries the wall time of each run and pair, so the cost of K is read next to today's.

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


def aigc_bench(
    *args: str, timeout: float = 3600, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, with this checkout importable (``extra_env``: more variables, PYTHONPATH prepended)."""
    extra = dict(extra_env or {})
    path = os.pathsep.join(p for p in (extra.pop("PYTHONPATH", ""), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **extra, "PYTHONPATH": path, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


WALL: dict[Path, float] = {}  # run file -> seconds its run took


def run_suite(out: Path, args: argparse.Namespace, *extra: str, extra_env: dict[str, str] | None = None) -> Path:
    """One quick run into ``out``; returns its run file (read even if the CLI's summary printing fails)."""
    cmd = ["run", args.suite, "--profile", args.profile, "--device", "cpu", "--out", str(out), "--no-report", *extra]
    if args.repeat > 1:
        cmd += ["--repeat", str(args.repeat)]
    if args.metric:
        cmd += ["--metric", args.metric]
    if args.family:
        cmd += ["--family", args.family]
    if args.tier:
        cmd += ["--tier", args.tier]
    t0 = time.monotonic()
    r = aigc_bench(*cmd, extra_env=extra_env)
    files = sorted((out / args.suite).glob("*.json"))
    if not files:
        sys.exit(f"run failed (exit {r.returncode}) without a results file:\n{r.stdout}\n{r.stderr}")
    doc = json.loads(files[-1].read_text())
    bad = [f"{x['key']['model']}: {x['error']}" for x in doc["records"] if x["status"] != "ok"]
    if bad:
        print(f"  warning: {len(bad)} cells not ok: {'; '.join(bad)}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # other jobs on the machine skew every timing
    WALL[files[-1]] = time.monotonic() - t0
    print(f"  ran {out.name}: {len(doc['records'])} cells in {WALL[files[-1]]:.0f} s (exit {r.returncode}); "
          f"load average {load} on {os.cpu_count()} CPUs")  # fmt: skip
    return files[-1]


def instruction_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cell": c["id"].split("/", 1)[1], **c["metrics"]["instructions"]} for c in report["cells"]
            if "instructions" in c["metrics"]]  # fmt: skip


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
        reps.append(_aa_pair(args, i, a, b))
    return _aa_summary(args, reps)


def _aa_pair(args: argparse.Namespace, i: int, a: Path, b: Path) -> dict[str, Any]:
    """Compare one A/A pair (with and without the machine-speed adjustment) and print its line."""
    code, rep = compare(a, b, "--fail-on", args.fail_on)
    raw_code, raw_rep = compare(a, b, "--fail-on", args.fail_on, "--no-speed-adjust")  # side by side
    lat = latency_rows(rep)
    changes = [abs(m["change"]) for m in lat if m["change"] is not None]
    instr = [m["change"] for m in instruction_rows(rep) if m["change"] is not None]
    factors = [m["speed_factor"] for m in lat if m.get("speed_factor") is not None]
    row = {
        "rep": i,
        "exit": code,
        "wall_s": WALL[a] + WALL[b],
        "instructions_changes_pct": instr,
        "exit_without_speed_adjust": raw_code,
        "regressed_without_speed_adjust": raw_rep["counts"]["regressed"],
        "speed_factors": factors,
        "changes_pct": [m["change"] for m in lat],
        "machine_changes_pct": [m.get("machine_change") for m in lat],
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
    machine = " ".join(f"x{f:.3f}" for f in factors) or "n/a"
    raw = " ".join(fmt_pct(x) for x in row["changes_pct"])
    rel = " ".join(fmt_pct(x) for x in row["machine_changes_pct"])
    print(f"  rep {i:2d}: exit {code}, {row['cells']} cells, {row['regressed']} regressed, {row['too_noisy']} too noisy, "
          f"{row['improved']} improved; latency change {raw} (machine {machine}, relative to it {rel}); "
          f"without the speed adjustment: exit {raw_code}, {row['regressed_without_speed_adjust']} regressed "
          f"{' '.join(row['regressed_metrics'])}; pair wall time {row['wall_s']:.0f} s"
          + (f"; instructions {' '.join(fmt_pct(x) for x in instr)}" if instr else ""))  # fmt: skip
    return row


def _aa_summary(args: argparse.Namespace, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The A/A verdict over all pairs (target: at most 1 false alarm in 20)."""
    n_alarm = sum(r["exit"] == 1 for r in reps)
    n_raw = sum(r["exit_without_speed_adjust"] == 1 for r in reps)
    allowed = max(1, round(0.05 * args.reps))  # the target: at most 1 false alarm in 20 pairs
    verdict = "PASS" if n_alarm <= allowed else "FAIL"
    wall = statistics.median(r["wall_s"] for r in reps)
    instr_all = [abs(x) for r in reps for x in r["instructions_changes_pct"]]
    print(f"A/A: {n_alarm} of {args.reps} repetitions reported a regression (target <= {allowed}): {verdict}; "
          f"without the machine-speed adjustment: {n_raw} of {args.reps}; median wall time per pair {wall:.0f} s "
          f"(--repeat {args.repeat})" + (f"; instruction counts moved at most {max(instr_all):.3f}% (target <= 0.5%)"
                                         if instr_all else ""))  # fmt: skip
    return {
        "wall_s_per_pair": wall,
        "max_abs_instructions_change_pct": max(instr_all, default=None),
        "repetitions": reps,
        "false_alarms": n_alarm,
        "false_alarms_without_speed_adjust": n_raw,
        "verdict": verdict,
    }


def ab(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    print("A/B: default threads (baseline) vs --threads 1 (current)")
    base = run_suite(out / "ab" / "base", args)
    cur = run_suite(out / "ab" / "threads1", args, "--threads", "1")
    blocked_code, blocked = compare(base, cur, "--fail-on", args.fail_on)
    code, rep = compare(base, cur, "--fail-on", args.fail_on, "--allow-env-change")
    rows = latency_rows(rep)
    env = ", ".join(f"{e['field']} {e['baseline']!r} -> {e['current']!r}" for e in rep["env_changes"]) or "none"
    print(f"  environment changes: {env}")
    for m in rows:
        p = "" if m["p_adjusted"] is None else f"p(adj)={m['p_adjusted']:.2g}"
        print(
            f"  {m['cell']}: {m['baseline']:.2f} -> {m['current']:.2f} ms ({fmt_pct(m['change'])}) {m['verdict']} {p}"
        )
    slow = [m["change"] for m in rows if m["change"] is not None]
    ok = code == 1 and blocked_code == 0 and blocked["env_blocked"]
    print(f"A/B: exit {code} with --allow-env-change ({rep['counts']['regressed']} regressed of {rep['counts']['compared']}); "
          f"exit {blocked_code} without it (env blocked: {blocked['env_blocked']}); median slowdown "
          f"{fmt_pct(statistics.median(slow) if slow else None)}: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return {"exit": code, "exit_without_allow": blocked_code, "counts": rep["counts"], "latency": rows,
            "env_changes": rep["env_changes"], "verdict": "PASS" if ok else "FAIL"}  # fmt: skip


def ab_variant(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """A deliberately slower variant on the same machine and environment, ``--variant-reps`` pairs: the slowed
    family must regress (latency, or instruction counts with ``--metric instructions``), the others not."""
    family, fraction = args.slowdown.split(":")
    print(f"A/B: {args.variant_reps} pairs of the same run twice, the second with every {family} forward "
          f"{float(fraction):.0%} slower (benchmarks/slowdown/sitecustomize.py)")  # fmt: skip
    pairs = [_variant_pair(args, out / "abv" / f"{i:02d}", family) for i in range(1, args.variant_reps + 1)]
    return _variant_summary(args, pairs)


def _variant_summary(args: argparse.Namespace, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The A/B variant verdict over all pairs (target: caught in at least 9 of 10)."""
    caught = sum(p["verdict"] == "PASS" for p in pairs)
    inconclusive = sum(p["verdict"].startswith("INCONCLUSIVE") for p in pairs)
    need = max(1, -(-9 * args.variant_reps // 10))  # the target: caught in >= 9 of 10 pairs
    verdict = "PASS" if caught >= need else "FAIL"
    wall = statistics.median(p["wall_s"] for p in pairs)
    print(f"A/B variant: caught in {caught} of {args.variant_reps} pairs (target >= {need}; {inconclusive} "
          f"inconclusive): {verdict}; median wall time per pair {wall:.0f} s (--repeat {args.repeat})")  # fmt: skip
    return {"pairs": pairs, "caught": caught, "verdict": verdict, "wall_s_per_pair": wall}


def _variant_pair(args: argparse.Namespace, out: Path, family: str) -> dict[str, Any]:
    return _variant_compare(args, run_suite(out / "base", args), _slower_run(args, out / "slower"), out.name, family)


def _slower_run(args: argparse.Namespace, out: Path) -> Path:
    """A run with ``--slowdown``'s family made slower (benchmarks/slowdown/sitecustomize.py)."""
    env = {"PYTHONPATH": str(ROOT / "benchmarks" / "slowdown"), "AIGC_BENCH_SLOWDOWN": args.slowdown}
    return run_suite(out, args, extra_env=env)


def _variant_compare(args: argparse.Namespace, base: Path, cur: Path, name: str, family: str) -> dict[str, Any]:
    """Judge one variant pair: the slowed family must regress, the others not."""
    fail_on = args.fail_on + (",instructions:1%" if args.metric == "instructions" else "")
    code, rep = compare(base, cur, "--fail-on", fail_on)
    rows = latency_rows(rep)
    for m in rows:
        p = "" if m["p_adjusted"] is None else f"p(adj)={m['p_adjusted']:.2g}"
        f = "n/a" if m.get("speed_factor") is None else f"x{m['speed_factor']:.3f}"
        print(f"  {m['cell']}: {m['baseline']:.2f} -> {m['current']:.2f} ms, change {fmt_pct(m['change'])} "
              f"(machine {f}, relative to it {fmt_pct(m.get('machine_change'))}) {m['verdict']} {p}")  # fmt: skip
    judged = instruction_rows(rep) if args.metric == "instructions" else rows
    for m in instruction_rows(rep):
        print(f"  {m['cell']}: instructions {fmt_pct(m['change'])} {m['verdict']}")
    slowed = [m for m in judged if f"/{family}/" in f"/{m['cell']}/"]
    others = [m for m in judged if m not in slowed]
    ok = (
        code == 1
        and bool(slowed)
        and all(m["verdict"] == "regressed" for m in slowed)
        and not any(m["verdict"] == "regressed" for m in others)
    )
    factors = [m["speed_factor"] for m in rows if m.get("speed_factor") is not None]
    moved = bool(factors) and abs(statistics.median(factors) - 1.0) > 0.05
    # When the machine's own speed moved this much, compare rightly says "too noisy": no verdict here.
    verdict = "PASS" if ok else "INCONCLUSIVE (the machine's speed moved; rerun)" if moved else "FAIL"
    print(f"  pair {name}: exit {code}; {family} regressed: {all(m['verdict'] == 'regressed' for m in slowed)}, "
          f"others regressed: {sum(m['verdict'] == 'regressed' for m in others)}: {verdict}")  # fmt: skip
    return {"exit": code, "counts": rep["counts"], "latency": rows, "instructions": instruction_rows(rep),
            "verdict": verdict, "wall_s": WALL[base] + WALL[cur]}  # fmt: skip


def aa_and_variant(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A/A and the slower variant interleaved, in triples: A, B, B' (B' = B with the family slowed).

    A-B is an A/A pair and B-B' a variant pair, both back to back, so the variant needs one run per pair
    instead of two, and both figures come from the same stretch of the machine's time. Triples while
    variant pairs are wanted, then plain A/A pairs."""
    family, fraction = args.slowdown.split(":")
    print(f"A/A: {args.reps} repetitions of two back-to-back runs; A/B: the first {args.variant_reps} followed by "
          f"a run with every {family} forward {float(fraction):.0%} slower, compared with the run before it")  # fmt: skip
    reps, pairs = [], []
    for i in range(1, max(args.reps, args.variant_reps) + 1):
        a = run_suite(out / f"aa{i:02d}" / "a", args)
        b = run_suite(out / f"aa{i:02d}" / "b", args)
        if i <= args.reps:
            reps.append(_aa_pair(args, i, a, b))
        if i <= args.variant_reps:
            pairs.append(_variant_compare(args, b, _slower_run(args, out / f"aa{i:02d}" / "slower"), f"{i:02d}",
                                          family))  # fmt: skip
    aa_figures = _aa_summary(args, reps)
    print(f"A/B: {args.variant_reps} pairs of a run and the same run with every {family} forward "
          f"{float(fraction):.0%} slower, each slower run compared with the A/A pair's second run")  # fmt: skip
    return aa_figures, _variant_summary(args, pairs)


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
    ap.add_argument("--slowdown", default="resnet:0.10", help="FAMILY:FRACTION for the slower-variant A/B")
    ap.add_argument("--skip-variant", action="store_true", help="skip the slower-variant A/B")
    ap.add_argument("--variant-reps", type=int, default=1, help="pairs of the slower-variant A/B")
    ap.add_argument("--repeat", type=int, default=1, help="processes per latency cell (aigc-bench run --repeat)")
    ap.add_argument(
        "--metric",
        default=None,
        choices=("instructions",),
        help="also count instructions (valgrind) and judge them at 1%% (the variant judges them alone)",
    )
    ap.add_argument(
        "--separate",
        action="store_true",
        help="variant pairs of their own (two runs each) instead of A, B, slower-B triples",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    out = args.out / time.strftime("%Y%m%dT%H%M%S")
    print(
        f"suite {args.suite}, profile {args.profile}, families {args.family or 'all'}, fail on {args.fail_on}; results in {out}"
    )
    figures: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_aa and not args.skip_variant and not args.separate:
        figures["aa"], figures["ab_variant"] = aa_and_variant(args, out)
    elif not args.skip_aa:
        figures["aa"] = aa(args, out)
    if not args.skip_ab:
        figures["ab"] = ab(args, out)
    if not args.skip_variant and (args.skip_aa or args.separate):
        figures["ab_variant"] = ab_variant(args, out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
