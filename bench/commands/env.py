"""``aigc-bench env``: print the environment fingerprint stored with every run."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print the environment fingerprint that goes into every record")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bench.env import fingerprint

    fp = fingerprint()
    if args.json:
        print(json.dumps(fp, indent=2, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="aigc-bench environment", show_header=False)
    for k, v in fp.items():
        t.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
    Console().print(t)
    return 0
