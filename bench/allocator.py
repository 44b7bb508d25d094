"""The malloc regimes latency is timed under, as data: names, how records say which, and what follows.

``"system"``: malloc untouched -- what a user's own code, ``torch.utils.benchmark`` and timm's
``benchmark.py`` see. ``"steady"``: glibc told to keep freed memory (mmap threshold 32 MiB, no trim) --
what jemalloc/tcmalloc users see, steady between processes. They differ by up to 20% on models with
large activations (efficientnet_b0), so the regime is recorded with every latency (``latency_malloc``),
named in the run header (``settings.allocator``) and in reports, and ``compare`` will not judge across
it. How they are set is in :mod:`bench.metrics._malloc`; this module imports no torch, so reports and
``compare`` stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REGIMES = ("system", "steady")
#: ``aigc-bench run`` times under steady (its published runs and baselines were); the Python API under
#: system, which never changes the caller's malloc.
RUN_DEFAULT = "steady"
API_DEFAULT = "system"
#: how a latency timed under steady is recorded (``latency_malloc``); unchanged since the first steady
#: runs, so their records stay comparable.
STEADY_LABEL = "glibc mmap_threshold=32MiB no_trim"


def check_regime(regime: str) -> str:
    """``regime`` if it is one of :data:`REGIMES`, else a ValueError naming the valid ones."""
    if regime not in REGIMES:
        raise ValueError(f"unknown allocator regime {regime!r}; valid: {', '.join(map(repr, REGIMES))}")
    return regime


def regime_of(malloc_label: Any) -> str | None:
    """The regime a recorded ``latency_malloc`` was timed under: ``steady``, ``system``, or None if unknown.

    ``"default"`` is what records said before the regimes had names: malloc untouched, i.e. ``system``;
    ``"system: glibc ..."`` is system malloc whose thresholds an earlier measurement had fixed.
    """
    if not isinstance(malloc_label, str) or not malloc_label:
        return None
    if malloc_label == STEADY_LABEL:
        return "steady"
    if malloc_label == "default" or malloc_label.startswith("system"):
        return "system"
    return None


def run_regime(doc: Mapping[str, Any]) -> str | None:
    """A run file's regime: its header's ``settings.allocator``; for runs older than that setting, what its
    records' ``latency_malloc`` say (``steady``, ``system``, ``steady+system`` if mixed); None if neither."""
    named = (doc.get("settings") or {}).get("allocator")
    if named:
        return str(named)
    found = {regime_of((r.get("metrics") or {}).get("latency_malloc")) for r in doc.get("records") or ()}
    return "+".join(sorted(r for r in found if r)) or None


def metric_order(metrics: Sequence[str], regime: str) -> tuple[str, ...]:
    """The order a worker runs a cell's metrics in: under ``system``, latency before memory.

    The memory metric (CPU, glibc) sets malloc's thresholds, which turns glibc's dynamic threshold off
    for the rest of the process (see :mod:`bench.metrics._malloc`): a latency timed after it would no
    longer be what a fresh process of the user's sees. Under ``steady`` the thresholds are fixed for the
    whole process anyway, and the profile's order stands.
    """
    order = tuple(metrics)
    if regime != "system" or "latency" not in order or "memory" not in order:
        return order
    i = order.index("memory")
    if order.index("latency") < i:
        return order
    rest = [m for m in order if m != "latency"]
    return (*rest[:i], "latency", *rest[i:])
