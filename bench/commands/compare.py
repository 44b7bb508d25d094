"""``aigc-bench compare BASELINE CURRENT``: per-cell, per-metric verdicts; exit 1 on a regression.

BASELINE and CURRENT are run files, folders of run files, or baseline names (see `aigc-bench
baseline`). Latency is judged on the raw samples (Mann-Whitney U, corrected for the number of cells,
plus a bootstrap CI of the median ratio) AND the --fail-on threshold, relative to the machine-speed
reference timed around each measurement (so a slower machine is not a regression); memory on the threshold alone
(one measurement per run); MACs and params exactly. When the machines differ (CPU, GPU, torch,
threads, CUDA) nothing fails unless --allow-env-change is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.errors import UsageError

FORMATS = ("table", "md", "json")


def register(sub: argparse._SubParsersAction) -> None:
    from bench.baselines import DEFAULT_DIR
    from bench.compare import CORRECTIONS, DEFAULT_FAIL_ON, METRICS

    # the metrics and their units come from the metric catalogue (bench.catalogue): a new metric is listed too
    by_unit = {u: ", ".join(n for n, s in METRICS.items() if s.threshold_unit == u) for u in ("%", "pt")}
    p = sub.add_parser("compare", help="compare two runs cell by cell; exit 1 on a regression", description=__doc__)
    p.add_argument("baseline", help="run file, folder of run files, or baseline name")
    p.add_argument("current", help="run file, folder of run files, or baseline name")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="SPEC",
                   help=f"METRIC:VALUE list; metrics {by_unit['%']} (in %%) and {by_unit['pt']} (in pt); "
                        f"unnamed metrics are reported but never fail (default: {DEFAULT_FAIL_ON.replace('%', '%%')})")  # fmt: skip
    p.add_argument(
        "--format", choices=FORMATS, default="table", help="table (terminal), md (pull-request comment) or json"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after correction (default: 0.05)")
    p.add_argument("--correction", choices=CORRECTIONS, default="holm",
                   help="multiple-testing correction: holm (family-wise, default) or bh (Benjamini-Hochberg, FDR)")  # fmt: skip
    p.add_argument("--no-speed-adjust", dest="speed_adjust", action="store_false",
                   help="judge latency on the raw samples, not relative to the machine-speed reference timed "
                        "around each measurement (the adjustment is made only between runs of the same environment)")  # fmt: skip
    p.add_argument("--allow-env-change", action="store_true",
                   help="let regressions fail the build even when CPU, GPU, torch, threads or CUDA differ")  # fmt: skip
    p.add_argument("--allow-execution-change", action="store_true",
                   help="judge the current run's execution against the baseline's other one (e.g. compile against "
                        "eager; one execution each side); without it, sides that share no execution exit 2")  # fmt: skip
    p.add_argument("--allow-host-change", action="store_true",
                   help="judge the latency of a cell measured on different hosts on the two sides (Ray runs record "
                        "each cell's host); without it, such verdicts are shown and never fail")  # fmt: skip
    p.add_argument(
        "--baselines-dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where baseline names are looked up (default: {DEFAULT_DIR})",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the report (in --format) to this file")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bench.compare import compare, load_side, parse_fail_on, print_table, table_text, to_markdown

    thresholds = parse_fail_on(args.fail_on)  # bad syntax fails before any file is read
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    baseline = load_side(args.baseline, args.baselines_dir)
    current = load_side(args.current, args.baselines_dir)
    report = compare(baseline, current, thresholds=thresholds, alpha=args.alpha, correction=args.correction,
                     allow_env_change=args.allow_env_change, speed_adjust=args.speed_adjust,
                     allow_execution_change=args.allow_execution_change,
                     allow_host_change=args.allow_host_change)  # fmt: skip
    if args.format == "json":
        text = json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n"
    elif args.format == "md":
        text = to_markdown(report)
    else:
        text = None
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        print_table(report)
    if args.output is not None:
        _write(args.output, text if text is not None else table_text(report))
    return report.exit_code


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
