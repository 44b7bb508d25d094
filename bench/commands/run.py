"""``aigc-bench run SUITE``: measure every cell of a suite and store the results."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.errors import EXIT_CELLS_FAILED, EXIT_OK, UsageError
from bench.spec import DEVICES, DTYPES, Suite


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="measure a suite and store the results", description=__doc__)
    p.add_argument("suite", help="suite name (see `aigc-bench list`)")
    p.add_argument("--profile", default=None, help="quick | default | full (default: the suite's default)")
    p.add_argument(
        "--device",
        default="auto",
        type=_str_list,
        help=f"comma list of {'|'.join(DEVICES)}; auto = every available device (default)",
    )
    p.add_argument(
        "--dtype", default=None, type=_str_list, help=f"comma list of {'|'.join(DTYPES)} (default: the profile's)"
    )
    p.add_argument("--batch-size", default=None, type=_int_list, help="comma list, e.g. 1,8 (default: the profile's)")
    p.add_argument(
        "--threads", default=None, type=int, help="CPU threads per cell (default: torch's default, all cores)"
    )
    p.add_argument("--allocator", default="steady", choices=("steady", "system"),
                   help="malloc regime of the measurements: steady (default; glibc keeps freed memory, as jemalloc/"
                        "tcmalloc do: steady between processes) or system (malloc untouched, as torch.utils.benchmark "
                        "and a user's own process see it); recorded, and compare refuses to mix them")  # fmt: skip
    p.add_argument("--tier", default=None, type=_str_list, help="only these tiers (comma list)")
    p.add_argument("--family", default=None, type=_str_list, help="only these families (comma list)")
    p.add_argument("--shard", default=None, help="run shard K of N (e.g. 2/4): a deterministic 1/N of the cells")
    p.add_argument("--out", default="results", type=Path, help="results folder (default: ./results)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="FILE",
        help="continue the newest matching run in --out (or FILE), running only the missing cells",
    )
    p.add_argument("--no-report", action="store_true", help="do not write reports at the end")
    p.add_argument("--data", default=None, type=Path, metavar="PATH",
                   help="evaluate checkpoints on this dataset (an ImageFolder tree or a CIFAR-10/100 folder; never "
                        "downloaded); needs --weights; see docs/accuracy.md")  # fmt: skip
    p.add_argument("--weights", default=None, type=Path, metavar="DIR",
                   help="folder of checkpoints named after the models (<model>.safetensors or .pth)")  # fmt: skip
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import runner
    from bench.env import busy_warning
    from bench.registry import get_suite
    from bench.report.terminal import ProgressView, print_summary

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    suite = get_suite(args.suite)
    extra = _accuracy_extra(args, suite)
    settings = runner.RunSettings(
        profile=args.profile,
        devices=args.device,
        dtypes=args.dtype,
        batch_sizes=args.batch_size,
        threads=args.threads,
        shard=runner.parse_shard(args.shard) if args.shard else None,
        tiers=args.tier,
        families=args.family,
        extra=extra,
        allocator=args.allocator,
    )
    cells = runner.expand(suite, settings)  # bad names fail here, before any file is written
    _check_writable(args.out)
    console = Console(stderr=True)
    if (busy := busy_warning(args.threads)) is not None:  # a busy machine slows every cell: say so, as pyperf does
        console.print(f"[yellow]warning:[/yellow] {busy}", highlight=False)
    with ProgressView(console, total=len(cells)) as view:
        result = runner.run(suite, settings, args.out, resume=args.resume, on_event=view.on_event)
    out = Console()
    print_summary(out, result.records, suite.name)
    out.print(
        f"results: [bold]{result.path}[/bold]"
        + (f" ({result.skipped_existing} cells resumed from the file)" if result.skipped_existing else "")
    )
    if not args.no_report:
        _write_reports(result.path, out)
    failed = result.n_failed
    if failed:
        out.print(f"[red]{failed} of {len(result.records)} cells failed[/red] (exit {EXIT_CELLS_FAILED})")
        return EXIT_CELLS_FAILED
    return EXIT_OK


def _accuracy_extra(args: argparse.Namespace, suite: Suite) -> tuple[tuple[str, str], ...]:
    """``--data``/``--weights`` as the cells' extras, checked before anything runs."""
    if args.data is None and args.weights is None:
        return ()
    if args.data is None or args.weights is None:
        raise UsageError("--data and --weights go together: the checkpoints in --weights are evaluated on --data")
    if not args.data.exists():
        raise UsageError(f"--data {args.data}: no such file or folder")
    if not args.weights.is_dir():
        raise UsageError(f"--weights {args.weights}: no such folder")
    if "accuracy" not in suite.profile(args.profile).metrics:
        raise UsageError(f"profile {suite.profile(args.profile).name!r} does not measure accuracy; "
                         "--data/--weights need a profile whose metrics include it")  # fmt: skip
    return (("data", str(args.data.resolve())), ("weights", str(args.weights.resolve())))


def _check_writable(out: Path) -> None:
    """Fail before measuring when the results folder cannot be written."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {out} is not writable")


def _write_reports(path: Path, console) -> None:
    """Write the run's reports beside the results when the report package provides them."""
    from bench.errors import BenchError
    from bench.report import write_run_reports

    try:
        written = write_run_reports(path)
    except (BenchError, OSError) as e:  # the measurements are safe on disk; a report problem must not hide them
        console.print(f"[yellow]warning: reports not written: {e}[/yellow] (run `aigc-bench report {path}`)")
        return
    shown = [p for p in written if p.suffix in (".md", ".html")] or written
    for p in shown:
        console.print(f"report: {p}")
