"""Result store: one schema-versioned JSON file per run, written atomically cell by cell.

The schema is documented in ``docs/results-schema.md``. The store never computes statistics:
it keeps what the metrics returned (raw samples included) and flattens it for analysis.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KIND = "aigc-bench/run"
STATUSES = ("ok", "failed", "timeout", "skipped")
_REQUIRED = ("schema_version", "kind", "run_id", "suite", "suite_hash", "profile", "env", "records")
_KEY_FIELDS = ("suite", "tier", "family", "model", "device", "dtype", "batch_size", "input_shape")

#: columns every ``load_results`` frame has, in this order (more follow: every metric stored)
COLUMNS = (
    "suite", "tier", "family", "model", "device", "dtype", "batch_size", "input_shape", "seq_len", "mode",
    "params", "macs", "flops", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_samples",
    "throughput", "peak_memory_mb", "status", "error",
)  # fmt: skip


def utc_now() -> str:
    """The current UTC time, ISO 8601 with a ``Z``, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "host"


def atomic_write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` so a reader (or a kill) sees the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=False, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def reserve_path(out_dir: Path, suite: str, started: datetime | None = None, host: str | None = None) -> Path:
    """Create (exclusively) and return a new, empty run file ``OUT/<suite>/<UTC time>-<host>[-N].json``.

    Raises ``StoreError`` when the folder cannot be created or written, before anything is measured.
    Never returns the path of an existing file: an existing run is never overwritten.
    """
    started = started or datetime.now(timezone.utc)
    folder = Path(out_dir) / suite
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create output folder {folder}: {e.strerror or e}") from None
    stem = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{_safe(host or socket.gethostname())}"
    for n in range(1000):
        path = folder / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"cannot write to output folder {folder}: {e.strerror or e}") from None
        os.close(fd)
        return path
    raise StoreError(f"too many runs named {stem}* in {folder}")


class RunWriter:
    """Accumulates a run's records and rewrites its file atomically after each one."""

    def __init__(self, path: Path, header: Mapping[str, Any], records: Iterable[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = {**header, "records": list(records)}
        self.doc.setdefault("schema_version", SCHEMA_VERSION)
        self.doc.setdefault("kind", KIND)
        self.doc.setdefault("finished_at", None)
        self._flush()

    @classmethod
    def resume(cls, path: Path) -> RunWriter:
        """Continue an existing run file (validated); its records are kept as they are."""
        doc = load_run(path)
        doc["finished_at"] = None
        records = doc.pop("records")
        return cls(path, doc, records)

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.doc["records"]

    def done_keys(self) -> set[str]:
        """Ids of the cells already recorded."""
        from bench.spec import CellKey

        return {CellKey.from_dict(r["key"]).id for r in self.records}

    def add(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        self._flush()

    def finish(self) -> None:
        self.doc["finished_at"] = utc_now()
        self._flush()

    def _flush(self) -> None:
        try:
            atomic_write_json(self.path, self.doc)
        except OSError as e:
            raise StoreError(f"cannot write results file {self.path}: {e.strerror or e}") from None


def validate(doc: Any, path: Path | str) -> dict[str, Any]:
    """Check a loaded document against the schema; ``StoreError`` names the file and the fault."""
    if not isinstance(doc, dict):
        raise StoreError(f"{path}: not an aigc-bench results file (top level is not an object)")
    if doc.get("kind") != KIND:
        raise StoreError(f"{path}: not an aigc-bench results file (kind is {doc.get('kind')!r}, expected {KIND!r})")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise StoreError(f"{path}: malformed results file, missing {', '.join(missing)}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema_version {doc['schema_version']!r} is not supported (this aigc-bench reads {SCHEMA_VERSION})"
        )
    if not isinstance(doc["records"], list):
        raise StoreError(f"{path}: malformed results file, 'records' is not a list")
    for i, r in enumerate(doc["records"]):
        if not isinstance(r, dict) or not isinstance(r.get("key"), dict):
            raise StoreError(f"{path}: record {i} has no 'key' object")
        gone = [k for k in _KEY_FIELDS if k not in r["key"]]
        if gone:
            raise StoreError(f"{path}: record {i} key lacks {', '.join(gone)}")
        if r.get("status") not in STATUSES:
            raise StoreError(
                f"{path}: record {i} has status {r.get('status')!r}, expected one of {', '.join(STATUSES)}"
            )
        if not isinstance(r.get("metrics", {}), dict):
            raise StoreError(f"{path}: record {i} 'metrics' is not an object")
    return doc


def load_run(path: Path | str) -> dict[str, Any]:
    """Read and validate one run file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{p}: cannot read ({e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"{p}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return validate(doc, p)


def result_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Result files named directly, plus aigc-bench run files found under folders (recursively).

    A file named directly must be a valid run file; inside folders, JSON files of another kind
    (reports, exports) are skipped, but a malformed run file is still an error.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if f.name.startswith("."):
                    continue  # in-flight temporary files
                try:
                    kind = json.loads(f.read_text(encoding="utf-8")).get("kind")
                except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                    kind = None
                if kind == KIND:
                    out.append(f)
                else:
                    log.debug("skipping %s: not an aigc-bench run file", f)
        elif p.exists():
            out.append(p)
        else:
            raise StoreError(f"{p}: no such file or folder")
    return out


def iter_rows(doc: Mapping[str, Any], path: Path | str | None = None) -> Iterator[dict[str, Any]]:
    """Flatten each record of a run document into one row (see ``COLUMNS``)."""
    host = (doc.get("env") or {}).get("host")
    for r in doc["records"]:
        key = dict(r["key"])
        key["input_shape"] = tuple(key.get("input_shape") or ())
        key.setdefault("seq_len", None)
        key.setdefault("mode", "infer")
        variant = r.get("variant") or {}
        row: dict[str, Any] = {
            **key,
            **(r.get("metrics") or {}),
            "latency_samples": list((r.get("samples") or {}).get("latency_ms", [])),
            "status": r["status"],
            "error": r.get("error"),
            "notes": "; ".join(r.get("notes") or []),
            "target_params": variant.get("target_params"),
            "achieved_params": variant.get("achieved_params"),
            "builder": variant.get("builder"),
            "run_id": doc["run_id"],
            "profile": doc["profile"],
            "suite_hash": doc["suite_hash"],
            "host": host,
            "path": str(path) if path is not None else None,
        }
        for name, values in (r.get("samples") or {}).items():
            if name != "latency_ms":
                row[f"{name}_samples"] = list(values)
        yield row


def load_results(paths: str | Path | Iterable[str | Path]):  # -> pandas.DataFrame
    """Load result files or folders (searched recursively) into a DataFrame, one row per cell.

    Columns: at least ``COLUMNS``, then every stored metric; missing values are NaN/None.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for f in result_files(paths):
        rows.extend(iter_rows(load_run(f), f))
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = math.nan if c not in ("status", "error", "latency_samples") else None
    rest = [c for c in df.columns if c not in COLUMNS]
    return df[list(COLUMNS) + rest]
