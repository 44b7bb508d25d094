"""``aigc-bench baseline save RUN --name NAME`` / ``aigc-bench baseline list``: named runs to compare against.

A baseline is a copy of a run file in the baselines folder (default ./results/baselines/);
``aigc-bench compare`` accepts its name wherever a path does not exist. Saving never overwrites an
existing baseline, nor saves a run with INVALID latency cells (exit 2), unless --force is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from bench.baselines import DEFAULT_DIR

    p = sub.add_parser("baseline", help="save or list named baselines for `compare`", description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    save = actions.add_parser("save", help="copy a run file into the baselines folder under a name")
    save.add_argument("run", help="a run file (merge shards first)")
    save.add_argument("--name", required=True, help="baseline name: letters, digits, '.', '_', '-' (e.g. main)")
    save.add_argument("--force", action="store_true",
                      help="replace an existing baseline of that name; save a run with INVALID latencies")  # fmt: skip
    save.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baselines folder (default: {DEFAULT_DIR})")
    save.set_defaults(handler=_save)
    ls = actions.add_parser("list", help="list saved baselines")
    ls.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baselines folder (default: {DEFAULT_DIR})")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_list)


def _save(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench.baselines import save_run

    path, doc = save_run(args.run, args.name, args.dir, force=args.force)  # validated once, up front
    console = Console()
    console.print(f"baseline [bold]{args.name}[/bold]: {path}")
    if doc.get("finished_at") is None:
        console.print("[yellow]warning:[/yellow] the run never finished (killed?); some cells may be missing")
    return 0


def _list(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from bench.baselines import list_baselines
    from bench.report.escape import term

    items = list_baselines(args.dir)
    if args.json:
        print(json.dumps([{**b.__dict__, "path": str(b.path)} for b in items], indent=1))
        return 0
    console = Console()
    if not items:
        console.print(f"no baselines in {term(args.dir)} (save one with `aigc-bench baseline save RUN --name NAME`)")
        return 0
    t = Table(title=f"baselines in {term(args.dir)}")
    for c in ("name", "suite", "profile", "date", "host", "cells"):
        t.add_column(c, justify="right" if c == "cells" else "left")
    for b in items:  # every field comes from a (possibly hostile) run file: escaped for rich
        t.add_row(*(term(x) for x in (b.name, b.suite, b.profile, b.started_at or "-", b.host or "-")),
                  str(b.cells) + ("" if b.finished else " (unfinished)"))  # fmt: skip
    console.print(t)
    return 0
