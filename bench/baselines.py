"""Named baselines: run files copied into a folder (``./results/baselines/`` by default) under a name.

``compare`` accepts a baseline name wherever a path does not exist. A baseline is never overwritten
unless the caller forces it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import StoreError, UsageError

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("results") / "baselines"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Baseline:
    """One saved baseline, as ``baseline list`` shows it."""

    name: str
    path: Path
    suite: str
    profile: str
    started_at: str | None
    host: str | None
    cells: int
    finished: bool


def check_name(name: str) -> str:
    """A baseline name is a file stem: letters, digits, ``.``, ``_``, ``-``; starts with a letter or digit."""
    if not _NAME.fullmatch(name) or name.endswith(".json"):
        raise UsageError(
            f"bad baseline name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(e.g. main, v0.3, pr-128)"
        )
    return name


def baseline_path(name: str, folder: Path | str = DEFAULT_DIR) -> Path:
    return Path(folder) / f"{check_name(name)}.json"


def save(run: Path | str, name: str, folder: Path | str = DEFAULT_DIR, *, force: bool = False) -> Path:
    """Copy a (validated) run file to ``folder/NAME.json``; refuse to overwrite, or to save a run with INVALID
    latency cells (``bench.validity``), unless ``force``."""
    return save_run(run, name, folder, force=force)[0]


def save_run(
    run: Path | str, name: str, folder: Path | str = DEFAULT_DIR, *, force: bool = False
) -> tuple[Path, dict[str, Any]]:
    """``save``, also returning the saved document (read and validated once, before anything is written)."""
    from bench.store import create_json, load_runs, show_path
    from bench.validity import refuse_invalid_baseline

    dest = baseline_path(name, folder)  # a bad name fails before any file is read
    runs = load_runs(run)
    if len(runs) != 1:
        raise UsageError(
            f"{show_path(run)}: a baseline is one run file, found {len(runs)} (merge shards first with `aigc-bench merge`)"
        )
    source, doc = runs[0]
    if not force:  # a baseline every later run is judged against must not hold INVALID latencies
        refuse_invalid_baseline(doc, show_path(source))
    # created complete or not at all, never over an existing one (two concurrent saves cannot both win)
    taken = f"baseline {name!r} already exists ({show_path(dest)}); pass --force to replace it"
    create_json(dest, doc, exists=taken, what="baseline", replace=force)
    return dest, doc


def list_baselines(folder: Path | str = DEFAULT_DIR) -> list[Baseline]:
    """Every readable baseline in ``folder``, by name; an unreadable one is skipped with a one-line warning."""
    from bench.store import load_run

    out: list[Baseline] = []
    folder = Path(folder)
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            doc = load_run(p)
        except StoreError as e:
            log.warning("skipping baseline %s", e)  # e names the file and the fault
            continue
        out.append(Baseline(p.stem, p, doc["suite"], doc["profile"], doc.get("started_at"), (doc.get("env") or {}).get("host"),
                            len(doc["records"]), doc.get("finished_at") is not None))  # fmt: skip
    return out


def resolve(spec: Path | str, folder: Path | str = DEFAULT_DIR) -> Path:
    """A path that exists as given, else the baseline of that name; else a one-line error naming both."""
    p = Path(spec)
    if p.exists() or p.is_symlink():  # a broken link is reported as such when it is read
        return p
    if _NAME.fullmatch(str(spec)):
        cand = Path(folder) / f"{spec}.json"
        if cand.exists():
            return cand
    names = [b.stem for b in sorted(Path(folder).glob("*.json"))] if Path(folder).is_dir() else []
    raise UsageError(f"{spec}: no such file, folder or baseline (baselines in {folder}: {', '.join(names) or 'none'})")
