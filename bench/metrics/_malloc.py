"""glibc ``malloc`` settings for measurements: steady for timing, exact for memory.

glibc's default ``mmap`` threshold is dynamic: it rises each time a large ``mmap``-ed block is freed,
so whether a forward pass's large activations are reused from the heap or mapped (and page-faulted)
afresh depends on what the process did before. That history made both latency (convnext_femto 7.9
vs 11.4 ms, 0 vs 2,300 page faults per call) and CPU peak memory (efficientnet_b0 36-46 MB,
vgg11 41-58 MB) differ between identical processes. Fixing the thresholds for each measurement
removes the history. Elsewhere than glibc (musl, macOS, a preloaded jemalloc without ``mallopt``)
nothing is changed and the setting reads ``"default"``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# mallopt parameters from glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: latency: allocations up to 32 MiB (the largest threshold glibc accepts on 64-bit) come from the
#: heap, and the heap is never trimmed: after warm-up a step reuses its memory without page faults.
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024
STEADY_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int
#: memory: every allocation of 64 KiB or more is its own mapping, unmapped when freed, so RSS grows by
#: exactly what the step touches and nothing is served from memory an earlier phase left behind.
EXACT_THRESHOLD = 64 * 1024
DEFAULT_THRESHOLD = 128 * 1024  # glibc's default for both (restored fixed: "dynamic" cannot be restored)


def glibc() -> Any | None:
    """The process's C library when it is glibc with ``mallopt``, else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- raises AttributeError when not glibc
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


@contextmanager
def _mallopt(mmap_threshold: int, trim_threshold: int, label: str) -> Iterator[str]:
    """Set both thresholds and return free heap memory to the kernel (so RSS growth shows from here on);
    yields ``label``, or ``"default"`` where glibc refused or is absent. Restores glibc's defaults after."""
    libc = glibc()
    if libc is None:
        yield "default"
        return
    try:
        applied = libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
        libc.malloc_trim(0)
        yield label if applied else "default"
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)


def steady_malloc() -> Any:
    """Context manager for timing: keep freed memory in the heap; yields the setting, for the record."""
    return _mallopt(STEADY_MMAP_THRESHOLD, STEADY_TRIM_THRESHOLD, "glibc mmap_threshold=32MiB no_trim")


def exact_malloc() -> Any:
    """Context manager for peak-RSS memory: map every block of 64 KiB or more afresh; yields the setting."""
    return _mallopt(EXACT_THRESHOLD, EXACT_THRESHOLD, "glibc mmap_threshold=64KiB trim=64KiB")
