"""``aigc-bench merge FILES... -o RUN``: join the shard files of one run into one run file.

Refuses (exit 2) overlapping shards (a cell twice), shards of different suite definitions or
profiles, a malformed file (also inside a folder: never skipped), and an existing output file
(never overwritten).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join shard files (run --shard K/N) into one run file", description=__doc__)
    p.add_argument("files", nargs="+", type=Path, help="shard run files (or folders of them)")
    p.add_argument("-o", "--output", required=True, type=Path, help="the merged run file to create (must not exist)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.merge import merge_files
    from bench.report.escape import term

    path, doc, warnings = merge_files(args.files, args.output)  # reads and validates every file once
    console = Console(stderr=True)
    for w in warnings:  # they quote file names and environment strings from the (untrusted) files: no markup
        console.print(f"[yellow]warning:[/yellow] {term(w)}", soft_wrap=True)
    n_files, n_cells = len(doc["merged_from"]), len(doc["records"])
    Console().print(f"merged {n_files} files, {n_cells} cells: [bold]{term(path)}[/bold]", soft_wrap=True)
    return 0
