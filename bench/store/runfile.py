"""A run's own file: its name claimed by a lock file, then rewritten atomically after every cell, under a lock.

``reserve_path`` claims a new name; ``RunWriter`` writes the run (first complete write creates the file)
and merges, under an ``fcntl.flock`` of ``.<name>.lock``, what another process wrote meanwhile, so two
``run --resume FILE`` at once keep every cell.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import StoreError
from bench.result import CellResult, cell_id
from bench.store.files import _host_tag, _safe, atomic_write_json, clean_stale
from bench.store.load import load_run
from bench.store.read import show_path
from bench.store.schema import KIND, SCHEMA_VERSION, utc_now

log = logging.getLogger(__name__)


def reserve_path(out_dir: Path, suite: str, started: datetime | None = None, host: str | None = None) -> Path:
    """Claim and return a new run file name ``OUT/<suite>/<UTC time>-<host>[-N].json``.

    The name is claimed by a hidden lock file (``.<name>.lock``, created exclusively); the run file
    itself appears only with the first complete write (``RunWriter``), so a run killed at once leaves
    no empty or invalid ``.json``. Stale temporary files of killed writers in the folder are removed.
    Raises ``StoreError`` when the folder cannot be created or written, before anything is measured.
    Never returns the path of an existing file: an existing run is never overwritten.
    """
    started = started or datetime.now(timezone.utc)
    folder = Path(out_dir) / suite
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create output folder {show_path(folder)}: {e.strerror or e}") from None
    clean_stale(folder)
    stem = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{_safe(host or socket.gethostname())}"
    for n in range(1000):
        path = folder / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
        if os.path.lexists(path):
            continue
        lock = _lock_path(path)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"cannot write to output folder {show_path(folder)}: {e.strerror or e}") from None
        try:
            os.write(fd, f"{_host_tag()} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        if os.path.lexists(path):  # a writer created it between our check and our claim: not ours
            lock.unlink(missing_ok=True)
            continue
        return path
    raise StoreError(f"too many runs named {stem}* in {show_path(folder)}")


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone, or not a file we can stat (load_run says why)
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class RunWriter:
    """Accumulates a run's records and rewrites its file atomically after each one.

    Every write happens under an exclusive lock of the run file (``fcntl.flock`` on ``.<name>.lock``,
    removed again when released) and first merges what another process wrote since: two
    ``run --resume FILE`` at once (say ``--family resnet`` and ``--family convnext``) keep every cell.
    """

    def __init__(self, path: Path, header: Mapping[str, Any], records: Iterable[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = {**header, "records": [dict(r) for r in records]}
        self.doc.setdefault("schema_version", SCHEMA_VERSION)
        self.doc.setdefault("kind", KIND)
        self.doc.setdefault("finished_at", None)
        self._init_state()
        with self._locked():
            self._write()

    @classmethod
    def resume(cls, path: Path) -> RunWriter:
        """Continue an existing run file (validated); its records are kept as they are."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self._init_state()
        sig = _signature(self.path)
        self.doc = load_run(self.path)  # validated up front: a bad file fails before any lock or measurement
        with self._locked():
            if _signature(self.path) != sig:  # another process wrote it meanwhile
                self.doc = load_run(self.path)
            clean_stale(self.path.parent)
            self.doc["finished_at"] = None
            self._write()
        return self

    def _init_state(self) -> None:
        self._index: dict[str, int] | None = None  # cell id -> position in records (None: to rebuild)
        self._seen: tuple[int, int, int, int] | None = None  # the file as we last wrote or read it
        self._said_waiting = self._said_merged = False

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.doc["records"]

    def done_keys(self) -> set[str]:
        """Ids of the cells already recorded."""
        return {_cell_id(r) for r in self.records}

    def add(self, record: Mapping[str, Any] | CellResult) -> None:
        """Record a cell (a ``CellResult`` or its stored form), replacing an earlier record of the same cell,
        merged with the file on disk."""
        record = record.to_dict() if isinstance(record, CellResult) else dict(record)
        cid = _cell_id(record)
        with self._locked():
            self._merge_disk()
            records = self.records
            if self._index is None or len(self._index) != len(records):  # rebuilt after a merge only
                self._index = {_cell_id(r): i for i, r in enumerate(records)}
            at = self._index.get(cid)
            if at is None:
                self._index[cid] = len(records)
                records.append(record)
            else:
                records[at] = record
            self.doc["finished_at"] = None
            self._write()

    def finish(self, analyse: Any = None) -> None:
        """Mark the run finished. ``analyse(records) -> dict | None``: derived results (stored as ``analysis``)
        computed under the lock over every record, including those another process added."""
        with self._locked():
            self._merge_disk()
            if analyse is not None:
                analysis = analyse(self.records)
                if analysis:
                    self.doc["analysis"] = analysis
            self.doc["finished_at"] = utc_now()
            self._write()

    # -- the lock and the merge

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = _lock_path(self.path)
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as e:
                raise StoreError(f"cannot lock results file {show_path(self.path)}: {e.strerror or e}") from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not self._said_waiting:
                        log.warning("%s: another aigc-bench process is writing this run; waiting for its lock "
                                    "(cells are merged, none is lost)", show_path(self.path))  # fmt: skip
                        self._said_waiting = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:  # the holder removes the lock file on release: ours must still be the one at that name
                    same = os.path.samestat(os.fstat(fd), os.stat(lock))
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)

    def _merge_disk(self) -> None:
        """Take in the records another process wrote since we last did (the lock is held).

        The file wins for every cell it holds: each writer merges before it writes, so the file always has
        the latest record of a cell (ours included); cells only we hold are kept too.
        """
        sig = _signature(self.path)
        if sig is None or sig == self._seen:
            return
        disk = load_run(self.path)
        merged = disk["records"]
        taken = {_cell_id(r) for r in merged}
        ours = {_cell_id(r): r for r in self.records}
        new = len(taken - ours.keys())
        merged.extend(r for cid, r in ours.items() if cid not in taken)
        if new and not self._said_merged:
            log.warning("%s: another aigc-bench process added %d cells to this run; keeping them",
                        show_path(self.path), new)  # fmt: skip
            self._said_merged = True
        self.doc["records"] = merged
        self._index = None

    def _write(self) -> None:
        try:
            atomic_write_json(self.path, self.doc)
        except OSError as e:
            raise StoreError(f"cannot write results file {show_path(self.path)}: {e.strerror or e}") from None
        self._seen = _signature(self.path)


def _cell_id(record: Mapping[str, Any]) -> str:
    return cell_id(record)
