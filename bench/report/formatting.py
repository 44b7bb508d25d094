"""Number formatting for report cells: lenient numbers, significant figures and unit prefixes.

Values come from result files and pandas frames, where a missing number may be None, NaN, a string or a
boolean: :func:`num` turns all of those into NaN so every formatter shows them as ``–``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bench.numbers import finite


def num(value: Any) -> float:
    """``value`` as a float; NaN for None, strings, booleans and anything else that is not a finite number."""
    v = finite(value)
    return math.nan if v is None else v


def opt_int(value: Any) -> int | None:
    """An optional integer key field (``seq_len``): None for None/NaN, else ``int``."""
    v = num(value)
    return None if math.isnan(v) else int(v)


def fmt_sig(value: Any, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures without an exponent; integer digits are never dropped.

    ``31.24 -> "31.2"``, ``4.6 -> "4.60"``, ``0.012345 -> "0.0123"``, ``1234.5 -> "1234"``; NaN -> ``"–"``.
    """
    v = num(value)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    rounded = round(v, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > mag:  # 9.996 rounds up to 10.0, not 10.00
        decimals = max(0, decimals - 1)
    return f"{v:.{decimals}f}"


def unit_prefix(values: Iterable[float]) -> tuple[float, str]:
    """A (scale, prefix) from G/M/K/'' that keeps the median of ``values`` readable (>= 0.1 of a unit)."""
    finite = sorted(abs(v) for v in values if math.isfinite(v))
    if not finite:
        return 1e6, "M"
    median = finite[len(finite) // 2]
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if median >= scale / 10:
            return scale, prefix
    return 1.0, ""
