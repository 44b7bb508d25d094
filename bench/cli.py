"""The ``aigc-bench`` command line: parse, call, print, exit code. It never measures.

Each subcommand lives in ``bench/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``handler`` (a function ``(args) -> int`` exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bench import __version__
from bench.errors import EXIT_USAGE, BenchError

EPILOG = """exit codes:
  0  success
  1  compare: a regression was found
  2  usage or bad input (one line names the valid choices)
  3  run finished, but some cells failed (see the results file)
  130, 143  interrupted by Ctrl-C (SIGINT) or SIGTERM; a run keeps its finished cells (--resume)
"""


#: exit codes only some subcommands return: the others' --help leaves them out
_OWN_CODES = {"1": ("compare",), "3": ("run",)}


def epilog_for(command: str) -> str:
    """``EPILOG`` with only the exit codes ``command`` can return (1 is compare's, 3 is run's)."""
    keep = []
    for line in EPILOG.splitlines():
        code = line.split()[0] if line.split() else ""
        if command in _OWN_CODES.get(code, (command,)):
            keep.append(line)
    return "\n".join(keep) + "\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout`` and CI runners send), raised like Ctrl-C so that it ends the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` while a command runs (the running cell's worker is killed on the way
    out, ``bench.runner``); the previous handler is restored after, for callers of ``main`` in-process."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here, leave them be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (its default also prints the whole usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aigc-bench",
        description="Matched-size benchmarks of deep-learning backbones: params, exact FLOPs, latency, "
        "memory and accuracy on CPU and CUDA.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aigc-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    import bench.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.commands.{info.name}").register(sub)
    for command, p in sub.choices.items():
        p.epilog = p.epilog or epilog_for(command)
        p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) a documented exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        with _sigterm_as_interrupt():
            code = int(args.handler(args) or 0)
    except BenchError as e:
        from bench.report.escape import printable  # messages quote names from files: one line, no escape codes

        print(f"aigc-bench: error: {printable(e)}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
        print(f"aigc-bench: interrupted ({signal.Signals(signum).name}); finished cells are saved", file=sys.stderr)
        code = 128 + signum
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
