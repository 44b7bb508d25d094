"""The roofline figure, one per device: every inference cell at (arithmetic intensity, achieved GFLOP/s), under
the ceilings of the machine's measured peak (GEMM GFLOP/s per dtype, memory bandwidth).

Log-log; colour = family, marker = tier, marker size grows with the batch. A cell sits under the bandwidth
slope (memory-bound) left of the ridge point and under the GEMM ceiling right of it; its height below the
roof is what the machine left on the table. Intensity comes from ``bytes_moved`` (a no-reuse upper bound), so
a point may sit to the left of where the hardware really was. Deterministic like every report figure
(``bench.report.plotting``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bench.report.escape import safe_component
from bench.report.formatting import fmt_sig, num
from bench.report.frames import devices_of, prepare
from bench.report.plotting import RC, FigureFile, Style, fig_text, finish, log_axis, new_figure
from bench.result import Status

if TYPE_CHECKING:
    import pandas as pd

    from bench.peak import Peak

_CEILING_STYLES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}


def latest_peaks(docs: Sequence[Mapping[str, Any]], device: str) -> dict[str, Peak]:
    """dtype -> the peak of ``device`` stored by the latest run that measured one (runs sorted by id)."""
    from bench.peak import measured

    out: dict[str, Peak] = {}
    for doc in sorted(docs, key=lambda d: str(d.get("run_id"))):
        for p in measured(doc.get("env")):
            if p.device == device:
                out[p.dtype] = p
    return out


def roofline_figures(frame: pd.DataFrame, docs: Sequence[Mapping[str, Any]]) -> list[FigureFile]:
    """One roofline figure per device with inference cells that have both an intensity and achieved GFLOP/s."""
    import matplotlib

    if "achieved_gflops" not in frame or "arith_intensity" not in frame:
        return []
    df = prepare(frame)
    df = df[(df["status"] == Status.OK.value) & (df["mode"] == "infer")]
    df = df[[num(x) > 0 and num(y) > 0 for x, y in zip(df["arith_intensity"], df["achieved_gflops"], strict=True)]]
    if df.empty:
        return []
    out = []
    with matplotlib.rc_context(RC):
        style = Style(df)
        suite = fig_text(df["suite"].iloc[0])
        for device in devices_of(df):
            out.append(_figure(df[df["device"] == device], style, suite, device, latest_peaks(docs, device)))
    return out


def _figure(d: pd.DataFrame, style: Style, suite: str, device: str, peaks: Mapping[str, Peak]) -> FigureFile:
    from matplotlib.lines import Line2D

    fig, (ax,) = new_figure(1, 7.4, 4.8)
    batches = sorted({int(b) for b in d["batch_size"]})
    size = {b: 26 + 34 * i for i, b in enumerate(batches)}
    xs, ys = [num(v) for v in d["arith_intensity"]], [num(v) for v in d["achieved_gflops"]]
    for r, x, y in zip(d.itertuples(), xs, ys, strict=True):
        ax.scatter(x, y, color=style.color[r.family], marker=style.marker[r.tier], s=size[int(r.batch_size)],
                   edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
    dtypes = [t for t in dict.fromkeys(d["dtype"]) if t in peaks]
    lo_x, hi_x = min(xs) / 3, max(xs) * 3
    for p in (peaks[t] for t in dtypes):  # the axis shows every ridge point and a decade of the slope before it
        if p.ridge is not None:
            lo_x, hi_x = min(lo_x, p.ridge / 10), max(hi_x, p.ridge * 3)
    labels = []
    for i, dtype in enumerate(dtypes):
        style_ = list(_CEILING_STYLES)[i % len(_CEILING_STYLES)]
        heights, label = _draw_roof(ax, peaks[dtype], lo_x, hi_x, style_, len(dtypes) > 1)
        ys += heights
        labels.append(label)
    if labels:  # the roofs' numbers in the empty upper-left corner (points crowd the roof itself)
        ax.text(0.02, 0.97, "\n".join(labels), transform=ax.transAxes, ha="left", va="top", fontsize=8, color="0.2",
                bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_axis(ax.xaxis, [lo_x, hi_x])
    log_axis(ax.yaxis, [v for v in ys if math.isfinite(v) and v > 0])
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved GFLOP/s")
    thread = next((p.threads for p in peaks.values() if p.threads), None)
    where = fig_text(device) + (f" · {thread} threads" if thread and device == "cpu" else "")
    ax.set_title(where if dtypes else f"{where} · peak not measured in this run: no roof")
    fams = [f for f in style.families if f in set(d["family"])]
    tiers = [t for t in style.tiers if t in set(d["tier"])]
    handles: list[Any] = style.legend_handles(fams, tiers)
    if len(batches) > 1:
        handles += [Line2D([], [], color="0.55", marker="o", linestyle="", markersize=math.sqrt(size[b]),
                           label=f"batch {b}") for b in batches]  # fmt: skip
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"{suite}: roofline · {fig_text(device)}")
    caption = ("Achieved GFLOP/s (FLOPs = 2 × MACs over the median latency) against arithmetic intensity (FLOPs "
               "per byte moved, a no-reuse upper bound of traffic, so points may sit left of the truth), every "
               "ok inference cell; colour = family, marker = tier, size = batch. ")  # fmt: skip
    caption += ("Roofs: the run's measured GEMM peak (flat) and memory bandwidth (slope); a cell left of the ridge "
                "point is memory-bound." if dtypes else "No roof: peak not measured in this run.")  # fmt: skip
    if len(dtypes) > 1:
        caption += " Line style = dtype."
    slug = f"roofline-{safe_component(device)}"
    return finish(fig, slug, f"Roofline ({fig_text(device)})", caption)


def _draw_roof(ax: Any, p: Peak, lo_x: float, hi_x: float, linestyle: str, several: bool) -> tuple[list[float], str]:
    """The roof of one peak from ``lo_x`` to ``hi_x``; returns its heights and a line of text with its numbers."""
    grid = [lo_x * (hi_x / lo_x) ** (k / 200) for k in range(201)]
    roofs = [(p.gflops, None), (p.bandwidth_gbs, 1.0)]  # (value, slope): flat GEMM ceiling, bandwidth diagonal
    heights = [min(v * (x if slope else 1) for v, slope in roofs if v is not None) for x in grid]
    ax.plot(grid, heights, color="0.25", linestyle=linestyle, linewidth=1.4, zorder=2)
    parts = [f"GEMM peak {fmt_sig(p.gflops)} GFLOP/s" if p.gflops is not None else "",
             f"bandwidth {fmt_sig(p.bandwidth_gbs)} GB/s" if p.bandwidth_gbs is not None else "",
             f"ridge {fmt_sig(p.ridge)} FLOP/B" if p.ridge is not None else ""]  # fmt: skip
    which = f" ({_CEILING_STYLES[linestyle]})" if several else ""
    return heights, f"{fig_text(p.dtype)} roof{which}: " + ", ".join(x for x in parts if x)
