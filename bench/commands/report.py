"""``aigc-bench report [PATHS...]``: tables and figures (Markdown, CSV, LaTeX, HTML) from stored results.

One report set per suite: OUT/<suite>/<run stem>.{md,csv,tex,html}, figures <stem>.<figure>.{png,svg}
and <stem>.manifest.json. Of several runs of a suite, only the newest is reported (a quick run of your own
never joins a published one); --combine combines them into combined-<N>runs-<hash>.* (shards, reruns of one
setup), and a table never ranks cells of different profiles against each other.
The same results always give the same file names and byte-identical files. A file this report did
not write is never replaced without --force.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write tables and figures from result files", description=__doc__)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="result files or folders (default: ./results)")
    p.add_argument("--format", default="md,csv,latex,html", metavar="LIST",
                   help="comma list of md, csv, latex, html (default: all)")  # fmt: skip
    p.add_argument("--out", default=Path("reports"), type=Path, help="reports folder (default: ./reports)")
    p.add_argument("--reference-family", default=None, metavar="NAME",
                   help="family the ratio columns compare against (default: resnet for vision suites, lstm for sequence suites)")  # fmt: skip
    p.add_argument("--combine", action="store_true",
                   help="combine every run of a suite found into one report (default: the newest run only)")  # fmt: skip
    p.add_argument(
        "--force", action="store_true", help="replace existing report files even when this report did not write them"
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.report import parse_formats, write_reports
    from bench.report.escape import printable

    formats = parse_formats(args.format)  # a bad name fails before anything is read
    paths = args.paths or [Path("results")]
    left_out: list[str] = []
    written = write_reports(paths, args.out, formats, args.reference_family, "overwrite" if args.force else "error",
                            newest_only=not args.combine, left_out=left_out)  # fmt: skip
    console = Console(highlight=False)
    for line in left_out:
        Console(stderr=True, highlight=False).print(f"note: {printable(line)}", markup=False, soft_wrap=True)
    for p in written:
        console.print(f"report: {printable(p)}", markup=False, soft_wrap=True)  # the path holds the run's file name
    return 0
