"""``aigc-bench list [SUITE]``: suites, their tiers and variants."""

from __future__ import annotations

import argparse
import re

#: a cell count (and time) a profile's description states, e.g. "(36 cells, about 6 minutes on 2 CPU cores)":
#: written by hand, it goes stale; ``list`` shows the count it computes instead (descriptions are part of the
#: stored suite definition and its hash, so they are not edited)
_STATED_COUNT = re.compile(r"\s*\(\d+ cells[^)]*\)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list suites, or one suite's tiers, profiles and variants")
    p.add_argument("suite", nargs="?", help="suite name or suite file path/to/suite.py (omit to list every suite)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bench.commands._plan import cost_floor_s, duration
    from bench.errors import UsageError
    from bench.eta import cell_kind
    from bench.registry import get_suite, list_suites, suite_name
    from bench.report.escape import term as escape  # names are shown, never read as markup or control codes
    from bench.runner import RunSettings, expand
    from bench.sizing import resolve_tier

    console = Console()
    if not args.suite:
        t = Table(title="aigc-bench suites")
        for c in ("suite", "tiers", "families", "profiles", "description"):
            t.add_column(c)
        for name in list_suites():
            s = get_suite(name)
            t.add_row(*(escape(x) for x in (name, ", ".join(x.name for x in s.tiers), ", ".join(s.families),
                                            ", ".join(p.name for p in s.profiles), s.description)))  # fmt: skip
        console.print(t)
        return 0
    s = get_suite(suite_name(args.suite))
    console.print(f"[bold]{escape(s.name)}[/bold]: {escape(s.description)}")
    for p in s.profiles:
        tiers = ", ".join(p.tiers) if p.tiers else "all"
        lens = f", lengths {list(p.seq_lens)}" if p.seq_lens else ""
        try:
            cells = expand(s, RunSettings(profile=p.name, devices=("cpu",)))  # what `run --device cpu` would run
        except UsageError as e:  # a profile this machine cannot expand (none of its cells run on a CPU)
            cells, count = [], f"cells on CPU: none ({e})"
        if cells:
            n_train = sum(cell_kind(c).startswith("train") for c in cells)
            floor = duration((len(cells) - n_train) * cost_floor_s(p))
            count = (f"{len(cells)} cells on CPU ({n_train} of them training; the cost cells at least {floor})"
                     if n_train else f"{len(cells)} cells on CPU, at least {floor}")  # fmt: skip
        text = (f"{count}; tiers {tiers}, batch {list(p.batch_sizes)}, dtypes {list(p.dtypes)}, modes "
                f"{list(p.modes)}{lens}, metrics {', '.join(p.metrics)}. {_STATED_COUNT.sub('', p.description)}")  # fmt: skip
        console.print(f"  profile [cyan]{escape(p.name)}[/cyan]: {escape(text)}")
    for tier in s.tiers:
        t = Table(title=f"tier {escape(tier.name)}: target {tier.target_params / 1e6:.2f} M params ±{tier.tolerance:.0%}, "
                        f"input {'x'.join(map(str, tier.input_shape))}")  # fmt: skip
        for c in ("family", "model", "builder", "knob", "params (M)", "vs target"):
            t.add_column(c, justify="right" if c in ("params (M)", "vs target") else "left")
        for v in resolve_tier(tier):
            err = v.param_error
            style = "" if abs(err) <= v.tolerance else "red"
            knob = f"{v.knob}={v.knob_value}" if v.knob else "canonical"
            # escape: "convnext_tiny[dims=88]" would otherwise be read as rich markup and lose its knob
            t.add_row(escape(v.family), escape(v.model), escape(v.builder), escape(knob), f"{v.achieved_params / 1e6:.2f}",
                      f"{err:+.1%}", style=style)  # fmt: skip
        console.print(t)
    return 0
