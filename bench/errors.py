"""Errors that reach the user as one line and a documented exit code.

Exit codes (also in ``aigc-bench --help`` and README.md):

* 0 -- success
* 1 -- ``compare`` found a regression
* 2 -- usage or bad input (unknown suite/family/profile/dtype/device, unreadable, malformed or foreign
  result file, unwritable folder, an output that exists): one line, never a traceback
* 3 -- the run finished but some cells failed, including cells killed by the stall timeout (status
  ``timeout``: no progress from the worker for the profile's ``timeout_s``, or ``HARD_CAP_FACTOR`` (10;
  training cells ``TRAINING_CAP_FACTOR``, 40) times that in all; the metrics measured before are kept)
* 130 -- interrupted by Ctrl-C (SIGINT): the running cell's worker is stopped, finished cells are kept
  (``run --resume`` continues)
* 143 -- ended by SIGTERM (what ``timeout`` and CI runners send): the same clean end as Ctrl-C

A worker never outlives its driver: ``kill -9`` of the driver ends it too, with no exit code of ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_CELLS_FAILED = 3
#: 128 + the signal number, as shells report a process ended by a signal (``bench.cli`` exits with it)
EXIT_INTERRUPTED = 130  # SIGINT
EXIT_TERMINATED = 143  # SIGTERM


class BenchError(Exception):
    """Base class: an error the CLI prints as one line, then exits with ``exit_code``."""

    exit_code: int = EXIT_USAGE


class UsageError(BenchError, ValueError):
    """Bad input from the user: a wrong name, value, path or file."""


class UnknownNameError(UsageError, LookupError):
    """A name (suite, family, profile, dtype, device, metric...) that is not registered."""

    def __init__(self, what: str, name: str, choices: Iterable[str]) -> None:
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f"unknown {what} {name!r}{hint}; valid choices: {', '.join(choices) or '(none)'}")
        self.what, self.name, self.choices = what, name, choices


class StoreError(UsageError):
    """A result file that is malformed, foreign, or cannot be written."""
