"""Plotting plumbing for report figures: rc settings, deterministic encoding, styles and log axes.

Determinism: figures have fixed sizes and DPI, PNGs are saved without the ``Software`` tag, SVGs
without a date and with a fixed ``svg.hashsalt`` (the ids of clip paths are otherwise random).
Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg/SVG canvases, so the
global pyplot state and backend of the calling process are left alone. No text is parsed as mathtext
(``text.parse_math`` off): labels hold names from result files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.report.escape import printable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: rcParams for every report figure (the SVG hash salt makes element ids reproducible)
RC = {
    "svg.hashsalt": "aigc-bench-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "text.parse_math": False,  # labels hold names from result files: "$...$" must never be read as TeX
}
DPI = 110
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
_LINESTYLES = ("-", "--", ":", "-.")
_LABEL_CHARS = 60


@dataclass(frozen=True)
class FigureFile:
    """One rendered figure: ``slug`` goes into file names (``<stem>.<slug>.png``)."""

    slug: str
    title: str
    caption: str
    png: bytes
    svg: bytes


def fig_text(text: object) -> str:
    """A name from a result file as figure text: one printable line, at most 60 characters."""
    s = printable(text)
    return s if len(s) <= _LABEL_CHARS else s[: _LABEL_CHARS - 1] + "…"


def encode(fig: Figure) -> tuple[bytes, bytes]:
    """The figure as (PNG, SVG) bytes without timestamps or software tags."""
    import matplotlib

    with matplotlib.rc_context(RC):
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None})
        # the layout is solved by the first save; reusing it halves the time (it dominates rendering)
        fig.set_layout_engine("none")
        for ax in fig.axes:  # rounded: its last bits vary between processes, and SVG clip ids hash the floats
            ax.set_position([round(v, 6) for v in ax.get_position().bounds])
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png.getvalue(), svg.getvalue()


#: family colours after tab10's ten: black, gold, navy, lime, magenta, teal-grey (none close to a tab10 colour)
_EXTRA_COLORS = ("#000000", "#e6c300", "#000080", "#32cd32", "#ff00ff", "#5f9ea0")


class Style:
    """Colour per family and marker/line style per tier, fixed by the suite's order."""

    def __init__(self, frame: pd.DataFrame) -> None:
        import matplotlib

        cmap = matplotlib.colormaps["tab10"]
        fams = list(dict.fromkeys(frame.sort_values("_family_rank", kind="stable")["family"]))
        tiers = list(dict.fromkeys(frame.sort_values("_tier_rank", kind="stable")["tier"]))
        self.families, self.tiers = fams, tiers
        # tab10 for the first ten (the figures of ten-family suites keep their colours), then colours tab10 lacks:
        # with 11 families the 11th (t2t) came round to tab10's first blue, vgg's
        extra = _EXTRA_COLORS
        self.color = {f: cmap(i) if i < 10 else extra[(i - 10) % len(extra)] for i, f in enumerate(fams)}
        self.marker = {t: _MARKERS[i % len(_MARKERS)] for i, t in enumerate(tiers)}
        self.line = {t: _LINESTYLES[i % len(_LINESTYLES)] for i, t in enumerate(tiers)}

    def legend_handles(self, families: Sequence[str], tiers: Sequence[str]) -> list[Any]:
        """Family colours (drawn with the tier's marker when the points are of one tier: the legend's marker is
        the points'), then one grey marker per tier when there are several."""
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        if len(tiers) == 1:
            m = self.marker[tiers[0]]
            hs: list[Any] = [Line2D([], [], color=self.color[f], marker=m, markeredgecolor="black", markeredgewidth=0.5,
                                    linestyle="", label=fig_text(f)) for f in families]  # fmt: skip
        else:  # colour alone: a circle beside triangle points would say the wrong shape
            hs = [Patch(color=self.color[f], label=fig_text(f)) for f in families]
        if len(tiers) > 1:
            hs += [Line2D([], [], color="0.35", marker=self.marker[t], linestyle="", label=fig_text(f"tier {t}"))
                   for t in tiers]  # fmt: skip
        return hs


def _tick(v: float) -> str:
    """A short tick label: 0.5, 20, 300, 20k, 5M, 2G."""
    if abs(v) >= 1e9:
        return f"{v / 1e9:g}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def log_axis(axis: Any, values: Sequence[float], base: float = 10) -> None:
    """A log axis with plain tick labels (no mathtext: readable and much faster to draw).

    Ticks are denser when the data spans less than a few decades, so a narrow range is still labelled.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    pos = [v for v in values if math.isfinite(v) and v > 0]
    decades = 3.0
    if pos:
        # explicit limits: matplotlib widens a one-value log axis to several decades, crowding the labels
        lo, hi = min(pos), max(pos)
        span = math.log10(hi / lo)
        pad = max(0.08 * span, 0.1)
        lo, hi = lo / 10**pad, hi * 10**pad
        (axis.axes.set_xlim if axis.axis_name == "x" else axis.axes.set_ylim)(lo, hi)
        decades = span + 2 * pad
    if base != 10:
        subs: tuple[float, ...] = (1.0,)
    elif decades < 0.7:
        subs = tuple(float(i) for i in range(1, 10))
    elif decades < 1.5:
        subs = (1.0, 2.0, 3.0, 5.0, 7.0)
    elif decades < 3:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick(v)))
    axis.set_minor_formatter(NullFormatter())


def new_figure(ncols: int, width: float, height: float, nrows: int = 1,
               height_ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:  # fmt: skip
    """A constrained-layout figure of ``nrows`` x ``ncols`` axes (row by row), rows sized by ``height_ratios``."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        grid = {"height_ratios": list(height_ratios)} if height_ratios is not None else None
        axes = list(fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=grid).ravel())
    return fig, axes


def finish(fig: Figure, slug: str, title: str, caption: str) -> FigureFile:
    """Encode ``fig`` (see :func:`encode`) as the report's figure ``slug``."""
    png, svg = encode(fig)
    return FigureFile(slug, title, caption, png, svg)
