"""glibc ``malloc`` regimes for measurements, and how to leave the caller's process as fast as it was.

glibc's default ``mmap`` threshold is dynamic: it starts at 128 KiB and rises to the size of each
``mmap``-ed block freed (up to ``DEFAULT_MMAP_THRESHOLD_MAX``, 32 MiB on 64-bit), with the trim
threshold at twice that. So whether a forward pass's large activations are reused from the heap or
mapped (and page-faulted) afresh depends on what the process did before: convnext_femto took 7.9 or
11.4 ms (0 or 2,300 page faults per call) in identical processes. Two regimes are offered for timing:

- ``"system"``: touch nothing; time under whatever malloc the process has -- what a user's own code,
  ``torch.utils.benchmark`` and timm's ``benchmark.py`` see. History-dependent for models with large
  activations (efficientnet_b0 20% slower than under ``"steady"``).
- ``"steady"``: mmap threshold 32 MiB and no trimming, so after warm-up a step reuses its memory
  without page faults: what jemalloc and tcmalloc users see, and steady between processes.

(Their names, and how records say which, are in :mod:`bench.allocator`, which needs no torch.)

CPU peak memory uses a third setting, ``exact``: every block of 64 KiB or more is its own mapping,
unmapped when freed, so RSS grows by exactly what the step touches.

Restoring. Any ``mallopt`` of the thresholds turns glibc's dynamic threshold off for good
(``mp_.no_dyn_threshold``; no call turns it back on), and glibc has no call that reads them. So
after a measurement the thresholds go back to what this module last left in force; where it never
called ``mallopt`` before, to what the user configured (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``: dynamic was off from the start), else to the state
glibc's dynamic policy converges to: mmap threshold ``DEFAULT_MMAP_THRESHOLD_MAX``, trim twice that.
Restoring glibc's *initial* 128 KiB instead (what this module once did) left every later large
allocation of the caller's process mmapped and faulted in: resnet18 went from 0 to 17,500 page
faults per forward, 2-3x slower. A process that called ``mallopt`` itself (unknown to us) gets the
converged state too. Elsewhere than glibc (musl, macOS, a preloaded jemalloc) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.allocator import STEADY_LABEL, check_regime

log = logging.getLogger(__name__)

# mallopt parameters from glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's initial thresholds (DEFAULT_MMAP_THRESHOLD_MIN, DEFAULT_TRIM_THRESHOLD): fixed at these when
#: the user configured malloc without setting them.
GLIBC_INITIAL = 128 * 1024
#: the largest value the dynamic mmap threshold reaches (glibc's DEFAULT_MMAP_THRESHOLD_MAX)
DYNAMIC_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long) if ctypes.sizeof(ctypes.c_long) == 8 else 512 * 1024
#: latency (steady): allocations up to 32 MiB (the largest threshold glibc accepts on 64-bit) come from
#: the heap, and the heap is never trimmed: after warm-up a step reuses its memory without page faults.
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024
STEADY_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int
#: memory (exact): every allocation of 64 KiB or more is its own mapping, unmapped when freed, so RSS grows
#: by exactly what the step touches and nothing is served from memory an earlier phase left behind.
EXACT_THRESHOLD = 64 * 1024
EXACT_LABEL = "glibc mmap_threshold=64KiB trim=64KiB"

_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "mmap",
    "MALLOC_TRIM_THRESHOLD_": "trim",
    "MALLOC_TOP_PAD_": "",
    "MALLOC_MMAP_MAX_": "",
}
_TUNABLES = {"glibc.malloc.mmap_threshold": "mmap", "glibc.malloc.trim_threshold": "trim",
             "glibc.malloc.top_pad": "", "glibc.malloc.mmap_max": ""}  # fmt: skip


@dataclass(frozen=True)
class Thresholds:
    """glibc's mmap and trim thresholds, in bytes."""

    mmap: int
    trim: int

    def describe(self) -> str:
        return f"glibc mmap_threshold={_size(self.mmap)} trim={_size(self.trim)}"


STEADY = Thresholds(STEADY_MMAP_THRESHOLD, STEADY_TRIM_THRESHOLD)
EXACT = Thresholds(EXACT_THRESHOLD, EXACT_THRESHOLD)
#: where glibc's dynamic policy ends up once the process has freed a mapped block of DYNAMIC_MAX
CONVERGED = Thresholds(DYNAMIC_MAX, 2 * DYNAMIC_MAX)

#: the thresholds this module last left in force; None while it has never called mallopt in this process
_in_force: Thresholds | None = None


def _size(n: int) -> str:
    if n >= 2**31 - 1:
        return "max"
    for unit, div in (("MiB", 2**20), ("KiB", 2**10)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def glibc() -> Any | None:
    """The process's C library when it is glibc with ``mallopt``, else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError when not glibc
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def user_configured(environ: Mapping[str, str] | None = None) -> Thresholds | None:
    """The thresholds the user fixed through the environment, or None where glibc's dynamic policy is on.

    Setting any of the mmap threshold, trim threshold, top pad or mmap max (``MALLOC_*_`` variables or
    ``GLIBC_TUNABLES``) turns the dynamic threshold off from the start; the thresholds not set stay at
    glibc's initial 128 KiB.
    """
    env = os.environ if environ is None else environ
    found: dict[str, int] = {}
    configured = False
    pairs = [(k, env[k], _ENV[k]) for k in _ENV if k in env]
    for item in env.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name.strip() in _TUNABLES:
            pairs.append((name, value, _TUNABLES[name.strip()]))
    for _name, value, which in pairs:
        try:
            n = int(value.strip(), 0)
        except ValueError:
            continue  # glibc ignores what it cannot parse too
        configured = True
        if which:
            found[which] = n
    if not configured:
        return None
    return Thresholds(found.get("mmap", GLIBC_INITIAL), found.get("trim", GLIBC_INITIAL))


def _restore_target() -> Thresholds:
    """What to leave in force after a measurement (see the module docstring)."""
    if _in_force is not None:
        return _in_force
    configured = user_configured()
    if configured is not None:
        return configured
    log.debug(
        "first mallopt in this process: glibc's dynamic thresholds cannot be turned back on; leaving them where the "
        "dynamic policy converges (%s)",
        CONVERGED.describe(),
    )
    return CONVERGED


def _set(libc: Any, th: Thresholds) -> bool:
    """Set both thresholds; True when glibc took both."""
    global _in_force
    took_mmap = bool(libc.mallopt(M_MMAP_THRESHOLD, th.mmap))
    took_trim = bool(libc.mallopt(M_TRIM_THRESHOLD, th.trim))
    _in_force = th  # whatever glibc took, its dynamic policy is off from here on
    return took_mmap and took_trim


@contextmanager
def _thresholds(th: Thresholds, label: str) -> Iterator[str]:
    """Set the thresholds and return free heap memory to the kernel (so RSS growth shows from here on);
    yields ``label``, or ``"system"`` where glibc refused or is absent. Restores after (see the
    module docstring for to what), also when the block raises."""
    libc = glibc()
    if libc is None:
        yield "system"
        return
    restore = _restore_target()
    try:
        applied = _set(libc, th)
        libc.malloc_trim(0)
        yield label if applied else "system"
    finally:
        _set(libc, restore)


def steady_malloc() -> Any:
    """Context manager for timing under the steady regime; yields the setting, for the record."""
    return _thresholds(STEADY, STEADY_LABEL)


def exact_malloc() -> Any:
    """Context manager for peak-RSS memory: map every block of 64 KiB or more afresh; yields the setting."""
    return _thresholds(EXACT, EXACT_LABEL)


@contextmanager
def timing_regime(regime: str) -> Iterator[str]:
    """Time under ``regime`` (:data:`REGIMES`); yields how malloc was set, for the record (``latency_malloc``)."""
    if check_regime(regime) == "steady":
        with steady_malloc() as label:
            yield label
    else:
        yield current_label()


def current_label() -> str:
    """How malloc is set now, when this module sets nothing: ``system``, with the thresholds if it fixed them."""
    if _in_force is None or glibc() is None:
        return "system"
    if _in_force == STEADY:
        return STEADY_LABEL
    return f"system: {_in_force.describe()}"


def apply_process_regime(regime: str) -> str:
    """Put this whole process under ``regime`` for good (the runner's fresh worker processes): the
    measurements then restore to it. Returns how malloc is set."""
    libc = glibc()
    if check_regime(regime) == "steady" and libc is not None:
        _set(libc, STEADY)
    return current_label()
