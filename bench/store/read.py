"""Reading an untrusted file: the one door every results file goes through first.

A bounded read of a regular file (never a device, FIFO or folder; ``/proc`` files are bounded by the
read, not the stat), a UTF-8 decode, a parse that cannot blow the stack, and no lone surrogate. Any
fault is a one-line ``StoreError`` naming the file. The schema is checked next (``bench.store.schema``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from bench.errors import StoreError, UsageError

#: the largest file read (bytes): far above any real run (a 1000-cell run with 1000 samples a cell is
#: about 25 MB), low enough that a hostile file cannot exhaust memory. ``AIGC_BENCH_MAX_FILE_BYTES`` overrides.
MAX_FILE_BYTES = 1 << 30
MAX_FILE_BYTES_ENV = "AIGC_BENCH_MAX_FILE_BYTES"
#: a ``\uD800``-``\uDFFF`` escape: the only way a lone surrogate (a string no encoder accepts) gets in
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def show_path(path: Path | str) -> str:
    """A path for a one-line message: control characters (a newline in a file name) escaped."""
    s = str(path)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], s) if _CONTROL.search(s) else s


def max_file_bytes() -> int:
    """The size limit of a results file: ``AIGC_BENCH_MAX_FILE_BYTES`` when set, else ``MAX_FILE_BYTES``."""
    raw = os.environ.get(MAX_FILE_BYTES_ENV)
    if raw is None or raw.strip() == "":
        return MAX_FILE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{MAX_FILE_BYTES_ENV} must be a positive number of bytes, got {raw!r}")
    return value


def _open_error(p: Path, e: OSError) -> StoreError:
    where = show_path(p)
    if e.errno == errno.ENOENT:
        if os.path.islink(p):
            return StoreError(f"{where}: broken symbolic link (its target {show_path(os.readlink(p))} does not exist)")
        return StoreError(f"{where}: no such file")
    if e.errno == errno.ELOOP:
        return StoreError(f"{where}: symbolic link loop")
    return StoreError(f"{where}: cannot read ({e.strerror or e})")


def _read_bytes(p: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file; anything else (a device, a FIFO, a folder) is refused."""
    where = show_path(p)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below in any case.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _open_error(p, e) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{where}: is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{where}: not a regular file (a device, pipe or socket); refusing to read it")
        if st.st_size > limit:
            raise StoreError(f"{where}: file is {st.st_size / 2**20:,.0f} MiB, over the {limit / 2**20:,.0f} MiB "
                             f"limit for results files (set {MAX_FILE_BYTES_ENV} to raise it)")  # fmt: skip
        chunks: list[bytes] = []
        got = 0
        while got <= limit:  # files in /proc say size 0 and have content: bound the read, not just the stat
            chunk = os.read(fd, min(1 << 24, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise StoreError(f"{where}: more than {limit:,} bytes, over the limit for results files "
                             f"(set {MAX_FILE_BYTES_ENV} to raise it)")  # fmt: skip
        return b"".join(chunks)
    except OSError as e:
        raise StoreError(f"{where}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)


def read_json(path: Path | str) -> Any:
    """Parse a JSON file safely: bounded size, a regular file only, UTF-8, no stack overflow, no lone surrogate.

    Every failure is a one-line ``StoreError`` naming the file. The result is plain JSON data, not yet
    checked against any schema (see :func:`validate`).
    """
    p = Path(path)
    where = show_path(p)
    data = _read_bytes(p, max_file_bytes())
    if not data or data.isspace():
        raise StoreError(f"{where}: empty file (a run killed before its first write leaves none now; delete it)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StoreError(f"{where}: not UTF-8 text (byte {e.start})") from None
    del data
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise StoreError(f"{where}: not a results file (JSON nested too deeply)") from None
    except ValueError as e:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        raise StoreError(f"{where}: not valid JSON ({str(e).split(':')[0]})") from None
    except MemoryError:
        raise StoreError(f"{where}: too large to load into memory") from None
    if _SURROGATE_ESCAPE.search(text):  # rare: check every string only when an escape could make a lone one
        bad = _lone_surrogate(doc)
        if bad is not None:
            raise StoreError(f"{where}: {bad}: a string holds a lone UTF-16 surrogate (not text)")
    return doc


def _lone_surrogate(doc: Any) -> str | None:
    """The field path of the first string (or object key) that cannot be encoded as UTF-8, if any."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return where or "(top level)"
        elif isinstance(v, dict):
            for k, x in v.items():
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{where}.{k!r}" if where else repr(k)
                stack.append((f"{where}.{k}" if where else k, x))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v) if isinstance(x, str | list | dict))
    return None
