"""``aigc-bench export --format pytest-benchmark RUN [-o FILE]``: a run in another tool's format.

pytest-benchmark: one benchmark per ok cell, statistics from the raw latency samples in seconds;
`pytest-benchmark compare FILE` reads it. Without -o the JSON goes to standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from bench.export import FORMATS

    p = sub.add_parser("export", help="export a run for other tools (pytest-benchmark)", description=__doc__)
    p.add_argument("run", type=Path, help="a run file")
    p.add_argument("--format", choices=FORMATS, required=True, help="output format")
    p.add_argument("-o", "--output", type=Path, default=None, help="file to create (must not exist; default: stdout)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bench.export import to_pytest_benchmark
    from bench.store import create_json, load_run, refuse_existing, show_path

    taken = f"{show_path(args.output)} already exists; export never overwrites a file"
    if args.output is not None:
        refuse_existing(args.output, taken)  # before reading a possibly large file
    doc = load_run(args.run)  # validated: finite samples, typed fields
    out, left_out = to_pytest_benchmark(doc)
    if left_out:
        print(f"aigc-bench: {len(left_out)} cells not exported (not ok, or no latency samples)", file=sys.stderr)
    if not out["benchmarks"]:
        raise UsageError(f"{show_path(args.run)}: no ok cell with latency samples to export")
    if args.output is None:
        json.dump(out, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    create_json(args.output, out, exists=taken, what="export")  # complete or not at all, never over a file
    print(f"exported {len(out['benchmarks'])} benchmarks: {show_path(args.output)}", file=sys.stderr)
    return 0
