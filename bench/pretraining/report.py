"""The pretraining report: objective x metric tables per group and probe accuracy against pretraining FLOPs.

``python -m bench.pretraining.report RUN.json [--out reports/pretraining]`` writes ``<stem>.pretraining.md``
(a table per group, the random-init floor and which objectives beat it) and ``<stem>.probe-vs-flops.{png,svg}``
(one panel per group: the linear-probe accuracy at each checkpoint along the budget, mean over seeds).
``aigc-bench report`` writes the suite's usual report beside it. Output is deterministic (no dates); an
existing file is replaced only with ``--force``. Exit codes: 0 written, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import EXIT_USAGE, BenchError, UsageError
from bench.report.escape import md_url
from bench.report.model import Cell, Column, Row, RowGroup, Table

GROUP_ORDER = ("language", "vision", "joint")
FLOOR = "random-init"


def _pct(mean: Any, ci: Any) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * ci:.1f}" if ci is not None else "")


def _num(v: Any, fmt: str = "{:.3g}") -> str:
    return "–" if v is None else fmt.format(v)


def cells(*runs: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The ok ``pretraining`` records of ``runs`` by group (tier), in suite order; each with its family and metrics.

    A cell measured by several runs shows the record of the run given last (as the suite report does)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for r in run["records"]:
            key = r["key"]
            if key.get("suite") != "pretraining" or r.get("status") != "ok" or "probe_acc_mean" not in r["metrics"]:
                continue
            latest.pop((str(key["tier"]), str(key["family"])), None)  # re-inserted last: a rerun keeps suite order
            latest[(str(key["tier"]), str(key["family"]))] = {"family": str(key["family"]), **r["metrics"],
                                                              "samples": r.get("samples") or {}}  # fmt: skip
    out: dict[str, list[dict[str, Any]]] = {}
    for (tier, _), row in latest.items():
        out.setdefault(tier, []).append(row)
    return {g: out[g] for g in (*GROUP_ORDER, *sorted(set(out) - set(GROUP_ORDER))) if g in out}


_COLUMNS = (
    Column("probe", "probe acc % (±95% CI)", better="higher"),
    Column("finetune", "fine-tune acc % (±95% CI)", better="higher"),
    Column("zeroshot", "zero-shot %", better="higher"),
    Column("perplexity", "perplexity", better="lower"),
    Column("accept", "grammar accept %", better="higher"),
    Column("steps", "steps"),
    Column("pretrain_gflop", "pretrain GFLOP"),
    Column("step_gflop", "step GFLOP"),
    Column("time", "time (s)"),
    Column("rss", "peak RSS (MB)"),
    Column("floor", "vs floor"),
)


def _cell(text: str, value: Any = None) -> Cell:
    return Cell(text=text, value=math.nan if value is None else float(value))


def _mark_best(rows: list[list[Cell]], column: int, higher: bool) -> None:
    """Bold the best value of ``column`` among the objectives (the floor is not an objective)."""
    vals = [r[column].value for r in rows]
    finite = [v for v in vals if not math.isnan(v)]
    if len(finite) < 2:
        return
    best = max(finite) if higher else min(finite)
    for r in rows:
        if r[column].value == best:
            r[column] = replace(r[column], best=True)


def versus_floor(row: Mapping[str, Any], floor: Mapping[str, Any]) -> str:
    """``beats`` / ``below`` the floor when the two probe intervals (mean ± 95% CI over seeds) do not overlap,
    else ``≈ floor`` -- a mean above the floor inside the noise is not a win. One seed (no interval) compares means."""
    mean, ci = row["probe_acc_mean"], row.get("probe_acc_ci95") or 0.0
    fmean, fci = floor["probe_acc_mean"], floor.get("probe_acc_ci95") or 0.0
    if mean - ci > fmean + fci:
        return "beats"
    if mean + ci < fmean - fci:
        return "below"
    return "≈ floor" if ci or fci else ("beats" if mean > fmean else "below" if mean < fmean else "≈ floor")


def group_rows(rows: Sequence[Mapping[str, Any]]) -> RowGroup:
    """One row per objective of a group; ``vs floor`` compares its probe accuracy with random-init's."""
    floor = next((r for r in rows if r["family"] == FLOOR), None)
    built: list[tuple[str, list[Cell]]] = []
    for r in rows:
        beats = "floor" if r["family"] == FLOOR or floor is None else versus_floor(r, floor)
        accept, zs = r.get("grammar_accept"), r.get("zeroshot_acc_mean")
        flops, step = r.get("pretrain_flops"), r.get("step_flops")
        built.append((r["family"], [
            _cell(_pct(r["probe_acc_mean"], r.get("probe_acc_ci95")), r["probe_acc_mean"]),
            _cell(_pct(r.get("finetune_acc_mean"), r.get("finetune_acc_ci95")), r.get("finetune_acc_mean")),
            _cell(_pct(zs, r.get("zeroshot_acc_ci95")), zs),
            _cell(_num(r.get("clm_perplexity"), "{:.2f}"), r.get("clm_perplexity")),
            _cell("–" if accept is None else f"{100 * accept:.1f}", accept),
            _cell(str(r.get("pretrain_steps", "–")), r.get("pretrain_steps")),
            _cell(_num(None if flops is None else flops / 1e9, "{:.1f}"), flops),
            _cell(_num(None if step is None else step / 1e9, "{:.2f}"), step),
            _cell(_num(r.get("pretrain_time_s"), "{:.0f}"), r.get("pretrain_time_s")),
            _cell(_num(r.get("pretrain_peak_rss_mb"), "{:.0f}"), r.get("pretrain_peak_rss_mb")),
            _cell(beats),
        ]))  # fmt: skip
    objectives = [c for f, c in built if f != FLOOR]
    for j, col in enumerate(_COLUMNS):
        if col.better:
            _mark_best(objectives, j, col.better == "higher")
    first = rows[0]
    label = (f"{first.get('downstream')} (chance {100 * (first.get('downstream_chance') or 0):.1f}%), budget "
             f"{(first.get('pretrain_budget_flops') or 0) / 1e9:.0f} GFLOP, {first.get('pretrain_seeds')} seed(s)")  # fmt: skip
    return RowGroup(label=label, rows=tuple(Row(labels=(f,), cells=tuple(c)) for f, c in built))


def tables(*runs: Mapping[str, Any]) -> list[Table]:
    """One table per group of the pretraining cells in ``runs`` (none when they hold none): the report's section."""
    out = []
    for group, rows in cells(*runs).items():
        out.append(Table(
            title=f"Pretraining objectives at equal compute · {group}", label_headers=("objective",),
            columns=_COLUMNS, groups=(group_rows(rows),),
            caption=f"Each {group} objective pretrains the same backbone size to the same FLOP budget (forward + "
            "backward of its real step, counted), then is evaluated on the group's held-out task: a linear probe "
            "on frozen features and a short fine-tune (mean ± 95% t interval over seeds), zero-shot from caption "
            "prompts (joint), perplexity and the fraction of sampled documents the grammar accepts (clm). "
            "vs floor: the probe accuracy against random-init's (beats / below: the 95% intervals do not overlap; "
            "≈ floor: they do); best objective per column in bold.",
        ))  # fmt: skip
    return out


def markdown(run: Mapping[str, Any], stem: str) -> str:
    """The report document."""
    from bench.report.render import markdown_table, md_escape

    found = tables(run)
    if not found:
        raise UsageError("the run holds no finished pretraining cells (suite 'pretraining', metric 'pretrain')")
    out = [f"# Pretraining objectives at equal compute: {md_escape(stem)}", "",
           f"Profile `{md_escape(str(run.get('profile') or '?'))}`.", ""]  # fmt: skip
    out += [markdown_table(t) for t in found]
    out += [f"![probe accuracy against pretraining FLOPs]({md_url(f'{stem}.probe-vs-flops.png')})", ""]
    return "\n".join(out)


def curve(row: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """Mean probe accuracy at each checkpoint (over seeds) against pretraining FLOPs, from the raw samples."""
    flops, acc = row["samples"].get("probe_curve_flops", []), row["samples"].get("probe_curve_acc", [])
    seeds = int(row.get("pretrain_seeds") or 1)
    per = len(flops) // max(1, seeds)
    if not per:
        return [], []
    xs = flops[:per]
    ys = [sum(acc[s * per + i] for s in range(seeds)) / seeds for i in range(per)]
    return xs, ys


def figure(*runs: Mapping[str, Any]) -> Any:
    """One panel per group: probe accuracy (%) against pretraining GFLOPs; the floor as a dashed line."""
    from bench.report.plotting import finish, new_figure

    groups = cells(*runs)
    fig, axes = new_figure(len(groups), 4.0 * len(groups), 3.2)
    for ax, (group, rows) in zip(axes, groups.items(), strict=True):
        for r in rows:
            xs, ys = curve(r)
            if r["family"] == FLOOR:
                ax.axhline(100 * r["probe_acc_mean"], color="0.4", linestyle="--", label=FLOOR)
            elif xs:
                ax.plot([x / 1e9 for x in xs], [100 * y for y in ys], marker="o", label=r["family"])
        ax.set_title(group)
        ax.set_xlabel("pretraining GFLOP")
        ax.set_ylabel("linear-probe accuracy (%)")
        ax.legend()
    return finish(fig, "probe-vs-flops", "probe accuracy vs pretraining FLOPs",
                  "Linear-probe accuracy at checkpoints along each objective's FLOP budget, mean over seeds.")  # fmt: skip


def write(run_path: Path, out: Path, force: bool = False) -> list[Path]:
    """Write the Markdown and the figure for ``run_path`` under ``out``; the written paths."""
    from bench.store import load_run

    run = load_run(run_path)
    stem = run_path.stem
    text = markdown(run, stem)
    fig = figure(run)
    files = {out / f"{stem}.pretraining.md": text.encode(), out / f"{stem}.probe-vs-flops.png": fig.png,
             out / f"{stem}.probe-vs-flops.svg": fig.svg}  # fmt: skip
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    for p, blob in files.items():
        p.write_bytes(blob)
    return list(files)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pretraining.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run", type=Path, help="a run file of the pretraining suite")
    p.add_argument(
        "--out", type=Path, default=Path("reports/pretraining"), help="folder (default: reports/pretraining)"
    )
    p.add_argument("--force", action="store_true", help="replace existing files")
    args = p.parse_args(argv)
    try:
        for path in write(args.run, args.out, args.force):
            print(f"report: {path}")
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"error: cannot write the report: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
