"""Argument types shared by the subcommands: bounded integers, non-empty names and paths.

An argparse ``type`` that raises ``argparse.ArgumentTypeError`` becomes one line and exit 2 (``bench.cli``),
so every bound is checked here, before anything runs: a value the worker would choke on (a 20-digit thread
count, a batch of 10**26) never reaches it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

#: Threads per cell: a flat bound (not a multiple of this machine's cores), so that a CI configuration
#: valid on one machine stays valid on another; torch would accept more, and nothing useful needs them.
MAX_THREADS = 1024
#: Batch size: 2**20 samples is already far beyond any memory a cell could have; 10**26 crashes in C++.
MAX_BATCH_SIZE = 2**20
#: Sequence length (tokens) of one sample.
MAX_SEQ_LEN = 2**24


def _int(text: str, lo: int, hi: int) -> int:
    try:
        return int(text.strip())
    except ValueError:  # also the digit limit of int() (a 5,000-digit number)
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(f"expected an integer between {lo} and {hi}, got {shown!r}") from None


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (argparse names the option in its message)."""

    def parse(text: str) -> int:
        v = _int(text, lo, hi)
        if not lo <= v <= hi:
            shown = str(v) if len(str(v)) <= 40 else f"a {len(str(v))}-digit number"
            raise argparse.ArgumentTypeError(f"expected an integer between {lo} and {hi}, got {shown}")
        return v

    return parse


def bounded_int_list(lo: int, hi: int) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: a comma list of integers, each in ``[lo, hi]``, at least one."""
    one = bounded_int(lo, hi)

    def parse(text: str) -> tuple[int, ...]:
        parts = [x for x in text.split(",") if x.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma list of integers between {lo} and {hi}, got {text!r}")
        return tuple(one(x) for x in parts)

    return parse


def name_list(text: str) -> tuple[str, ...]:
    """An argparse type: a comma list of names, at least one (an empty value never means "all")."""
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of names, got {text!r} (omit the option for all)")
    return names


def name(text: str) -> str:
    """An argparse type: one non-empty name (an empty value never means "the default")."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a name, got {text!r} (omit the option for the default)")
    return text.strip()


def path(text: str) -> Path:
    """An argparse type: a non-empty path (``''`` would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)
