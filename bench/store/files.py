"""Writing files so that a reader, or a kill, sees the old file or the new one, never half of one.

``atomic_write_json`` replaces a file; ``write_new_json`` creates one and never replaces; ``create_json``
is the one way a command creates its output file (``merge``, ``export``, ``baseline save``): parent
folders made, complete or not at all, one-line errors. Temporary files are named after their writer
(host and pid), so ``clean_stale`` can remove those a killed writer left. Files get mode
``0o666 & ~umask``, like any file the user creates (``mkstemp`` would give 0600).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.errors import StoreError, UsageError
from bench.store.read import show_path

log = logging.getLogger(__name__)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "host"


def _host_tag() -> str:
    return _safe(socket.gethostname()).replace(".", "-")[:40]


#: ``.<name>.<host>.<pid>.<token>.tmp``: whose temporary file it is, so a stale one can be told from a live one
_TMP = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.(?P<token>[0-9a-f]{8})\.tmp")


def _tmp_create(path: Path) -> tuple[int, Path]:
    """A new temporary file next to ``path``, mode ``0o666 & ~umask`` (what ``open`` would give; mkstemp gives 0600)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name[:100]}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot create a temporary file", str(path.parent))


def _write_tmp(path: Path, doc: Mapping[str, Any]) -> Path:
    """``doc`` as JSON in a fresh, fsynced temporary file next to ``path``; removed again on any failure."""
    fd, tmp = _tmp_create(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=False, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(folder: Path) -> None:
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` so a reader (or a kill) sees the old file or the new one, never half.

    The file gets mode ``0o666 & ~umask``, like any file the user creates.
    """
    path = Path(path)
    tmp = _write_tmp(path, doc)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def write_new_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Create ``path`` holding ``doc``, complete or not at all; ``FileExistsError`` if it exists (never replaced).

    The document goes to a temporary file first, which is then hard-linked to ``path`` (link, unlike
    rename, refuses an existing name): a kill at any moment leaves no empty or half-written ``path``.
    """
    path = Path(path)
    tmp = _write_tmp(path, doc)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: claim the name, then replace it
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_dir(path.parent)


def refuse_existing(path: Path | str, message: str) -> None:
    """``UsageError(message)`` when ``path`` exists (a dangling link counts): checked before a long read."""
    if os.path.lexists(path):
        raise UsageError(message)


def create_json(
    path: Path | str, doc: Mapping[str, Any], *, exists: str, what: str = "file", replace: bool = False
) -> Path:
    """Create the output file ``path`` holding ``doc``: how ``merge``, ``export`` and ``baseline save`` write.

    Parent folders are made; the file appears complete or not at all (``write_new_json``), and never over
    an existing one -- two concurrent writers cannot both win -- unless ``replace``, when it is replaced
    atomically (``atomic_write_json``). Failures are one line: ``UsageError(exists)`` when the name is
    taken, ``StoreError`` naming ``what`` and the path when the system refuses (read-only, full disk).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, a name too long, no permission
        raise StoreError(f"cannot create folder {show_path(path.parent)} for {what} {show_path(path)}: "
                         f"{e.strerror or e}") from None  # fmt: skip
    try:
        if replace:
            atomic_write_json(path, doc)
        else:
            write_new_json(path, doc)
    except FileExistsError:
        raise UsageError(exists) from None
    except OSError as e:
        raise StoreError(f"cannot write {what} {show_path(path)}: {e.strerror or e}") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, run by someone else
        return True
    return True


def clean_stale(folder: Path | str) -> list[Path]:
    """Remove the temporary files and lock claims that writers on this host left when killed.

    A temporary file (``.<name>.<host>.<pid>.<token>.tmp``) is stale when its process is gone; a lock
    file (``.<name>.lock``) when nobody holds it and its process is gone or its run file exists. Files of
    other hosts (a shared folder) and of live processes are left alone. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    host = _host_tag()
    for e in entries:
        p = Path(e.path)
        m = _TMP.fullmatch(e.name)
        if m and m["host"] == host and not _pid_alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
        elif e.name.endswith(".json.lock") and _stale_lock(p, folder / e.name[1:-5], host):
            removed.append(p)
    if removed:
        log.info("removed %d stale temporary files in %s", len(removed), show_path(folder))
    return removed


def _stale_lock(lock: Path, run: Path, host: str) -> bool:
    """Remove ``lock`` if no process holds it and it is left over; True when removed."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: a live writer
        owner = os.read(fd, 200).decode("ascii", "replace").split()
        dead_claim = len(owner) == 2 and owner[0] == host and owner[1].isdigit() and not _pid_alive(int(owner[1]))
        if not (run.exists() or dead_claim):
            return False  # a fresh claim (reserve_path) whose writer has not started yet
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                lock.unlink()
                return True
        return False
    finally:
        os.close(fd)
