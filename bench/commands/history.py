"""``aigc-bench history RESULTS_DIR|BASELINES [--metric M] [--cell PATTERN] [-o DIR]``: series and steps.

One series per cell of ``--metric`` (default ``latency_p50_ms``) over the stored runs, oldest first; change
points by binary segmentation (``bench.history``). Writes ``DIR/history.md`` (default ``reports/history``)
and a PNG per cell that stepped; the HTML reports under ``reports/`` link to it. Exit 0 whether or not a
step was found (the table says); 2 on bad input (no run files, unknown metric, no matching cell).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._args import name, name_list, path

DEFAULT_OUT = Path("reports") / "history"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="series of a metric over stored runs, and where each stepped",
                       description=__doc__)  # fmt: skip
    p.add_argument("source", help="a folder of run files (results/), a baselines folder, a run file or a baseline name")
    p.add_argument("--metric", default="latency_p50_ms", type=name, help="a metric column (default latency_p50_ms)")
    p.add_argument("--cell", default=None, type=name_list, metavar="PATTERNS",
                   help="cell ids or shell patterns, comma list (e.g. '*resnet*'); default: every cell")  # fmt: skip
    p.add_argument("--min-change", default=5.0, type=float, metavar="PCT",
                   help="smallest step reported, in percent (default 5)")  # fmt: skip
    p.add_argument("-o", "--out", default=DEFAULT_OUT, type=path, metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT}: the HTML reports beside it link to it)")  # fmt: skip
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.errors import UsageError
    from bench.history import load_series, write_history
    from bench.report.escape import term

    if not 0 < args.min_change < 1000:  # NaN fails too
        raise UsageError(f"--min-change must be a percentage above 0, got {args.min_change}")
    series = load_series(args.source, args.metric, args.cell or (), min_change=args.min_change / 100)
    written = write_history(series, args.out)
    out = Console()
    steps = [(s, st) for s in series for st in s.steps]
    for s, st in steps:
        p = s.points[st.index]
        out.print(f"{term(s.cell)}: {st.change_pct:+.1f}% at run {st.index} ({term(p.run_id)}, commit "
                  f"{term((p.commit or '?')[:12])})", soft_wrap=True, highlight=False)  # fmt: skip
    out.print(f"{len(series)} cells, {len(steps)} steps: {term(written[0])}", soft_wrap=True, highlight=False)
    return 0
