"""The committed runs under ``results/``: a suite folder may hold one run per profile (default, executions)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "results"


def published(suite: str, profile: str = "default") -> Path:
    """The newest committed run of ``suite`` measured under ``profile``."""
    found = sorted(p for p in (RESULTS / suite).glob("*.json") if json.loads(p.read_text())["profile"] == profile)
    if not found:
        raise LookupError(f"no committed {profile} run of {suite} under {RESULTS}")
    return found[-1]  # file names start with the UTC start time


#: the runs published on 2026-11-29 (schema version 1, no machine peak, no bytes moved), kept as they were
#: committed: the loaders must read files written before the newer fields existed
V1_RUNS = sorted((Path(__file__).resolve().parent / "data" / "v1").glob("*.json"))
