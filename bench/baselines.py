"""Named baselines: run files copied into a folder (``./results/baselines/`` by default) under a name.

``compare`` accepts a baseline name wherever a path does not exist. A baseline is never overwritten
unless the caller forces it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench.errors import StoreError, UsageError

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
    from bench.store import atomic_write_json, load_run, result_files
    from bench.validity import refuse_invalid_baseline

    files = result_files(run)
    if len(files) != 1:
        raise UsageError(
            f"{run}: a baseline is one run file, found {len(files)} (merge shards first with `aigc-bench merge`)"
        )
    doc = load_run(files[0])
    if not force:  # a baseline every later run is judged against must not hold INVALID latencies
        refuse_invalid_baseline(doc, files[0])
    dest = baseline_path(name, folder)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create baselines folder {dest.parent}: {e.strerror or e}") from None
    if not force:
        try:  # claim the name atomically: two concurrent saves cannot both win
            os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise UsageError(f"baseline {name!r} already exists ({dest}); pass --force to replace it") from None
    try:
        atomic_write_json(dest, doc)
    except OSError as e:
        if not force:
            dest.unlink(missing_ok=True)  # release the name claimed above
        raise StoreError(f"cannot write baseline {dest}: {e.strerror or e}") from None
    return dest


def list_baselines(folder: Path | str = DEFAULT_DIR) -> list[Baseline]:
    """Every readable baseline in ``folder``, by name; unreadable files are skipped."""
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
        except StoreError:
            continue
        out.append(Baseline(p.stem, p, doc["suite"], doc["profile"], doc.get("started_at"), (doc.get("env") or {}).get("host"),
                            len(doc["records"]), doc.get("finished_at") is not None))  # fmt: skip
    return out


def resolve(spec: Path | str, folder: Path | str = DEFAULT_DIR) -> Path:
    """A path that exists as given, else the baseline of that name; else a one-line error naming both."""
    p = Path(spec)
    if p.exists():
        return p
    if _NAME.fullmatch(str(spec)):
        cand = Path(folder) / f"{spec}.json"
        if cand.exists():
            return cand
    names = [b.stem for b in sorted(Path(folder).glob("*.json"))] if Path(folder).is_dir() else []
    raise UsageError(f"{spec}: no such file, folder or baseline (baselines in {folder}: {', '.join(names) or 'none'})")
