"""The pretraining report: objective x metric tables per group and probe accuracy against pretraining FLOPs.

``python -m bench.pretraining.report RUN.json [--out reports/pretraining]`` writes ``<stem>.pretraining.md``
(a table per group, the random-init floor and which objectives beat it) and ``<stem>.probe-vs-flops.{png,svg}``
(one panel per group: the linear-probe accuracy at each checkpoint along the budget, mean over seeds).
``aigc-bench report`` writes the suite's usual report beside it. Output is deterministic (no dates); an
existing file is replaced only with ``--force``. Exit codes: 0 written, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import EXIT_USAGE, BenchError, UsageError

GROUP_ORDER = ("language", "vision", "joint")
FLOOR = "random-init"


def _pct(mean: Any, ci: Any) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * ci:.1f}" if ci is not None else "")


def _num(v: Any, fmt: str = "{:.3g}") -> str:
    return "–" if v is None else fmt.format(v)


def cells(run: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The run's ok ``pretraining`` records by group (tier), in suite order; each with its family and metrics."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in run["records"]:
        key = r["key"]
        if key.get("suite") != "pretraining" or r.get("status") != "ok" or "probe_acc_mean" not in r["metrics"]:
            continue
        out.setdefault(key["tier"], []).append({"family": key["family"], **r["metrics"],
                                                "samples": r.get("samples") or {}})  # fmt: skip
    return {g: out[g] for g in (*GROUP_ORDER, *sorted(set(out) - set(GROUP_ORDER))) if g in out}


def group_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines: one row per objective, the floor's probe accuracy compared with each."""
    floor = next((r["probe_acc_mean"] for r in rows if r["family"] == FLOOR), None)
    head = ["objective", "probe acc % (±95% CI)", "fine-tune acc % (±95% CI)", "zero-shot %", "perplexity",
            "grammar accept %", "steps", "pretrain GFLOP", "step GFLOP", "time (s)", "peak RSS (MB)", "vs floor"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        beats = (
            "floor"
            if r["family"] == FLOOR or floor is None
            else ("beats" if r["probe_acc_mean"] > floor else "**below**")
        )
        accept = r.get("grammar_accept")
        cols = [r["family"], _pct(r["probe_acc_mean"], r.get("probe_acc_ci95")),
                _pct(r.get("finetune_acc_mean"), r.get("finetune_acc_ci95")),
                _pct(r.get("zeroshot_acc_mean"), r.get("zeroshot_acc_ci95")) if "zeroshot_acc_mean" in r else "–",
                _num(r.get("clm_perplexity"), "{:.2f}"), "–" if accept is None else f"{100 * accept:.1f}",
                str(r.get("pretrain_steps", "–")), _num((r.get("pretrain_flops") or 0) / 1e9, "{:.1f}"),
                _num((r.get("step_flops") or 0) / 1e9, "{:.2f}"), _num(r.get("pretrain_time_s"), "{:.0f}"),
                _num(r.get("pretrain_peak_rss_mb"), "{:.0f}"), beats]  # fmt: skip
        lines.append("| " + " | ".join(cols) + " |")
    return lines


def markdown(run: Mapping[str, Any], stem: str) -> str:
    """The report document."""
    groups = cells(run)
    if not groups:
        raise UsageError("the run holds no finished pretraining cells (suite 'pretraining', metric 'pretrain')")
    out = [f"# Pretraining objectives at equal compute: {stem}", "",
           f"Profile `{run.get('profile') or '?'}`. Each objective of a group pretrains the same "
           "backbone size to the same FLOP budget (forward + backward of its real step, counted), then is "
           "evaluated on the group's held-out task: a linear probe on frozen features and a short fine-tune "
           "(mean ± 95% t interval over seeds), zero-shot from caption prompts (joint), perplexity and the "
           "fraction of sampled documents the grammar accepts (clm). `vs floor`: probe accuracy against "
           "random-init's.", ""]  # fmt: skip
    for group, rows in groups.items():
        first = rows[0]
        out += [f"## {group}", "", f"Downstream task `{first.get('downstream')}` (chance "
                f"{100 * (first.get('downstream_chance') or 0):.1f}%), budget "
                f"{(first.get('pretrain_budget_flops') or 0) / 1e9:.0f} GFLOP per objective, "
                f"{first.get('pretrain_seeds')} seed(s).", ""]  # fmt: skip
        out += group_table(rows) + [""]
    out += [f"![probe accuracy against pretraining FLOPs]({stem}.probe-vs-flops.png)", ""]
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


def figure(run: Mapping[str, Any]) -> Any:
    """One panel per group: probe accuracy (%) against pretraining GFLOPs; the floor as a dashed line."""
    from bench.report.plotting import finish, new_figure

    groups = cells(run)
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
