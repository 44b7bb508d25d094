"""A suite's report as data: tables, figures, environment and conventions, ready for any renderer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.allocator import run_regime
from bench.peak import summary as peak_summary
from bench.report.frames import hosts_of
from bench.report.main_table import FLOP_CONVENTION, build_tables
from bench.report.model import Table
from bench.report.scaling_tables import RunAnalysis, scaling_tables
from bench.report.tidy import tidy_frame

if TYPE_CHECKING:
    import pandas as pd

    from bench.report.plotting import FigureFile


@dataclass(frozen=True)
class Report:
    """Everything one suite's report shows; renderers in ``render.py`` turn it into files."""

    suite: str
    tables: tuple[Table, ...]
    scaling: tuple[Table, ...]  # exponents (stored or fitted here) and crossovers; empty for vision suites
    figures: tuple[FigureFile, ...]
    environment: tuple[str, ...]  # one line per run
    status_counts: tuple[tuple[str, int], ...]
    tidy: pd.DataFrame
    convention: str = FLOP_CONVENTION
    validity: tuple[str, ...] = ()  # footer: invalid latency cells and why, runs started busy (bench.validity)
    figure_failures: tuple[str, ...] = ()  # one line per figure that could not be drawn (the tables still stand)
    efficiency: tuple[Table, ...] = ()  # achieved GFLOP/s, MFU, intensity, bound (bench.report.efficiency)
    objectives: tuple[Table, ...] = ()  # the pretraining suite: objective x metric per group (bench.pretraining.report)
    history: str | None = None  # relative link to `aigc-bench history` output beside the reports, when there is one

    @property
    def title(self) -> str:
        return f"aigc-bench report: {self.suite}"


def environment_line(doc: Mapping[str, Any]) -> str:
    """One run's environment: CPU, threads, library versions, GPU, dates, run id (plain text)."""
    env = doc.get("env") or {}
    settings = doc.get("settings") or {}
    gpu = env.get("gpu_name")
    parts = [
        f"run {doc.get('run_id')}",
        f"host {env.get('host') or '?'}",
        f"CPU {env.get('cpu_model') or '?'}",
        f"{settings.get('threads') or env.get('threads') or '?'} threads",
        f"malloc {run_regime(doc) or '?'}",
        f"torch {env.get('torch') or '?'}",
        f"timm {env.get('timm') or '?'}",
        f"GPU {gpu} (CUDA {env.get('cuda') or '?'}, driver {env.get('gpu_driver') or '?'})" if gpu else "no GPU",
        f"profile {doc.get('profile')}",
        f"started {doc.get('started_at') or '?'}",
        f"finished {doc.get('finished_at') or 'not finished'}",
    ]
    if env.get("git_commit"):
        parts.append(f"aigc-bench commit {str(env['git_commit'])[:12]}")
    parts.append(peak_summary(env))  # the machine's measured peak, or that it was not measured
    return " · ".join(parts)


def build_report(
    frame: pd.DataFrame,
    docs: Sequence[Mapping[str, Any]],
    reference_family: str | None = None,
    figures: bool = True,
) -> Report:
    """The report of one suite from its cells (``load_results`` rows) and run documents (``load_run``)."""
    from bench.report.efficiency import add_derived, efficiency_tables
    from bench.report.figures import build_figures, failing_figure
    from bench.report.roofline import roofline_figures
    from bench.validity import annotate_frame, summary_lines

    frame = annotate_frame(frame, docs)  # latency verdicts, computed for files that predate them (bench.validity)
    frame = add_derived(frame, docs)  # achieved GFLOP/s, MFU, bound: derived from stored values (bench.catalogue)
    suites = list(dict.fromkeys(frame["suite"])) or [str(d.get("suite")) for d in docs][:1]
    docs = sorted(docs, key=lambda d: str(d.get("run_id")))
    analyses = [RunAnalysis.from_doc(d) for d in docs]
    counts: dict[str, int] = {}
    for s in frame["status"]:
        counts[str(s)] = counts.get(str(s), 0) + 1
    failures: list[str] = []
    figs = build_figures(frame, [e for a in analyses for e in a.fits], failures) if figures and len(frame) else []
    if figures and len(frame):
        with failing_figure("roofline", failures):  # a figure never costs the report its tables (build_figures)
            figs = [*figs, *roofline_figures(frame, docs)]
    from bench.pretraining import report as pretraining_report

    objectives = pretraining_report.tables(*docs)  # none unless the runs hold pretraining cells
    if figures and objectives:
        with failing_figure("probe-vs-flops", failures):  # the tables stand, the failure is named in one line
            figs = [*figs, pretraining_report.figure(*docs)]
    hosts = hosts_of(frame)
    return Report(
        suite=str(suites[0]) if suites else "?",
        tables=tuple(per_host(frame, hosts, lambda f: build_tables(f, reference_family))),
        scaling=tuple(scaling_tables(frame, analyses)),
        figures=tuple(figs),
        environment=tuple(environment_line(d) for d in docs) + tuple(hosts_line(frame, hosts)),
        status_counts=tuple(sorted(counts.items())),
        tidy=tidy_frame(frame),
        validity=tuple(summary_lines(frame.to_dict("records"), docs)),
        figure_failures=tuple(failures),
        efficiency=tuple(per_host(frame, hosts, lambda f: efficiency_tables(f, docs))),
        objectives=tuple(objectives),
    )


def per_host(frame: pd.DataFrame, hosts: Sequence[str], build: Callable[[pd.DataFrame], list[Table]]) -> list[Table]:
    """``build(frame)``, or, when several hosts measured the cells (a Ray run), ``build`` of each host's cells
    with the host in each title: best-in-group marks and "vs" ratios never mix latencies of two machines."""
    if len(hosts) < 2:
        return build(frame)
    return [replace(t, title=f"{t.title} · host {h}") for h in hosts for t in build(frame[frame["host"] == h])]


def hosts_line(frame: pd.DataFrame, hosts: Sequence[str]) -> list[str]:
    """One environment line naming the hosts when there are several, with their cell counts."""
    if len(hosts) < 2:
        return []
    counts = ", ".join(f"{h} ({int((frame['host'] == h).sum())} cells)" for h in hosts)
    return [f"cells measured on {len(hosts)} hosts: {counts}; each host's cells have their own tables "
            "(latencies are never ranked or divided across machines; every record's host_env has its hardware)"]  # fmt: skip


def run_stem(paths: Sequence[Path], run_ids: Sequence[str]) -> str:
    """The file-name stem of a report: the run file's stem for one run, else ``combined-<N>runs-<hash>``.

    The hash is over the sorted run ids, so the same runs always give the same name.
    """
    import hashlib

    if len(paths) == 1:
        return Path(paths[0]).stem
    digest = hashlib.sha256("\n".join(sorted(run_ids)).encode()).hexdigest()[:8]
    return f"combined-{len(run_ids)}runs-{digest}"
