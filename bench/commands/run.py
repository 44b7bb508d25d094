"""aigc-bench run SUITE | FILE.py | --model M [--model M ...]: measure every cell and store the results.

SUITE is a registered name (aigc-bench list), a suite file outside the package (path/to/my_suite.py; FILE.py:NAME
picks one of several suites it registers), or a suite an installed package registers (entry-point group
aigc_bench.suites). With --model instead, the models given make an ad-hoc suite named "adhoc": timm:<name>
(or a bare timm name) or <module>:<function> from the current folder; --match-params 25M solves each model's
width knob (inferred for timm ViT/DeiT, Swin, ConvNeXt and ResNet, or named with --knob) onto that size.

Results go to --out (default ./results): <out>/<suite>/<UTC time>-<host>.json. Reports go beside them:
<out>/reports/<suite>/ when --out is given, ./reports/<suite>/ for the default ./results (the published
layout), or <report-dir>/<suite>/. A cell is killed when it reports no progress for its profile's timeout
(a training cell reports every second), or after 10 times that in all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from bench.commands._args import MAX_BATCH_SIZE, MAX_THREADS, bounded_int, bounded_int_list, name, name_list, path
from bench.errors import EXIT_CELLS_FAILED, EXIT_OK, UsageError
from bench.spec import DEVICES, DTYPES, Suite

#: ``--out`` when not given; its reports go to ``DEFAULT_REPORTS`` (results/ and reports/ side by side)
DEFAULT_OUT = Path("results")
#: ``--jobs`` bound: more cells at once than GPUs in a node is a typo
MAX_JOBS = 64
DEFAULT_REPORTS = Path("reports")
#: ``--peak-budget``'s bound (seconds per device); when not given, the runner scales it to the profile
#: (``bench.runner.auto_peak_budget``: 5 s for the default profile, 1.25 s for the quick one)
MAX_PEAK_BUDGET_S = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="measure a suite (a name, a suite file, or --model ...) and store the results",
                       description=__doc__)  # fmt: skip
    p.add_argument("suite", nargs="?", default=None,
                   help="suite name (see aigc-bench list) or suite file path/to/suite.py[:NAME]")  # fmt: skip
    p.add_argument("--model", action="append", default=None, metavar="BUILDER",
                   help="ad-hoc mode, repeatable: timm:<name> (or a bare timm name) or <module>:<function>; "
                        "the models make the suite 'adhoc' (results/adhoc/)")  # fmt: skip
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="ad-hoc mode: one sample's shape, without the batch (default 3,224,224)")  # fmt: skip
    p.add_argument("--match-params", default=None, metavar="N",
                   help="ad-hoc mode: solve each model's width knob onto N parameters (25M, 500k, 25000000)")  # fmt: skip
    p.add_argument("--knob", default=None, metavar="ARG",
                   help="with --match-params: the model argument the solver sets (default: inferred, e.g. embed_dim "
                        "for ViT, a stage width for ResNet/ConvNeXt)")  # fmt: skip
    p.add_argument("--profile", default=None, type=name, help="quick | default | full (default: the suite's default)")
    p.add_argument(
        "--device",
        default="auto",
        type=name_list,
        help=f"comma list of {'|'.join(DEVICES)}; auto = every available device (default)",
    )
    p.add_argument(
        "--dtype", default=None, type=name_list, help=f"comma list of {'|'.join(DTYPES)} (default: the profile's)"
    )
    p.add_argument("--batch-size", default=None, type=bounded_int_list(1, MAX_BATCH_SIZE),
                   help=f"comma list, e.g. 1,8, each 1..{MAX_BATCH_SIZE} (default: the profile's)")  # fmt: skip
    p.add_argument("--threads", default=None, type=bounded_int(1, MAX_THREADS),
                   help=f"CPU threads per cell, 1..{MAX_THREADS} (default: torch's default, all cores)")  # fmt: skip
    p.add_argument("--allocator", default="steady", choices=("steady", "system"),
                   help="malloc regime of the measurements: steady (default; glibc keeps freed memory, as jemalloc/"
                        "tcmalloc do: steady between processes) or system (malloc untouched, as torch.utils.benchmark "
                        "and a user's own process see it); recorded, and compare refuses to mix them")  # fmt: skip
    p.add_argument("--peak-budget", default=None, type=_peak_budget, metavar="S",
                   help="seconds per device to measure the machine's GEMM and memory-bandwidth peak before the "
                        "cells (MFU, roofline; docs/efficiency.md); 0 = not measured (default: 2.5 x the profile's "
                        "min run time per cell, 1 to 5 s: 5 for the default profile, 1.25 for quick)")  # fmt: skip
    p.add_argument("--execution", default=None, type=name_list,
                   help="comma list of how models run: eager | compile | compile-max | reduce-overhead (CUDA) | "
                        "channels_last | autocast, or a combination such as compile+channels_last "
                        "(default: the profile's; eager for most; see docs/executions.md)")  # fmt: skip
    p.add_argument("--jobs", default=1, type=bounded_int(1, MAX_JOBS), metavar="N",
                   help="cells at once: one per GPU (each worker sees only its GPU); CPU cells run one at a time "
                        "unless the run is CPU-only (then N share the cores: a warning, and each record says so)")  # fmt: skip
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local (default: worker processes on this machine) or ray (a Ray cluster; pip install "
                        "'aigc-bench[ray]'; see docs/ray.md)")  # fmt: skip
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="with --executor ray: the cluster to join (default: start a local Ray)")  # fmt: skip
    p.add_argument("--repeat", default=1, type=bounded_int(1, 100), metavar="K",
                   help="measure each latency cell in K fresh processes, rounds interleaved across cells; compare "
                        "then tests per-process medians (docs/ci.md; 10 for regression checks of the quick profile)")  # fmt: skip
    p.add_argument("--metric", default=None, type=name_list, metavar="NAMES",
                   help="metrics to measure on top of the profile's (comma list), e.g. instructions (CPU instruction "
                        "counts under valgrind, for tiny cells; docs/ci.md)")  # fmt: skip
    p.add_argument("--tier", default=None, type=name_list, help="only these tiers (comma list)")
    p.add_argument("--family", default=None, type=name_list, help="only these families (comma list)")
    p.add_argument("--shard", default=None, help="run shard K of N (e.g. 2/4): a deterministic 1/N of the cells")
    p.add_argument("--out", default=None, type=path, metavar="DIR",
                   help=f"results folder (default: ./{DEFAULT_OUT}); its reports go to DIR/reports/<suite>/ "
                        f"(for the default: ./{DEFAULT_REPORTS}/<suite>/)")  # fmt: skip
    p.add_argument("--report-dir", default=None, type=path, metavar="DIR",
                   help="write the reports to DIR/<suite>/ instead")  # fmt: skip
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="FILE",
        help="continue the newest matching run in --out (or FILE), running only the missing cells",
    )
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: run the cells recorded as failed or timeout again; their new records "
                        "replace the old ones in the file")  # fmt: skip
    p.add_argument("--retry-invalid", action="store_true",
                   help="with --resume: measure again the cells whose latency was judged INVALID (the machine's speed "
                        "moved, or too noisy); their new records replace the old ones in the file")  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="do not write reports at the end")
    p.add_argument("--data", default=None, type=path, metavar="PATH",
                   help="evaluate checkpoints on this dataset (an ImageFolder tree or a CIFAR-10/100 folder; never "
                        "downloaded); needs --weights; see docs/accuracy.md")  # fmt: skip
    p.add_argument("--weights", default=None, type=path, metavar="DIR",
                   help="folder of checkpoints named after the models (<model>.safetensors or .pth)")  # fmt: skip
    p.add_argument("--teacher", default=None, type=path, metavar="PATH",
                   help="distillation: a trained teacher's state dict (the profile's teacher family; loaded "
                        "weights-only) instead of training the teacher in the student's cell; docs/accuracy.md")  # fmt: skip
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import runner
    from bench.commands._plan import plan_lines
    from bench.env import busy_warning
    from bench.report.escape import term
    from bench.report.terminal import ProgressView, print_summary

    if args.resume == "":
        raise UsageError("--resume FILE: expected a path, got an empty string (give --resume alone for the latest)")
    if args.retry_failed and args.resume is None:
        raise UsageError("--retry-failed goes with --resume: it re-runs the failed and timed-out cells of a run file")
    if args.retry_invalid and args.resume is None:
        raise UsageError("--retry-invalid goes with --resume: it re-measures the cells of a run file whose latency was "
                         "judged INVALID")  # fmt: skip
    out_dir = DEFAULT_OUT if args.out is None else args.out
    report_dir = report_folder(args.out, args.report_dir)
    suite = _suite(args)
    extra = _accuracy_extra(args, suite) + _teacher_extra(args, suite)
    check_accuracy_spec(suite, args.profile, args.data is not None)
    settings = runner.RunSettings(
        profile=args.profile,
        devices=args.device,
        dtypes=args.dtype,
        batch_sizes=args.batch_size,
        threads=args.threads,
        shard=runner.parse_shard(args.shard) if args.shard is not None else None,
        tiers=args.tier,
        families=args.family,
        extra=extra,
        allocator=args.allocator,
        executions=args.execution,
        peak_budget_s=args.peak_budget,
        repeat=args.repeat,
        metrics=args.metric or (),
    )
    if args.repeat > 1 and (args.executor != "local" or args.jobs > 1):
        raise UsageError("--repeat runs a cell's processes one after another: it needs --executor local and --jobs 1")
    cells = runner.expand(suite, settings)  # bad names fail here, before any file is written
    _check_writable(out_dir, "output")
    if not args.no_report:
        _check_writable(report_dir, "report")
    console = Console(stderr=True)
    busy = busy_warning(args.threads)
    from bench.executors_parallel import choose_executor

    executor, jobs_warning, parallel = choose_executor(args.executor, args.jobs, cells, args.ray_address)
    eta = runner.EtaEstimator(cells, parallel=parallel)
    views: list[ProgressView] = []
    with contextlib.ExitStack() as stack:

        def on_event(event: str, cell, payload) -> None:
            # Nothing is printed before the first cell event: by then the run file is claimed, or the --resume
            # file read and validated, so a bad one fails with its one error line alone (exit 2).
            if not views:
                if busy is not None:  # a busy machine slows every cell: say so, as pyperf does
                    console.print(f"[yellow]warning:[/yellow] {busy}", highlight=False)
                if jobs_warning is not None:
                    console.print(f"[yellow]warning:[/yellow] {jobs_warning}", highlight=False)
                for line in plan_lines(suite, cells, out_dir, None if args.no_report else report_dir):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)  # paths print literally
                views.append(stack.enter_context(ProgressView(console, total=len(cells), eta=eta.remaining_s)))
            view = views[0]
            eta.on_event(event, cell, payload)
            if event == "resumed":  # already in the file: counts as done
                view.progress.update(view.task, advance=1)
            else:
                view.on_event(event, cell, payload)

        result = runner.run(suite, settings, out_dir, resume=args.resume, retry_failed=args.retry_failed,
                            retry_invalid=args.retry_invalid, executor=executor, on_event=on_event)  # fmt: skip
    out = Console()
    print_summary(out, result.records, suite.name)
    resumed = f" ({result.skipped_existing} cells resumed from the file)" if result.skipped_existing else ""
    out.print(f"results: [bold]{term(result.path)}[/bold]{resumed}", soft_wrap=True)  # --resume FILE: the user's name
    if not args.no_report:
        _write_reports(result.path, report_dir, out)
    failed = result.n_failed
    if failed:
        out.print(f"[red]{failed} of {len(result.records)} cells failed[/red] (exit {EXIT_CELLS_FAILED})")
        return EXIT_CELLS_FAILED
    return EXIT_OK


def _suite(args: argparse.Namespace) -> Suite:
    """The suite to run: a name or a suite file (``bench.registry.suite_name``), or the ad-hoc suite of --model."""
    from bench.registry import get_suite, suite_name

    adhoc_only = {"--input-shape": args.input_shape, "--match-params": args.match_params, "--knob": args.knob}
    if args.model is None:
        given = [k for k, v in adhoc_only.items() if v is not None]
        if given:
            raise UsageError(f"{given[0]} goes with --model (the ad-hoc mode)")
        if args.suite is None:
            raise UsageError("give a suite (a name from aigc-bench list, or path/to/suite.py) or --model BUILDER")
        return get_suite(suite_name(args.suite))
    if args.suite is not None:
        raise UsageError(f"give a suite ({args.suite}) or --model, not both")
    from bench.adhoc import AdhocSpec, build_suite, parse_count, parse_shape

    spec = AdhocSpec(
        models=tuple(args.model),
        input_shape=parse_shape(args.input_shape) if args.input_shape is not None else (3, 224, 224),
        match_params=parse_count(args.match_params) if args.match_params is not None else None,
        knob=args.knob,
        accuracy=args.data is not None or args.weights is not None,
    )
    return build_suite(spec)


def check_accuracy_spec(suite: Suite, profile: str | None, with_data: bool) -> None:
    """A profile that lists ``accuracy`` with no accuracy spec (and no --data) would fail every cell after
    measuring it: refused before anything runs (exit 2)."""
    prof = suite.profile(profile)
    if "accuracy" in prof.metrics and prof.accuracy is None and not with_data:
        raise UsageError(f"suite {suite.name!r}, profile {prof.name!r}: lists the accuracy metric but declares no "
                         "accuracy spec (Profile.accuracy); add one, drop the metric, or give --data/--weights")  # fmt: skip


def _peak_budget(text: str) -> float:
    """``--peak-budget``: seconds, 0 to 60."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (0 to {MAX_PEAK_BUDGET_S:g}), got {text[:40]!r}") from None
    if not 0 <= value <= MAX_PEAK_BUDGET_S:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected seconds (0 to {MAX_PEAK_BUDGET_S:g}), got {text[:40]!r}")
    return value


def _accuracy_extra(args: argparse.Namespace, suite: Suite) -> tuple[tuple[str, str], ...]:
    """``--data``/``--weights`` as the cells' extras, checked before anything runs."""
    if args.data is None and args.weights is None:
        return ()
    if args.data is None or args.weights is None:
        raise UsageError("--data and --weights go together: the checkpoints in --weights are evaluated on --data")
    if not _exists(args.data):
        raise UsageError(f"--data {_shown(args.data)}: no such file or folder")
    if not _exists(args.weights) or not args.weights.is_dir():
        raise UsageError(f"--weights {_shown(args.weights)}: no such folder")
    if "accuracy" not in suite.profile(args.profile).metrics:
        raise UsageError(f"profile {suite.profile(args.profile).name!r} does not measure accuracy; "
                         "--data/--weights need a profile whose metrics include it")  # fmt: skip
    return (("data", str(args.data.resolve())), ("weights", str(args.weights.resolve())))


def _teacher_extra(args: argparse.Namespace, suite: Suite) -> tuple[tuple[str, str], ...]:
    """``--teacher PATH`` as the cells' extra, checked (loaded weights-only into the teacher) before anything runs."""
    if getattr(args, "teacher", None) is None:
        return ()
    from bench.accuracy.distill import check_teacher_option

    check_teacher_option(args.teacher, suite, args.profile)
    return (("teacher", str(args.teacher.resolve())),)


def report_folder(out: Path | None, report_dir: Path | None) -> Path:
    """Where a run's reports go: ``--report-dir``; else beside the results given by ``--out``
    (``<out>/reports``); else ``./reports`` beside the default ``./results``."""
    if report_dir is not None:
        return report_dir
    return DEFAULT_REPORTS if out is None else out / "reports"


def _shown(p: Path, limit: int = 120) -> str:
    """A path for a one-line message: a 10,000-character one is cut."""
    text = str(p)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(text)} characters)"


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError as e:  # a name too long for the file system, a loop of symlinks
        raise UsageError(f"{_shown(p)}: {e.strerror or e}") from None


def _check_writable(folder: Path, what: str) -> None:
    """Fail before measuring when the results (or reports) folder cannot be written."""
    probe = folder
    while not _exists(probe):
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} folder {_shown(folder)} is not writable")


def _write_reports(path: Path, report_dir: Path, console) -> None:
    """Write the run's reports to ``report_dir`` (see ``report_folder``) when the report package provides them."""
    from bench.errors import BenchError
    from bench.report import write_run_reports
    from bench.report.escape import term

    try:
        written = write_run_reports(path, report_dir)
    except (BenchError, OSError) as e:  # the measurements are safe on disk; a report problem must not hide them
        console.print(f"[yellow]warning: reports not written: {term(e)}[/yellow] (run `aigc-bench report "
                      f"{term(path)}`)", soft_wrap=True)  # fmt: skip
        return
    shown = [p for p in written if p.suffix in (".md", ".html")] or written
    for p in shown:  # paths hold the output folder and names from the file: printed as they are, never as markup
        console.print(f"report: {term(p)}", soft_wrap=True)
