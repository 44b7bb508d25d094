"""Scaling with sequence length: empirical exponents and crossover lengths, from a run's records.

For cells that differ only in ``seq_len`` -- one *series* per (tier, family, device, dtype, batch size,
mode) -- and for each metric (MACs, median latency, peak memory, ...):

* the **exponent** ``k`` of ``metric ~ c * T**k``: the least-squares slope of ``log(metric)`` on
  ``log(T)``, with its R² (1 means a straight line in log-log, i.e. a clean power law);
* the **local exponents** between consecutive lengths, ``log(y2/y1) / log(T2/T1)``: a cost ``aT + bT²``
  (attention) has local exponents between 1 and 2 that rise with T, a recurrence's stay near 1;
* **crossovers**: for each pair of families (A, B) the suite declares (``Suite.crossovers``), the length
  where A's cost passes B's, found by intersecting their piecewise-linear log-log curves over the lengths
  both were measured at; ``None`` when the curves do not cross inside the measured range.

Everything here is a pure function of plain data (records as stored in a run file); nothing is measured.
``bench.runner`` calls :func:`analyse` at the end of a run and stores its result as the run's
``"analysis"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.numbers import finite

#: metrics fitted by default (those absent from the records are left out)
METRICS: tuple[str, ...] = ("macs", "latency_p50_ms", "peak_memory_mb", "activations_mb")
#: record key fields that identify a series (everything but seq_len)
SERIES_KEY: tuple[str, ...] = ("tier", "family", "device", "dtype", "batch_size", "mode")


# --- fitting -------------------------------------------------------------------------------------------


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of ``log y = log c + k log x``: ``{"exponent": k, "coef": c, "r2": R²}``.

    Needs at least two distinct positive ``xs`` and positive ``ys``. With exactly two points R² is 1 by
    construction. A flat series (all ``ys`` equal) has exponent 0 and R² 1.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    if any(x <= 0 for x in xs) or any(y <= 0 for y in ys):
        raise ValueError("a power-law fit needs positive xs and ys")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((a - mx) ** 2 for a in lx)
    if n < 2 or sxx == 0:
        raise ValueError("a power-law fit needs at least two distinct xs")
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    syy = sum((b - my) ** 2 for b in ly)
    k = sxy / sxx
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return {"exponent": k, "coef": math.exp(my - k * mx), "r2": r2}


def local_exponents(xs: Sequence[float], ys: Sequence[float]) -> list[dict[str, float]]:
    """Slopes of log y on log x between consecutive points (``xs`` sorted ascending, distinct)."""
    out = []
    for (x1, y1), (x2, y2) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        out.append({"from": x1, "to": x2, "exponent": math.log(y2 / y1) / math.log(x2 / x1)})
    return out


def crossings(xs: Sequence[float], a: Sequence[float], b: Sequence[float]) -> list[dict[str, Any]]:
    """Where curve ``a`` crosses curve ``b`` (both sampled at sorted ``xs``), interpolated in log-log space.

    Each crossing is ``{"seq_len": x, "direction": "up" | "down"}``: ``up`` when ``a`` goes from below
    ``b`` to above it. A point where they are exactly equal counts once, at that point.
    """
    d = [math.log(p / q) for p, q in zip(a, b, strict=True)]  # log(a/b): its sign says which is above
    out: list[dict[str, Any]] = []
    for i in range(len(xs) - 1):
        d1, d2 = d[i], d[i + 1]
        if d1 == 0:
            continue  # equal here: the segment that arrived at this point decided
        if d2 == 0:
            # Touching at xs[i+1]: a crossing only if the curves part on the other side.
            after = next((x for x in d[i + 2 :] if x != 0), 0.0)
            if after and (after > 0) != (d1 > 0):
                out.append({"seq_len": float(xs[i + 1]), "direction": "up" if after > 0 else "down"})
        elif (d1 > 0) != (d2 > 0):
            lx1, lx2 = math.log(xs[i]), math.log(xs[i + 1])
            out.append(
                {"seq_len": math.exp(lx1 - d1 * (lx2 - lx1) / (d2 - d1)), "direction": "up" if d2 > 0 else "down"}
            )
    return out


def crossover(xs: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float | None:
    """The first length where ``a`` rises above ``b`` (log-log interpolation), or ``None`` in range."""
    for c in crossings(xs, a, b):
        if c["direction"] == "up":
            return c["seq_len"]
    return None


# --- from records --------------------------------------------------------------------------------------


def series(records: Iterable[Mapping[str, Any]], metric: str) -> dict[tuple[Any, ...], dict[int, float]]:
    """``{series key: {seq_len: value}}`` from ``ok`` records with a ``seq_len`` and a positive ``metric``.

    The series key is the record key's :data:`SERIES_KEY` fields. Should one length appear twice (merged
    runs), the later record wins.
    """
    out: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in records:
        key = r.get("key", {})
        t = key.get("seq_len")
        v = r.get("metrics", {}).get(metric)
        if r.get("status") != "ok" or t is None or not _positive(v):
            continue
        out.setdefault(tuple(key.get(f) for f in SERIES_KEY), {})[int(t)] = float(v)
    return out


def _positive(v: Any) -> bool:
    x = finite(v)
    return x is not None and x > 0


def analyse(
    records: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = METRICS,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Exponents of every series and crossovers of every declared family pair, as JSON-able data.

    ``pairs`` default to the records' suites' ``Suite.crossovers`` (suites registered in ``bench.registry``). Returns
    ``{"x": "seq_len", "metrics": [...], "fits": [...], "crossovers": [...]}``: one *fit* per series and
    metric with at least two lengths (key fields, ``metric``, ``seq_lens``, ``values``, ``exponent``,
    ``coef``, ``r2``, ``n``, ``local``), one *crossover* per pair, metric and shared key (key fields
    without ``family``, ``a``, ``b``, ``seq_lens``, ``seq_len`` -- the first length where A passes B,
    or ``None`` -- ``crossings``, and ``relation``: ``"crosses"``, ``"a_above"``, ``"a_below"`` or
    ``"touches"`` over the whole range).
    """
    if pairs is None:
        pairs = _declared_pairs(records)
    fits: list[dict[str, Any]] = []
    cross: list[dict[str, Any]] = []
    used: list[str] = []
    for metric in metrics:
        by_series = series(records, metric)
        if not by_series:
            continue
        used.append(metric)
        for key, points in sorted(by_series.items(), key=lambda kv: tuple(map(str, kv[0]))):
            if len(points) < 2:
                continue
            xs = sorted(points)
            ys = [points[x] for x in xs]
            fit = fit_power_law(xs, ys)
            fits.append({**dict(zip(SERIES_KEY, key, strict=True)), "metric": metric, "seq_lens": xs, "values": ys,
                         **fit, "n": len(xs), "local": local_exponents(xs, ys)})  # fmt: skip
        cross.extend(_crossovers(by_series, metric, pairs))
    return {"x": "seq_len", "metrics": used, "fits": fits, "crossovers": cross}


def _crossovers(by_series: Mapping[tuple[Any, ...], Mapping[int, float]], metric: str,
                pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:  # fmt: skip
    fam = SERIES_KEY.index("family")
    out = []
    for a, b in pairs:
        for key, pa in sorted(by_series.items(), key=lambda kv: tuple(map(str, kv[0]))):
            if key[fam] != a:
                continue
            pb = by_series.get(key[:fam] + (b,) + key[fam + 1 :])
            if not pb:
                continue
            xs = sorted(set(pa) & set(pb))
            if len(xs) < 2:
                continue
            ya, yb = [pa[x] for x in xs], [pb[x] for x in xs]
            found = crossings(xs, ya, yb)
            rel = "crosses" if found else "a_above" if all(p > q for p, q in zip(ya, yb, strict=True)) \
                else "a_below" if all(p < q for p, q in zip(ya, yb, strict=True)) else "touches"  # fmt: skip
            shared = {f: v for f, v in zip(SERIES_KEY, key, strict=True) if f != "family"}
            out.append({**shared, "metric": metric, "a": a, "b": b, "seq_lens": xs, "seq_len": crossover(xs, ya, yb),
                        "crossings": found, "relation": rel})  # fmt: skip
    return out


def _declared_pairs(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    from bench.registry import SUITES, get_suite

    suites = {r.get("key", {}).get("suite") for r in records} - {None}
    return tuple(p for s in sorted(suites) if s in SUITES for p in get_suite(s).crossovers)
