"""Finding and loading run files: validated documents, and one pandas frame of every cell.

A file named directly must be a valid run file; folders are searched recursively, and inside them JSON
of another kind (reports, exports) is skipped while anything that might be a run file and is broken is
an error, never skipped (a CI gate that silently compares fewer cells is a hole).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.errors import StoreError
from bench.result import KEY_FIELDS, CellResult
from bench.store.read import _open_error, read_json, show_path
from bench.store.schema import KIND, validate

log = logging.getLogger(__name__)

#: columns of a ``load_results`` frame that hold no metric, in this order after the key and the metrics
_RECORD_COLUMNS = ("latency_samples", "status", "error")
#: frame columns that hold lists or text: None where missing (NaN elsewhere)
_NOT_NUMBERS = ("status", "error", "latency_samples")


def columns() -> tuple[str, ...]:
    """Columns every ``load_results`` frame has, in this order (more follow: every metric stored): the key
    fields, the metric catalogue's frame columns (``bench.catalogue.frame_columns``), the raw latency
    samples, status and error."""
    from bench.catalogue import frame_columns

    return (*KEY_FIELDS, *frame_columns(), *_RECORD_COLUMNS)


def __getattr__(name: str) -> Any:  # ``COLUMNS``, as this module had it: now read from the metric catalogue
    if name == "COLUMNS":
        return columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_run(path: Path | str) -> dict[str, Any]:
    """Read and validate one run file (``StoreError`` naming the file and the field on any fault)."""
    p = Path(path)
    return validate(read_json(p), p)


def _scan(folder: Path) -> list[Path]:
    """Every non-hidden ``*.json`` under ``folder`` (symbolic links to folders are not followed: no loops).

    A folder (or a link to one) named ``*.json`` inside it is an error: named like a run file, it can be
    neither read as one nor searched without guessing what was meant (walked, it used to add or drop run
    files silently); named directly, a folder is searched whatever its name.
    """

    def fail(e: OSError) -> None:
        raise StoreError(f"{show_path(e.filename or folder)}: cannot list folder ({e.strerror or e})")

    out: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs.sort()
        for name in dirs:
            if name.endswith(".json") and not name.startswith("."):
                raise StoreError(f"{show_path(Path(root) / name)}: a folder named like a run file; rename it, "
                                 "or name it directly to search it")  # fmt: skip
        for name in names:
            if name.endswith(".json") and not name.startswith("."):  # dot files: in-flight temporaries
                out.append(Path(root) / name)
    return sorted(out)


def load_runs(paths: str | Path | Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every run file named, or found under the folders named (recursively), read and validated once.

    A file named directly must be a valid run file. Inside folders, JSON of another kind (reports,
    exports: an object whose ``kind`` is not ours) is skipped, but anything that might be a run file
    and is broken -- truncated, unreadable, a dangling link, a device -- is an error, never skipped:
    a CI gate that silently compares fewer cells is a hole.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[tuple[Path, dict[str, Any]]] = []
    for raw in paths:
        p = Path(raw)
        try:
            is_dir = p.is_dir()
        except OSError as e:  # a name too long, a loop further up the path
            raise _open_error(p, e) from None
        if not is_dir:
            if not p.exists() and not p.is_symlink():
                raise StoreError(f"{show_path(p)}: no such file or folder")
            out.append((p, load_run(p)))
            continue
        for f in _scan(p):
            doc = read_json(f)
            if isinstance(doc, dict) and doc.get("kind") == KIND:
                out.append((f, validate(doc, f)))
            else:
                log.debug("skipping %s: not an aigc-bench run file", show_path(f))
    return out


def result_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Result files named directly, plus aigc-bench run files found under folders (recursively).

    Each is validated (see :func:`load_runs`, which also returns the documents: prefer it over
    ``result_files`` + ``load_run``, which reads every file twice).
    """
    return [p for p, _ in load_runs(paths)]


def iter_rows(doc: Mapping[str, Any], path: Path | str | None = None) -> Iterator[dict[str, Any]]:
    """Flatten each record of a (validated) run document into one row (``CellResult.row``; see ``columns``)."""
    context = {
        "run_id": doc["run_id"],
        "profile": doc["profile"],
        "suite_hash": doc["suite_hash"],
        "host": (doc.get("env") or {}).get("host"),
        "path": str(path) if path is not None else None,
    }
    for r in doc["records"]:
        yield CellResult.from_dict(r).row(context)


def results_frame(runs: Iterable[tuple[Path | str | None, Mapping[str, Any]]]):  # -> pandas.DataFrame
    """Validated run documents (with their paths) as one DataFrame, one row per cell (see ``load_results``)."""
    return frame_of_rows(row for path, doc in runs for row in iter_rows(doc, path))


def frame_of_rows(rows: Iterable[Mapping[str, Any]]):  # -> pandas.DataFrame
    """``iter_rows`` rows as the ``load_results`` frame: ``columns()`` first (NaN/None where missing)."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    first = columns()
    for c in first:
        if c not in df.columns:
            df[c] = math.nan if c not in _NOT_NUMBERS else None
    rest = [c for c in df.columns if c not in first]
    return df[list(first) + rest]


def unique_runs(runs: Iterable[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """One file per run id, in the order the run ids first appear.

    A run is found twice under one folder when ``baseline save`` copied its file (``results/`` holds both);
    the copy with the most records wins (a copy saved mid-run has fewer), then the one whose name the run id
    starts with (the runner's own file), then the first found.
    """

    def score(fd: tuple[Path, dict[str, Any]]) -> tuple[int, bool]:
        return len(fd[1]["records"]), str(fd[1]["run_id"]).startswith(fd[0].stem)

    best: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f, doc in runs:
        rid = str(doc["run_id"])
        if rid not in best or score((f, doc)) > score(best[rid]):
            best[rid] = (f, doc)
    return list(best.values())


def load_results(paths: str | Path | Iterable[str | Path]):  # -> pandas.DataFrame
    """Load result files or folders (searched recursively) into a DataFrame, one row per cell of each run.

    Columns: at least ``columns()``, then every stored metric; missing values are NaN/None. A run found
    twice (a baseline copy beside the run file) counts once (``unique_runs``), as in the reports.
    Any malformed file is a ``StoreError`` (see :func:`load_runs`).
    """
    return results_frame(unique_runs(load_runs(paths)))
