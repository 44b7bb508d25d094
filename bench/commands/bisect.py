"""``aigc-bench bisect GOOD_REF BAD_REF --cell ID [--repo DIR] [--install CMD] ...``: find the culprit commit.

Measures the cell (an id as compare and the reports print it) at GOOD and BAD, then by binary search at
commits between them, each in a git worktree of ``--repo`` (default: the current folder) after ``--install``
(run with ``sh -c`` in the worktree, e.g. ``pip install -e .``), with the worktree first on PYTHONPATH; names
the first commit whose value sits on BAD's side of the midpoint (``bench.bisect``). ``--suite`` names what
``run`` gets when the suite is a file in the repository. Exit 0 with the commit; 2 on bad input (not a git
repository, unknown ref, GOOD not an ancestor of BAD, a malformed cell id, GOOD and BAD not different).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._args import bounded_int, name, path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bisect", help="find the first commit at which a cell got slower", description=__doc__)
    p.add_argument("good", type=name, help="a ref where the cell was fast (older)")
    p.add_argument("bad", type=name, help="a ref where it is slow (newer)")
    p.add_argument("--cell", required=True, type=name, help="the cell id, e.g. cv-backbones/tiny/resnet/resnet10t/"
                   "cpu/fp32/b1/3x224x224/infer")  # fmt: skip
    p.add_argument("--repo", default=Path("."), type=path, metavar="DIR", help="the git repository (default: .)")
    p.add_argument("--install", default=None, metavar="CMD", help="run in each worktree first (sh -c), e.g. "
                   "'pip install -e .'")  # fmt: skip
    p.add_argument("--metric", default="latency_p50_ms", type=name,
                   help="latency_p50_ms (default), instructions (valgrind), or another metric column")  # fmt: skip
    p.add_argument("--suite", default=None, type=name, help="what `run` is given (default: the cell id's suite); "
                   "a suite file's path inside the repository works too")  # fmt: skip
    p.add_argument("--profile", default=None, type=name, help="the run's profile (default: the suite's)")
    p.add_argument("--repeat", default=1, type=bounded_int(1, 100), metavar="K",
                   help="measure latency in K processes per commit (steadier medians)")  # fmt: skip
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import catalogue
    from bench.bisect import RunMeasure, bisect_commits, commits_between, parse_cell, repo_root, resolve_ref, subject
    from bench.errors import UsageError
    from bench.report.escape import term

    root = repo_root(args.repo)
    good, bad = resolve_ref(root, args.good), resolve_ref(root, args.bad)
    parse_cell(args.cell)  # a malformed id fails before anything is checked out
    if catalogue.column(args.metric) is None:
        raise UsageError(f"unknown metric {args.metric!r} (e.g. latency_p50_ms, instructions)")
    commits = commits_between(root, good, bad)
    out = Console()
    out.print(f"bisecting {len(commits)} commits ({term(args.good)}..{term(args.bad)}) on {term(args.cell)} "
              f"{term(args.metric)}", soft_wrap=True, highlight=False)  # fmt: skip

    def on_probe(p) -> None:
        shown = f"{p.value:.6g}" if p.value is not None else f"skipped ({term(p.error)})"
        out.print(f"  {p.commit[:12]}: {shown}", soft_wrap=True, highlight=False)

    measure = RunMeasure(root, args.cell, args.metric, args.suite, args.profile, args.install, args.repeat)
    result = bisect_commits(good, commits, measure, on_probe=on_probe)
    out.print(f"GOOD {result.good:.6g}, BAD {result.bad:.6g} ({result.change_pct:+.1f}%)", highlight=False)
    out.print(f"first bad commit: {term(subject(root, result.first_bad))}", soft_wrap=True, highlight=False)
    out.print(f"full id: {result.first_bad}", highlight=False)
    if result.unsure:
        out.print(f"or one of the skipped commits before it: {', '.join(c[:12] for c in result.unsure)}",
                  highlight=False)  # fmt: skip
    return 0
