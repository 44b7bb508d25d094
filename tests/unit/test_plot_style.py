"""Figure colours: every family of a suite gets its own colour (11 cv families once CaiT and T2T-ViT joined)."""

from __future__ import annotations

import pandas as pd

from bench.report.plotting import Style


def test_eleven_families_get_eleven_distinct_colours_and_the_first_ten_keep_tab10() -> None:
    import matplotlib

    fams = [f"f{i}" for i in range(13)]
    frame = pd.DataFrame({"family": fams, "_family_rank": range(13), "tier": ["t"] * 13, "_tier_rank": [0] * 13})
    style = Style(frame)
    colours = [matplotlib.colors.to_hex(style.color[f]) for f in fams]
    assert len(set(colours)) == 13
    tab10 = matplotlib.colormaps["tab10"]
    assert colours[:10] == [matplotlib.colors.to_hex(tab10(i)) for i in range(10)]
