"""The plan ``aigc-bench run`` prints when a run starts: its cells by kind, an estimate, where results and reports go.

``list SUITE`` counts each profile's cells the same way (``count_cells``), so the two always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.spec import CellSpec, Profile, Suite

#: seconds a cost cell takes besides its timing windows: a worker's start, imports, the model's build and its
#: FLOP count on a 2-core CPU (the published runs: 4-8 s); an estimate before any cell has run is a floor
CELL_OVERHEAD_S = 5.0


def count_cells(suite: Suite, profile: str | None, devices: Sequence[str] = ("cpu",)) -> int:
    """How many cells a run of ``profile`` on ``devices`` has (what ``run`` would expand)."""
    from bench.runner import RunSettings, expand

    return len(expand(suite, RunSettings(profile=profile, devices=tuple(devices))))


def cost_floor_s(profile: Profile) -> float:
    """A cost cell's least duration: its overhead, its warm-up and its timing window (latency and memory)."""
    return CELL_OVERHEAD_S + profile.warmup_s + profile.min_run_time_s


def duration(seconds: float) -> str:
    """``12 s``, ``6 min``, ``1.5 h``: an estimate as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_lines(suite: Suite, cells: Sequence[CellSpec], results: Path, reports: Path | None) -> list[str]:
    """The plan, a few lines of plain text (no markup): what runs, about how long, and where it is written."""
    from bench.eta import cell_kind

    profile = cells[0].profile if cells else suite.profile()
    kinds = Counter(cell_kind(c) for c in cells)
    parts = []
    for kind, n in sorted(kinds.items(), key=lambda kv: (kv[0].startswith("train"), kv[0])):
        what, tier = kind.split(":", 1)
        parts.append(f"{n} {'training' if what == 'train' else 'cost'} cells in tier {tier}")
    devices = sorted({c.key.device for c in cells})
    lines = [f"plan: {len(cells)} cells of {suite.name} (profile {profile.name}, {', '.join(devices)}): "
             + ", ".join(parts)]  # fmt: skip
    n_cost = sum(n for k, n in kinds.items() if k.startswith("cost"))
    n_train = len(cells) - n_cost
    floor = n_cost * cost_floor_s(profile)
    estimate = f"at least {duration(floor)} for the {n_cost} cost cells" if n_cost else "no cost cells"
    if n_train:
        acc = profile.accuracy
        if acc is None:
            budget = "checkpoints evaluated"
        elif acc.task == "pretraining":
            budget = f"pretrained to the group's FLOP budget and evaluated, x {acc.seeds} seeds each"
        else:
            budget = f"{acc.epochs:g} epochs x {acc.seeds} seeds each"
        estimate += f", plus {n_train} training cells ({budget}; minutes each on a CPU)"
    lines.append(f"estimate: {estimate}; the progress bar refines it as cells finish")
    where = f"results: {results / suite.name}/"
    lines.append(where + (f"   reports: {reports / suite.name}/" if reports is not None else "   reports: not written"))
    return lines
