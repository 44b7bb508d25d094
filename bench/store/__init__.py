"""Result store: one schema-versioned JSON file per run, written atomically cell by cell.

The schema is documented in ``docs/results-schema.md``. The store never computes statistics:
it keeps what the metrics returned (raw samples included) and flattens it for analysis.

Result files are untrusted input (in CI they come from pull requests), so every file is read through
one door, :func:`read_json` then :func:`validate`: a bounded read of a regular file, a parse that
cannot blow the stack, then the type of every field the code relies on. Any fault is a
``StoreError`` (exit 2) naming the file and the field, never a traceback. Writers never leave a
half-written or empty file behind, and writers of the same run file merge under a lock.

Modules: ``read`` (the bounded, safe read), ``schema`` (``validate``), ``migrate`` (upgrading files of older
schema versions), ``load`` (finding run files, ``load_results``), ``files`` (atomic writes, ``create_json``),
``runfile`` (``reserve_path``, ``RunWriter``). Records are ``bench.result.CellResult`` s in their stored form.
Everything public is importable from ``bench.store``.
"""

from __future__ import annotations

from typing import Any

from bench.store.files import atomic_write_json, clean_stale, create_json, refuse_existing, write_new_json
from bench.store.load import (
    columns,
    frame_of_rows,
    iter_rows,
    load_results,
    load_run,
    load_runs,
    result_files,
    results_frame,
)
from bench.store.migrate import STEPS, readable_versions, upgrade
from bench.store.read import MAX_FILE_BYTES, MAX_FILE_BYTES_ENV, max_file_bytes, read_json, show_path
from bench.store.runfile import RunWriter, reserve_path
from bench.store.schema import KIND, MAX_DEPTH, MAX_SHARDS, SCHEMA_VERSION, STATUSES, utc_now, validate

__all__ = [
    "KIND", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_FILE_BYTES_ENV", "MAX_SHARDS", "SCHEMA_VERSION", "STATUSES", "STEPS",
    "RunWriter", "atomic_write_json", "clean_stale", "columns", "create_json", "frame_of_rows", "iter_rows", "load_results", "load_run",
    "load_runs", "max_file_bytes", "read_json", "readable_versions", "refuse_existing", "reserve_path", "result_files",
    "results_frame", "show_path", "upgrade", "utc_now", "validate", "write_new_json",
]  # fmt: skip


def __getattr__(name: str) -> Any:  # ``COLUMNS`` is read from the metric catalogue when asked for
    if name == "COLUMNS":
        return columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
