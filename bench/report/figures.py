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
_Y_LABELS = {"latency_p50_ms": "latency p50 (ms)", "peak_memory_mb": "peak memory (MB)", "macs": "MACs / sequence",
             "activations_mb": "activations (MB)"}  # fmt: skip


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
            with failing_figure(name, failures):
                made = make(pts, df, style, suite, desc)
                if made is not None:
                    out.append(made)
        with failing_figure("scaling", failures):
            out += _scaling(df, style, suite, analyses)
        with failing_figure("executions", failures):
            made = _executions(df, suite)
            if made is not None:
                out.append(made)
    return out


@contextmanager
def failing_figure(name: str, failures: list[str] | None) -> Iterator[None]:
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


def _invalid(row: Any) -> bool:
    """Whether the row's latency is one ``bench.validity`` rejects (drawn hollow and labelled, never hidden)."""
    from bench.validity import INVALID

    get = row.get if isinstance(row, Mapping) else lambda k, d=None: getattr(row, k, d)
    return get("latency_validity", None) == INVALID


#: the caption's sentence for figures that draw an INVALID latency
INVALID_NOTE = ("Hollow points / hatched bars marked INVALID are latencies the validity checks reject (see the "
                "report's Validity section): shown, not trusted.")  # fmt: skip


def _latency_vs_params(pts: pd.DataFrame, df: pd.DataFrame, style: Style, suite: str, desc: str) -> FigureFile | None:
    """A dot plot per tier: sizes are matched by design, so latency against parameters would stack each tier's
    models in one unlabelled column; here every model has its own labelled row (family and measured size),
    fastest at the top, with its latency written beside the point."""
    pts = pts[[num(p) > 0 and num(lat) > 0 for p, lat in zip(pts["params"], pts["latency_p50_ms"], strict=True)]]
    if pts.empty:
        return None
    devices = devices_of(pts)
    tiers = [t for t in style.tiers if t in set(pts["tier"])]
    rows = {t: max(int(((pts["tier"] == t) & (pts["device"] == d)).sum()) for d in devices) for t in tiers}
    fig, axes = new_figure(len(devices), 4.8 * len(devices) + 1.4, sum(0.22 * n + 0.75 for n in rows.values()) + 0.5,
                           nrows=len(tiers), height_ratios=[0.22 * rows[t] + 0.75 for t in tiers])  # fmt: skip
    for i, tier in enumerate(tiers):
        for j, device in enumerate(devices):
            ax = axes[i * len(devices) + j]
            d = pts[(pts["tier"] == tier) & (pts["device"] == device)].to_dict("records")
            d.sort(key=lambda r: -num(r["latency_p50_ms"]))  # slowest at the bottom, fastest at the top
            lats = [num(r["latency_p50_ms"]) for r in d]
            for y, r in enumerate(d):
                bad = _invalid(r)
                ax.scatter(lats[y], y, color=style.color[r["family"]], marker=style.marker[tier], s=40,
                           edgecolors=style.color[r["family"]] if bad else "black", linewidths=1.2 if bad else 0.5,
                           facecolors="none" if bad else None, zorder=3)  # fmt: skip
                ax.annotate(f"{fmt_sig(lats[y])} ms" + (" INVALID" if bad else ""), (lats[y], y), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=7)  # fmt: skip
            ax.set_yticks(range(len(d)), [f"{fig_text(r['family'])} ({fmt_sig(num(r['params']) / 1e6)}M)" for r in d])
            ax.set_ylim(-0.6, max(len(d), 1) - 0.4)
            ax.set_xscale("log")
            log_axis(ax.xaxis, lats)
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo, hi * (hi / lo) ** 0.18)  # room for the value beside the rightmost point
            ax.grid(axis="y", visible=False)
            ax.set_title(f"tier {fig_text(tier)} · {fig_text(device)}", fontsize=9)
            if i == len(tiers) - 1:
                ax.set_xlabel("latency p50 (ms, log scale)")
    fig.suptitle(f"{suite}: latency at matched size · {desc}")
    note = f" {INVALID_NOTE}" if any(_invalid(r) for r in pts.to_dict("records")) else ""
    return finish(fig, "latency-vs-params", "Latency at matched size",
                  f"Median latency of every model, one panel per tier (models of matched parameter count) and device, "
                  f"fastest at the top; each row names the family and its measured parameter count; {desc}.{note}")  # fmt: skip


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
    any_invalid = False
    marked = [t for t in style.tiers if any(k[0] == t for k in acc)]
    for ax, device in zip(axes, devices, strict=True):
        d = pts[pts["device"] == device]
        by_tier: dict[str, list[tuple[float, float]]] = {}
        for r in d.itertuples():
            a = acc.get((r.tier, r.family, r.model))
            lat = num(r.latency_p50_ms)
            if a is None or not lat > 0:
                continue
            m, s = a[0] * scale, a[1] * scale
            bad = _invalid(r)
            any_invalid = any_invalid or bad
            ax.errorbar(lat, m, yerr=s if math.isfinite(s) else None, color=style.color[r.family], marker=style.marker[r.tier],
                        markersize=7, markeredgecolor=style.color[r.family] if bad else "black",
                        markeredgewidth=1.2 if bad else 0.5, markerfacecolor="none" if bad else style.color[r.family],
                        capsize=2, linestyle="", zorder=3)  # fmt: skip
            if bad:  # shown, labelled, and kept off the Pareto front: an untrusted latency defines nothing
                ax.annotate("INVALID", (lat, m), xytext=(5, 4), textcoords="offset points", fontsize=6)
                continue
            by_tier.setdefault(r.tier, []).append((lat, m))
        plotted = [num(r.latency_p50_ms) for r in d.itertuples()
                   if (r.tier, r.family, r.model) in acc and num(r.latency_p50_ms) > 0]  # fmt: skip
        for tier in style.tiers:
            front = pareto_front(by_tier.get(tier, []))
            if front:  # the staircase runs on to the slowest point: one dominating model still draws a line
                xs = [p[0] for p in front] + [max(x for x, _ in by_tier[tier])]
                ax.step(xs, [p[1] for p in front] + [front[-1][1]], where="post", color="0.45",
                        linestyle=style.line[tier], linewidth=1.2, zorder=2)  # fmt: skip
                if tier not in tiers_used:
                    tiers_used.append(tier)
        ax.set_xscale("log")
        log_axis(ax.xaxis, plotted)  # the limits of the points drawn, not of every cell's latency
        ax.set_xlabel("latency p50 (ms)")
        ax.set_ylabel("accuracy (%)" if scale == 100.0 else "accuracy")
        ax.set_title(f"{fig_text(device)} · {desc}")
    fams = [f for f in style.families if any(k[1] == f for k in acc)]
    handles = style.legend_handles(fams, marked)
    handles += [
        Line2D([], [], color="0.45", linestyle=style.line[t], label=fig_text(f"Pareto front {t}")) for t in tiers_used
    ]
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"{suite}: accuracy vs latency")
    return finish(fig, "accuracy-vs-latency", "Accuracy vs latency",
                   f"Accuracy (mean ± std over seeds) against median latency, {desc}; the step line per tier is its "
                   "Pareto front (no other model of the tier is both faster and more accurate)."
                   + (f" {INVALID_NOTE} INVALID points are left off the fronts." if any_invalid else ""))  # fmt: skip


def _peak_memory(pts: pd.DataFrame, df: pd.DataFrame, style: Style, suite: str, desc: str) -> FigureFile | None:
    """Bars per family, one panel per tier and device, each with its own axis: a 2 MB micro model and a 500 MB
    small one on one linear axis would leave the small tiers' bars invisible."""
    if "peak_memory_mb" not in pts or not any(num(v) > 0 for v in pts["peak_memory_mb"]):
        return None
    devices = [d for d in devices_of(pts) if any(num(v) > 0 for v in pts[pts["device"] == d]["peak_memory_mb"])]
    tiers = [t for t in style.tiers if t in set(pts["tier"])]
    fams = [f for f in style.families if f in set(pts["family"])]
    panel_w = max(2.4, 0.34 * len(fams) + 0.9)
    fig, axes = new_figure(len(tiers), min(16.0, panel_w * len(tiers) + 1.8), 3.3 * len(devices) + 0.4,
                           nrows=len(devices))  # fmt: skip
    for i, device in enumerate(devices):
        for j, tier in enumerate(tiers):
            ax = axes[i * len(tiers) + j]
            d = pts[(pts["device"] == device) & (pts["tier"] == tier)]
            vals = {r.family: num(r.peak_memory_mb) for r in d.itertuples()}
            here = [f for f in fams if math.isfinite(vals.get(f, math.nan))]
            top = max([vals[f] for f in here] + [1e-9])
            ax.bar(range(len(here)), [vals[f] for f in here], color=[style.color[f] for f in here], width=0.8)
            for x, f in enumerate(here):
                ax.text(x, vals[f] + top * 0.015, fmt_sig(vals[f]), ha="center", va="bottom", fontsize=7, rotation=90)
            ax.set_ylim(0, top * 1.25)
            ax.set_xticks(range(len(here)), [fig_text(f) for f in here], rotation=60, ha="right", fontsize=7)
            ax.set_ylabel("peak memory (MB)" if j == 0 else "")
            ax.set_title(f"tier {fig_text(tier)} · {fig_text(device)}", fontsize=9)
            ax.grid(axis="x", visible=False)
    fig.suptitle(f"{suite}: peak memory · {desc}")
    return finish(fig, "peak-memory", "Peak memory",
                  f"Peak memory per model, {desc}; one panel per tier, each with its own scale; colour = family.")  # fmt: skip


#: family-name parts that say how a sequence model mixes positions: the scaling figure's facets
_KINDS = (("recurrent", ("rnn", "lstm", "gru", "mamba", "ssm", "rwkv")),
          ("attention", ("transformer", "attention", "attn", "bert", "gpt", "vit", "t2t")))  # fmt: skip


def family_kind(family: str) -> str:
    """``recurrent``, ``attention`` or ``other``, from the family's name (``bigru`` -> recurrent)."""
    name = family.lower()
    for kind, parts in _KINDS:
        if any(p in name for p in parts):
            return kind
    return "other"


def _scaling(df: pd.DataFrame, style: Style, suite: str, analyses: Sequence[Mapping[str, Any]]) -> list[FigureFile]:
    """Per device: one row per metric, one column per kind of family (recurrent, attention, other), so no panel
    holds more than a handful of lines; models measured at one length only (no slope) are left out."""
    seq = df[[opt_int(v) is not None for v in df["seq_len"]]]
    sl = scaling_slice(seq) if len(seq) else seq
    if sl.empty or len({opt_int(v) for v in sl["seq_len"]}) < 2:
        return []
    out = []
    for device in devices_of(sl):
        d = sl[sl["device"] == device]
        metrics = [(m, label) for m, label in SCALING_METRICS if m in d and any(num(v) > 0 for v in d[m])]
        ordered = d.sort_values(["_tier_rank", "_family_rank"], kind="stable")
        models = [m for m in dict.fromkeys((r.tier, r.family, r.model) for r in ordered.itertuples())
                  if len({int(t) for t in d[(d["tier"] == m[0]) & (d["model"] == m[2])]["_T"]}) >= 2]  # fmt: skip
        if not metrics or not models:
            continue
        kinds = [k for k in ("recurrent", "attention", "other") if any(family_kind(f) == k for _t, f, _m in models)]
        one_tier = len({t for t, _f, _m in models}) == 1
        fig, axes = new_figure(len(kinds), 4.3 * len(kinds) + 0.4, 2.9 * len(metrics) + 0.5, nrows=len(metrics))
        for i, (metric, label) in enumerate(metrics):
            for j, kind in enumerate(kinds):
                ax, ys = axes[i * len(kinds) + j], []
                for tier, family, model in (m for m in models if family_kind(m[1]) == kind):
                    g = d[(d["tier"] == tier) & (d["model"] == model)].sort_values("_T", key=lambda s: s.map(int))
                    per = [int(b) if metric == "macs" else 1 for b in g["batch_size"]]
                    keep = [(int(t), num(v) / b) for t, v, b in zip(g["_T"], g[metric], per, strict=True) if num(v) > 0]
                    if len(keep) < 2:
                        continue
                    ys += [y for _, y in keep]
                    e = analysis_entry(analyses, metric, family=family, tier=tier, model=model, device=device,
                                       dtype=d["dtype"].iloc[0], batch_size=int(d["batch_size"].iloc[0]),
                                       mode=d["mode"].iloc[0])  # fmt: skip
                    fit = (num(e["exponent"]), None) if e is not None else fit_exponent(*zip(*keep, strict=True))
                    name = fig_text(family) + ("" if one_tier else f" · {fig_text(tier)}")
                    ax.plot([x for x, _ in keep], [y for _, y in keep], color=style.color[family], marker=style.marker[tier],
                            linestyle=style.line[tier], markersize=4,
                            label=f"{name}: k={fit[0]:.2f}" if fit is not None else name)  # fmt: skip
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                log_axis(ax.xaxis, [], base=2)
                log_axis(ax.yaxis, ys)
                ax.set_xlabel("sequence length T" if i == len(metrics) - 1 else "")
                ax.set_ylabel(_Y_LABELS.get(metric, label) if j == 0 else "")
                ax.set_title(f"{kind} · {label} ∝ T^k", fontsize=9)
                if ys:
                    ax.legend(loc="upper left", fontsize=7, frameon=True, framealpha=0.8)
        fig.suptitle(f"{suite}: scaling with sequence length · {fig_text(device)} · {fig_text(d['dtype'].iloc[0])} · "
                     f"batch {int(d['batch_size'].iloc[0])}")  # fmt: skip
        # the device comes from the file and goes into a file name: one safe component
        out.append(finish(fig, f"scaling-{safe_component(device)}", f"Scaling with sequence length ({fig_text(device)})",
                          "Latency, peak memory, MACs and activations against sequence length (log-log), one line per "
                          "model, recurrent and attention families in separate columns; k in the legend is the exponent "
                          "of y ∝ T^k (from the run's analysis when stored, else fitted here)."))  # fmt: skip
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
    any_invalid = False
    fig, axes = new_figure(1, min(14.0, max(7.5, 0.45 * len(fams) * len(execs) + 2.5)), 3.2 * len(panels) + 0.6,
                           nrows=len(panels))  # fmt: skip
    for ax, (device, batch) in zip(axes, panels, strict=True):
        d = ok[(ok["device"] == device) & (ok["batch_size"] == batch)]
        vals = {(r.family, r.exn): num(r.latency_p50_ms) for r in d.itertuples()}
        bad = {(r.family, r.exn) for r in d.itertuples() if _invalid(r)}
        any_invalid = any_invalid or bool(bad)
        for j, ex in enumerate(execs):
            xs = [i + (j - (len(execs) - 1) / 2) * width for i in range(len(fams))]
            hs = [vals.get((f, ex), math.nan) for f in fams]
            bars = ax.bar(xs, [h if math.isfinite(h) else 0 for h in hs], width=width * 0.92, color=colors[ex],
                          label=fig_text(ex))  # fmt: skip
            for bar, f in zip(bars, fams, strict=True):
                if (f, ex) in bad:
                    bar.set_hatch("////")
                    bar.set_edgecolor("black")
                    ax.annotate("INVALID", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                                textcoords="offset points", ha="center", rotation=90, fontsize=6)  # fmt: skip
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
                  "(log scale; lower is faster); a missing bar is a cell that did not finish or does not apply."
                  + (f" {INVALID_NOTE}" if any_invalid else ""))  # fmt: skip
