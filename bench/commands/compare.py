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
from typing import TYPE_CHECKING

from bench.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from bench.compare import ComparisonReport

FORMATS = ("table", "md", "json")


def register(sub: argparse._SubParsersAction) -> None:
    from bench.baselines import DEFAULT_DIR
    from bench.compare import CORRECTIONS, DEFAULT_FAIL_ON

    p = sub.add_parser("compare", help="compare two runs cell by cell; exit 1 on a regression", description=__doc__)
    p.add_argument("baseline", help="run file, folder of run files, or baseline name")
    p.add_argument("current", help="run file, folder of run files, or baseline name")
    p.add_argument("--fail-on", default=DEFAULT_FAIL_ON, metavar="SPEC",
                   help=f"METRIC:VALUE list; metrics latency, memory, macs, params (in %%) and accuracy (in pt); "
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
    p.add_argument(
        "--baselines-dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where baseline names are looked up (default: {DEFAULT_DIR})",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the report (in --format) to this file")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bench.compare import compare, load_side, parse_fail_on, to_markdown

    thresholds = parse_fail_on(args.fail_on)  # bad syntax fails before any file is read
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    baseline = load_side(args.baseline, args.baselines_dir)
    current = load_side(args.current, args.baselines_dir)
    report = compare(baseline, current, thresholds=thresholds, alpha=args.alpha, correction=args.correction,
                     allow_env_change=args.allow_env_change, speed_adjust=args.speed_adjust)  # fmt: skip
    if args.format == "json":
        text = json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n"
    elif args.format == "md":
        text = to_markdown(report)
    else:
        text = None
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        _print_table(report)
    if args.output is not None:
        _write(args.output, text if text is not None else _table_text(report))
    return report.exit_code


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _table_text(report: ComparisonReport) -> str:
    import io

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())  # capture only
    _print_table(report, console)
    return console.export_text()


_STYLE = {"regressed": "bold red", "improved": "green", "too noisy": "yellow", "unchanged": "dim"}


def _print_table(report: ComparisonReport, console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from bench.compare import (
        ADDED,
        COMPARED,
        FAILED,
        METRICS,
        REMOVED,
        cell_label,
        format_change,
        format_value,
        speed_text,
        verdict_text,
    )
    from bench.report.escape import term as escape  # markup escaped AND control characters shown: file strings

    console = console or Console()
    style = "bold red" if report.exit_code else ("yellow" if report.env_blocked else "bold green")
    console.print(f"[{style}]{report.summary()}[/{style}]")
    if report.env_changes:
        what = escape("; ".join(str(e) for e in report.env_changes))
        tail = "verdicts shown, nothing fails (--allow-env-change to gate)" if report.env_blocked else "compared anyway"
        console.print(f"[yellow]environment changed[/yellow] ({what}): {tail}")
    for n in report.notes:
        console.print(f"[yellow]note:[/yellow] {escape(n)}")
    base, cur = report.baseline, report.current  # labels and run ids come from the user and the files
    gates = ", ".join(str(t) for t in report.thresholds if t.gating)
    console.print(f"baseline {escape(base.label)} ({escape(', '.join(base.run_ids))}) vs current {escape(cur.label)} "
                  f"({escape(', '.join(cur.run_ids))}); fail on {escape(gates)}; alpha {report.alpha:g}, "
                  f"{escape(report.correction)}")  # fmt: skip
    t = Table(title="cells (change vs baseline)")
    t.add_column("cell")
    for name in METRICS:
        t.add_column(name, justify="right")
    for c in report.cells:
        if c.status != COMPARED:
            st = "red" if c.status == FAILED else "cyan"
            t.add_row(escape(cell_label(c.key)), f"[{st}]{escape(c.status)}[/{st}]", *([""] * (len(METRICS) - 1)))
            continue
        vals = []
        for name in METRICS:
            m = c.metric(name)
            vals.append(
                ""
                if m is None
                else f"[{_STYLE[m.verdict.value]}]{format_change(m)} {m.verdict.value if m.verdict.value != 'unchanged' else '~'}[/]"
            )
        t.add_row(escape(cell_label(c.key)), *vals)
    console.print(t)
    notable = report.regressions + report.improvements + report.noisy + report.explained
    if notable:
        d = Table(title="regressions, improvements, too-noisy and explained changes")
        for col in ("cell", "metric", "baseline", "current", "change", "verdict", "p (adj.)", "CI", "how"):
            d.add_column(col, justify="right" if col in ("baseline", "current", "change", "p (adj.)") else "left")
        for c, m in notable:
            ci = (
                ""
                if m.ci is None
                else (
                    f"[{m.ci[0]:.3f}, {m.ci[1]:.3f}]"
                    if m.metric == "latency"
                    else f"[{m.ci[0]:+.2f}, {m.ci[1]:+.2f}] pt"
                )
            )
            d.add_row(escape(cell_label(c.key)), m.metric, format_value(m.metric, m.baseline), format_value(m.metric, m.current),
                      format_change(m), f"[{_STYLE[m.verdict.value]}]{verdict_text(m)}[/]",
                      "" if m.p_adjusted is None else f"{m.p_adjusted:.2g}", escape(ci),
                      escape("; ".join(x for x in (speed_text(m), m.note or m.method) if x)))  # fmt: skip
        console.print(d)
    for status in (FAILED, ADDED, REMOVED):
        cs = report.with_status(status)
        if cs:
            console.print(f"[bold]{status}[/bold] ({len(cs)}): " + ", ".join(escape(cell_label(c.key)) for c in cs))
            for c in cs:
                if status == FAILED and c.error:
                    console.print(f"  {escape(cell_label(c.key))}: {escape(c.error)}")
