"""Timing a block of back-to-back calls, and the per-measurement settings around it (threads, device, gc).

A block timer is ``(fn, number) -> seconds`` for ``number`` back-to-back calls of ``fn``. CPU blocks are
timed with ``time.perf_counter``; CUDA blocks with a pair of ``torch.cuda.Event(enable_timing=True)``
after a ``torch.cuda.synchronize``, so the time is the GPU's. Python's garbage collector is paused
inside each timed block, as ``timeit`` (and so ``torch.utils.benchmark``) does.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch  # annotations only: torch is imported where it is used (the catalogue reads this module)

BlockTimer = Callable[[Callable[[], Any], int], float]


def _block_timer(device: torch.device) -> BlockTimer:
    """A function ``(fn, number) -> seconds`` timing ``number`` back-to-back calls of ``fn``."""
    if device.type == "cuda":
        return _cuda_block_timer(device)
    return _cpu_block_timer


def _cpu_block_timer(fn: Callable[[], Any], number: int) -> float:
    with _gc_paused():
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0


def _cuda_block_timer(device: torch.device) -> BlockTimer:
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def timed(fn: Callable[[], Any], number: int) -> float:
        with _gc_paused():
            # Drain earlier work so the block's start event is not queued behind it.
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(number):
                fn()
            end.record()
            torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3  # elapsed_time is in ms

    return timed


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _num_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count for the block, restore it after; yields the count in effect."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def _on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` current for CUDA (events and streams belong to the current device)."""
    import torch

    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield
