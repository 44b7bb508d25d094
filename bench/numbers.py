"""Small questions about values read from result files, answered once for every reader.

Values come from JSON, pandas frames and metric functions, where "not measured" may be None, NaN, a
string or a boolean. :func:`finite` says whether a value is a usable number; :func:`percent_scale` how
accuracy values are shown (fractions as percentages).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (int, float, numpy scalar); else None.

    None, NaN, infinities, booleans (a flag is not a quantity) and strings are all "no number".
    """
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def is_finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (see :func:`finite`)."""
    return finite(value) is not None


def percent_scale(values: Iterable[Any]) -> float:
    """100 when every finite value is a fraction (|v| <= 1: accuracy stored as 0..1), else 1 (already percent).

    With no finite value, 1. Accuracy may be stored either way; reports and compare show it in percent.
    """
    vals = [abs(v) for v in map(finite, values) if v is not None]
    return 100.0 if vals and max(vals) <= 1.0 else 1.0
