"""Report figures (matplotlib, no pyplot): PNG and SVG bytes that are identical for identical results.

Determinism: every order (families, tiers, devices) comes from the data, never from a set or the
clock; sizes, DPI and encoding are fixed in ``bench.report.plotting``, which also keeps the global
pyplot state and backend of the calling process alone.

Names in figures come from result files (untrusted): no text is parsed as mathtext (``text.parse_math``
off, so ``fam$\\x{$`` is drawn as typed), labels are one printable line of bounded length, and a figure
that still fails is left out and named (``failures``) instead of failing the whole report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bench.numbers import percent_scale
from bench.report.escape import printable, safe_component
from bench.report.formatting import fmt_sig, num, opt_int
from bench.report.frames import devices_of, prepare, scaling_slice
from bench.report.plotting import RC, FigureFile, Style, fig_text, finish, log_axis, new_figure
from bench.report.scaling_tables import SCALING_METRICS, analysis_entry, fit_exponent
from bench.result import Status

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
_Y_LABELS = {"latency_p50_ms": "latency p50 (ms)", "peak_memory_mb": "peak memory (MB)", "macs": "MACs / sequence"}


def _point_slice(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Cells compared across models in a figure, and a description of the choice.

    Inference at the smallest batch size, fp32 when present; in sequence suites, the length measured
    by the most cells (the longest on a tie), so every model shows one point.
    """
    df = scaling_slice(frame)
    if df.empty:
        return df, ""
    desc = [f"{df['dtype'].iloc[0]}", f"batch {int(df['batch_size'].iloc[0])}"]
    lens = [opt_int(v) for v in df["seq_len"]]
    if any(t is not None for t in lens):
        counts: dict[int, int] = {}
        for t in lens:
            if t is not None:
                counts[t] = counts.get(t, 0) + 1
        T = max(counts, key=lambda t: (counts[t], t))
        df = df[[t == T for t in lens]]
        desc.append(f"T={T}")
    return df, ", ".join(desc)


def build_figures(
    frame: pd.DataFrame, analyses: Sequence[Mapping[str, Any]] = (), failures: list[str] | None = None
) -> list[FigureFile]:
    """Every figure the data supports, for one suite's frame (``load_results`` shape).

    ``analyses`` are the runs' stored scaling fits (``RunAnalysis.fits``); a matching fit's exponent
    goes into the scaling figure's legend, else the exponent is fitted here. A figure that fails to
    draw is left out, logged as a warning and, when ``failures`` is given, named there in one line.
    """
    import matplotlib

    df = prepare(frame)
    if df.empty:
        return []
    out: list[FigureFile] = []
    with matplotlib.rc_context(RC):
        style = Style(df)
        pts, desc = _point_slice(df)
        desc = fig_text(desc)
        suite = fig_text(df["suite"].iloc[0])
        makers = (("latency-vs-params", _latency_vs_params), ("accuracy-vs-latency", _accuracy_vs_latency),
                  ("peak-memory", _peak_memory))  # fmt: skip
        for name, make in makers:
            with _failing_figure(name, failures):
                made = make(pts, df, style, suite, desc)
                if made is not None:
                    out.append(made)
        with _failing_figure("scaling", failures):
            out += _scaling(df, style, suite, analyses)
        with _failing_figure("executions", failures):
            made = _executions(df, suite)
            if made is not None:
                out.append(made)
    return out


@contextmanager
def _failing_figure(name: str, failures: list[str] | None) -> Iterator[None]:
    """Catch a figure's failure: matplotlib can fail on data (a label, an extreme size) in many ways, and one
    figure must never cost the report its tables."""
    try:
        yield
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        line = printable(f"{name}: {type(e).__name__}: {first}")[:300]
        log.warning("figure not drawn: %s", line)
        if failures is not None:
            failures.append(line)


def _latency_vs_params(pts: pd.DataFrame, df: pd.DataFrame, style: Style, suite: str, desc: str) -> FigureFile | None:
    pts = pts[[num(p) > 0 and num(lat) > 0 for p, lat in zip(pts["params"], pts["latency_p50_ms"], strict=True)]]
    if pts.empty:
        return None
    devices = devices_of(pts)
    fig, axes = new_figure(len(devices), 4.6 * len(devices) + 1.6, 4.0)
    for ax, device in zip(axes, devices, strict=True):
        d = pts[pts["device"] == device]
        for r in d.itertuples():
            ax.scatter(num(r.params) / 1e6, num(r.latency_p50_ms), color=style.color[r.family],
                       marker=style.marker[r.tier], s=42, edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_axis(ax.xaxis, [num(v) / 1e6 for v in d["params"]])
        log_axis(ax.yaxis, [num(v) for v in d["latency_p50_ms"]])
        ax.set_xlabel("params (M)")
        ax.set_ylabel("latency p50 (ms)")
        ax.set_title(f"{fig_text(device)} · {desc}")
    fams = list(dict.fromkeys(f for f in style.families if f in set(pts["family"])))
    tiers = [t for t in style.tiers if t in set(pts["tier"])]
    fig.legend(handles=style.legend_handles(fams, tiers), loc="outside right upper")
    fig.suptitle(f"{suite}: latency vs parameters")
    return finish(fig, "latency-vs-params", "Latency vs parameters",
                   f"Median latency against parameter count (log-log), {desc}; colour = family, marker = tier.")  # fmt: skip


def _accuracy(df: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(tier, family, model) -> (accuracy mean, std) from any ok cell that stores it."""
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    if "accuracy_mean" not in df:
        return out
    for r in df[df["status"] == Status.OK.value].to_dict("records"):
        m = num(r.get("accuracy_mean"))
        if math.isfinite(m):
            out.setdefault((r["tier"], r["family"], r["model"]), (m, num(r.get("accuracy_std"))))
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (latency, accuracy) not beaten by a faster-or-equal, at-least-as-accurate point; by latency."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _accuracy_vs_latency(pts: pd.DataFrame, df: pd.DataFrame, style: Style, suite: str, desc: str) -> FigureFile | None:
    from matplotlib.lines import Line2D

    acc = _accuracy(df)
    if not acc or pts.empty:
        return None
    scale = percent_scale(m for m, _ in acc.values())  # stored as fractions: shown in percent
    devices = [
        d
        for d in devices_of(pts)
        if any((r.tier, r.family, r.model) in acc for r in pts[pts["device"] == d].itertuples())
    ]
    if not devices:
        return None
    fig, axes = new_figure(len(devices), 4.6 * len(devices) + 1.8, 4.0)
    tiers_used: list[str] = []
    for ax, device in zip(axes, devices, strict=True):
        d = pts[pts["device"] == device]
        by_tier: dict[str, list[tuple[float, float]]] = {}
        for r in d.itertuples():
            a = acc.get((r.tier, r.family, r.model))
            lat = num(r.latency_p50_ms)
            if a is None or not lat > 0:
                continue
            m, s = a[0] * scale, a[1] * scale
            ax.errorbar(lat, m, yerr=s if math.isfinite(s) else None, color=style.color[r.family], marker=style.marker[r.tier],
                        markersize=7, markeredgecolor="black", markeredgewidth=0.5, capsize=2, linestyle="", zorder=3)  # fmt: skip
            by_tier.setdefault(r.tier, []).append((lat, m))
        for tier in style.tiers:
            front = pareto_front(by_tier.get(tier, []))
            if front:
                ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="0.45",
                        linestyle=style.line[tier], linewidth=1.2, zorder=2)  # fmt: skip
                if tier not in tiers_used:
                    tiers_used.append(tier)
        ax.set_xscale("log")
        log_axis(ax.xaxis, [num(v) for v in d["latency_p50_ms"]])
        ax.set_xlabel("latency p50 (ms)")
        ax.set_ylabel("accuracy (%)" if scale == 100.0 else "accuracy")
        ax.set_title(f"{fig_text(device)} · {desc}")
    fams = [f for f in style.families if any(k[1] == f for k in acc)]
    handles = style.legend_handles(fams, tiers_used)
    handles += [
        Line2D([], [], color="0.45", linestyle=style.line[t], label=fig_text(f"Pareto front {t}")) for t in tiers_used
    ]
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"{suite}: accuracy vs latency")
    return finish(fig, "accuracy-vs-latency", "Accuracy vs latency",
                   f"Accuracy (mean ± std over seeds) against median latency, {desc}; the step line per tier is its "
                   "Pareto front (no other model of the tier is both faster and more accurate).")  # fmt: skip


def _peak_memory(pts: pd.DataFrame, df: pd.DataFrame, style: Style, suite: str, desc: str) -> FigureFile | None:
    if "peak_memory_mb" not in pts or not any(num(v) > 0 for v in pts["peak_memory_mb"]):
        return None
    devices = [d for d in devices_of(pts) if any(num(v) > 0 for v in pts[pts["device"] == d]["peak_memory_mb"])]
    tiers = [t for t in style.tiers if t in set(pts["tier"])]
    fams = [f for f in style.families if f in set(pts["family"])]
    width = 0.8 / max(1, len(fams))
    # one row per device: nine families x three tiers side by side would not fit a page
    fig_w = min(13.0, max(6.0, 0.32 * len(tiers) * len(fams) + 2.5))
    fig, axes = new_figure(1, fig_w, 3.4 * len(devices) + 0.4, nrows=len(devices))
    for ax, device in zip(axes, devices, strict=True):
        d = pts[pts["device"] == device]
        vals = {(r.tier, r.family): num(r.peak_memory_mb) for r in d.itertuples()}
        top = max([v for v in vals.values() if math.isfinite(v)] + [1.0])
        for j, fam in enumerate(fams):
            xs = [i + (j - (len(fams) - 1) / 2) * width for i in range(len(tiers))]
            hs = [vals.get((t, fam), math.nan) for t in tiers]
            ax.bar(
                xs,
                [h if math.isfinite(h) else 0 for h in hs],
                width=width * 0.92,
                color=style.color[fam],
                label=fig_text(fam),
            )
            for x, h in zip(xs, hs, strict=True):
                if math.isfinite(h):
                    ax.text(x, h + top * 0.01, fmt_sig(h), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_ylim(0, top * 1.18)
        ax.set_xticks(range(len(tiers)), [fig_text(t) for t in tiers])
        ax.set_xlabel("tier")
        ax.set_ylabel("peak memory (MB)")
        ax.set_title(f"{fig_text(device)} · {desc}")
        ax.grid(axis="x", visible=False)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=style.color[f], label=fig_text(f)) for f in fams], loc="outside right upper")
    fig.suptitle(f"{suite}: peak memory")
    return finish(fig, "peak-memory", "Peak memory",
                   f"Peak memory per model, {desc}; bars grouped by tier, colour = family.")  # fmt: skip


def _scaling(df: pd.DataFrame, style: Style, suite: str, analyses: Sequence[Mapping[str, Any]]) -> list[FigureFile]:
    seq = df[[opt_int(v) is not None for v in df["seq_len"]]]
    sl = scaling_slice(seq) if len(seq) else seq
    if sl.empty or len({opt_int(v) for v in sl["seq_len"]}) < 2:
        return []
    out = []
    for device in devices_of(sl):
        d = sl[sl["device"] == device]
        metrics = [(m, label) for m, label in SCALING_METRICS if m in d and any(num(v) > 0 for v in d[m])]
        if not metrics:
            continue
        models = list(
            dict.fromkeys(
                (r.tier, r.family, r.model)
                for r in d.sort_values(["_tier_rank", "_family_rank"], kind="stable").itertuples()
            )
        )
        many = len(models) > 6
        if many:  # one row per metric, legend beside it: long legends under narrow panels would collide
            ncol = 1 if len(models) <= 14 else 2
            fig, axes = new_figure(1, 8.5 + 2.4 * ncol, max(3.2, 0.18 * math.ceil(len(models) / ncol) + 0.9) * len(metrics),
                             nrows=len(metrics))  # fmt: skip
        else:
            fig, axes = new_figure(len(metrics), 4.4 * len(metrics), 3.6 + 0.2 * len(models))
        for ax, (metric, label) in zip(axes, metrics, strict=True):
            ys: list[float] = []
            for tier, family, model in models:
                g = d[(d["tier"] == tier) & (d["model"] == model)].sort_values("_T", key=lambda s: s.map(int))
                x = [int(t) for t in g["_T"]]
                y = [
                    num(v) / (int(b) if metric == "macs" else 1)
                    for v, b in zip(g[metric], g["batch_size"], strict=True)
                ]
                keep = [(a, b) for a, b in zip(x, y, strict=True) if b > 0]
                if not keep:
                    continue
                ys += [b for _, b in keep]
                e = analysis_entry(analyses, metric, family=family, tier=tier, model=model, device=device,
                                   dtype=d["dtype"].iloc[0], batch_size=int(d["batch_size"].iloc[0]), mode=d["mode"].iloc[0])  # fmt: skip
                fit = (
                    (num(e["exponent"]), None)
                    if e is not None
                    else fit_exponent([a for a, _ in keep], [b for _, b in keep])
                )
                name = fig_text(family) + (f" · {fig_text(tier)}" if len(style.tiers) > 1 else "")
                lab = f"{name}: k={fit[0]:.2f}" if fit is not None else name
                ax.plot([a for a, _ in keep], [b for _, b in keep], color=style.color[family], marker=style.marker[tier],
                        linestyle=style.line[tier], markersize=4, label=lab)  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            log_axis(ax.xaxis, [], base=2)
            log_axis(ax.yaxis, ys)
            ax.set_xlabel("sequence length T")
            ax.set_ylabel(_Y_LABELS.get(metric, metric))
            ax.set_title(f"{label} ∝ T^k")
            if many:
                ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), ncols=ncol, frameon=False)
            else:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1, frameon=False)
        fig.suptitle(f"{suite}: scaling with sequence length · {fig_text(device)} · {fig_text(d['dtype'].iloc[0])} · "
                     f"batch {int(d['batch_size'].iloc[0])}")  # fmt: skip
        # the device comes from the file and goes into a file name: one safe component
        out.append(finish(fig, f"scaling-{safe_component(device)}", f"Scaling with sequence length ({fig_text(device)})",
                           "Latency, peak memory and MACs against sequence length (log-log), one line per model; k in "
                           "the legend is the exponent of y ∝ T^k (from the run's analysis when stored, else fitted here)."))  # fmt: skip
    return out


def _executions(df: pd.DataFrame, suite: str) -> FigureFile | None:
    """Eager against the other executions: p50 latency per family at matched size (one tier), one panel per
    device and batch size; drawn only when the frame holds eager and at least one other execution."""
    import matplotlib

    from bench.report.main_table import _execution_rank, _executions

    ok = df[
        [s == Status.OK.value and num(v) > 0 for s, v in zip(df["status"], df["latency_p50_ms"], strict=True)]
    ].copy()
    ok["exn"] = _executions(ok)
    if (ok["mode"] == "infer").any():
        ok = ok[ok["mode"] == "infer"]
    execs = sorted(set(ok["exn"]), key=_execution_rank)
    if "eager" not in execs or len(execs) < 2:
        return None
    tier = ok.sort_values("_tier_rank", kind="stable")["tier"].iloc[0]  # matched size: one tier
    ok = ok[ok["tier"] == tier]
    lens = [opt_int(v) for v in ok["seq_len"]]
    if any(t is not None for t in lens):  # sequence suites: the longest length every execution measured
        common = set.intersection(*({t for t, e in zip(lens, ok["exn"], strict=True) if e == x} for x in execs))
        if not common:
            return None
        T = max(t for t in common if t is not None)
        ok = ok[[t == T for t in lens]]
    panels = [
        (d, int(b)) for d in devices_of(ok) for b in sorted({int(x) for x in ok[ok["device"] == d]["batch_size"]})
    ]
    fams = list(dict.fromkeys(ok.sort_values("_family_rank", kind="stable")["family"]))
    cmap = matplotlib.colormaps["tab10"]
    colors = {e: cmap(i % 10) for i, e in enumerate(execs)}
    width = 0.8 / len(execs)
    fig, axes = new_figure(1, min(14.0, max(7.5, 0.45 * len(fams) * len(execs) + 2.5)), 3.2 * len(panels) + 0.6,
                           nrows=len(panels))  # fmt: skip
    for ax, (device, batch) in zip(axes, panels, strict=True):
        d = ok[(ok["device"] == device) & (ok["batch_size"] == batch)]
        vals = {(r.family, r.exn): num(r.latency_p50_ms) for r in d.itertuples()}
        for j, ex in enumerate(execs):
            xs = [i + (j - (len(execs) - 1) / 2) * width for i in range(len(fams))]
            hs = [vals.get((f, ex), math.nan) for f in fams]
            ax.bar(xs, [h if math.isfinite(h) else 0 for h in hs], width=width * 0.92, color=colors[ex],
                   label=fig_text(ex))  # fmt: skip
        ax.set_yscale("log")
        log_axis(ax.yaxis, [v for v in vals.values() if math.isfinite(v)])
        ax.set_xticks(range(len(fams)), [fig_text(f) for f in fams])
        ax.set_ylabel("latency p50 (ms)")
        ax.set_title(f"{fig_text(device)} · batch {batch}" + (f" · T={T}" if any(t is not None for t in lens) else ""))
        ax.grid(axis="x", visible=False)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=colors[e], label=fig_text(e)) for e in execs], loc="outside right upper")
    fig.suptitle(f"{suite}: eager vs other executions · tier {fig_text(tier)}")
    return finish(fig, "executions", "Eager vs compiled (executions)",
                  f"Median latency per family at matched size (tier {fig_text(tier)}), one bar per execution "
                  "(log scale; lower is faster); a missing bar is a cell that did not finish or does not apply.")  # fmt: skip
