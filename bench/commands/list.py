"""``aigc-bench list [SUITE]``: suites, their tiers and variants."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list suites, or one suite's tiers, profiles and variants")
    p.add_argument("suite", nargs="?", help="suite name (omit to list every suite)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bench.registry import get_suite, list_suites
    from bench.report.escape import term as escape  # names are shown, never read as markup or control codes
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
    s = get_suite(args.suite)
    console.print(f"[bold]{escape(s.name)}[/bold]: {escape(s.description)}")
    for p in s.profiles:
        tiers = ", ".join(p.tiers) if p.tiers else "all"
        lens = f", lengths {list(p.seq_lens)}" if p.seq_lens else ""
        text = (f"tiers {tiers}, batch {list(p.batch_sizes)}, dtypes {list(p.dtypes)}, modes {list(p.modes)}{lens}, "
                f"metrics {', '.join(p.metrics)}. {p.description}")  # fmt: skip
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
