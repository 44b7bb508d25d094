"""Result store: one schema-versioned JSON file per run, written atomically cell by cell.

The schema is documented in ``docs/results-schema.md``. The store never computes statistics:
it keeps what the metrics returned (raw samples included) and flattens it for analysis.

Result files are untrusted input (in CI they come from pull requests), so every file is read through
one door, :func:`read_json` then :func:`validate`: a bounded read of a regular file, a parse that
cannot blow the stack, then the type of every field the code relies on. Any fault is a
``StoreError`` (exit 2) naming the file and the field, never a traceback. Writers never leave a
half-written or empty file behind, and writers of the same run file merge under a lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import StoreError, UsageError

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

#: the largest file read (bytes): far above any real run (a 1000-cell run with 1000 samples a cell is
#: about 25 MB), low enough that a hostile file cannot exhaust memory. ``AIGC_BENCH_MAX_FILE_BYTES`` overrides.
MAX_FILE_BYTES = 1 << 30
MAX_FILE_BYTES_ENV = "AIGC_BENCH_MAX_FILE_BYTES"
#: deepest nesting accepted in the free-form parts (suite_definition, env, analysis); ours are < 10 deep.
#: Bounded so that no later ``json.dump``, ``deepcopy`` or repr of a document can hit the recursion limit.
MAX_DEPTH = 64
#: integers outside +-2**63 are refused: no metric is that large, and beyond it ``float()`` overflows.
_INT_BOUND = 1 << 63
#: a ``\uD800``-``\uDFFF`` escape: the only way a lone surrogate (a string no encoder accepts) gets in
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def utc_now() -> str:
    """The current UTC time, ISO 8601 with a ``Z``, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "host"


def show_path(path: Path | str) -> str:
    """A path for a one-line message: control characters (a newline in a file name) escaped."""
    s = str(path)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], s) if _CONTROL.search(s) else s


_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_component(name: Any) -> str:
    """``name`` (a suite, family or run id read from a results file) as one safe path component.

    Names from files never become path components as they are (``"../../x"``, ``"/etc"``, a NUL, a
    newline). Letters, digits, ``.``, ``_``, ``+`` and ``-`` are kept; anything else becomes ``-``;
    leading dots and dashes go (no ``..``, no hidden file, no option-like name); at most 100 characters.
    A name that had to change gets an 8-hex-digit hash of the original, so different names never
    share a component, and the same name always maps to the same one (report names stay stable).
    Ordinary names (``cv-backbones``, ``resnet50``) are returned unchanged.
    """
    text = str(name)
    clean = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).lstrip(".-").rstrip(".")[:100].rstrip(".") or "_"
    if clean.split(".")[0].upper() in _RESERVED:  # names Windows refuses (results folders get copied around)
        clean = "_" + clean
    if clean != text:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        clean = f"{clean}-{digest}"
    return clean


# --------------------------------------------------------------------------- reading: one door


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


# --------------------------------------------------------------------------- the schema, checked once


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        r = repr(v)
        return f"the string {r[:40]}{'...' if len(r) > 40 else ''}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, int):
        s = str(v) if abs(v) < 10**30 else f"an integer of {len(str(abs(v)))} digits"
        return s
    return repr(v)


class _Check:
    """Field checks of one document: each failure is a ``StoreError`` naming the file and the field."""

    def __init__(self, path: Path | str) -> None:
        self.where = show_path(path)

    def fail(self, field: str, expected: str, got: Any = None, *, describe: bool = True) -> None:
        tail = f", got {_describe(got)}" if describe else ""
        raise StoreError(f"{self.where}: malformed results file: {field}: expected {expected}{tail}")

    def string(self, field: str, v: Any, *, null: bool = False, empty: bool = True) -> None:
        if v is None and null:
            return
        if not isinstance(v, str) or (not empty and not v):
            self.fail(field, ("a non-empty string" if not empty else "a string") + (" or null" if null else ""), v)

    def integer(self, field: str, v: Any, *, null: bool = False, low: int | None = None) -> None:
        if v is None and null:
            return
        if type(v) is not int or abs(v) >= _INT_BOUND or (low is not None and v < low):
            what = "an integer" if low is None else f"an integer >= {low}"
            self.fail(field, what + (" or null" if null else ""), v)

    def number(self, field: str, v: Any, *, null: bool = False, nan: bool = True) -> None:
        """An int or float (not a bool); ints bounded; ``nan``: NaN allowed (never +-inf)."""
        if v is None and null:
            return
        t = type(v)
        ok = (t is int and abs(v) < _INT_BOUND) or (t is float and (math.isfinite(v) or (nan and v != v)))
        if not ok:
            what = "a finite number" + (" or NaN" if nan else "")
            self.fail(field, what + (" or null" if null else ""), v)

    def obj(self, field: str, v: Any, *, null: bool = False) -> None:
        if v is None and null:
            return
        if not isinstance(v, dict):
            self.fail(field, "an object" + (" or null" if null else ""), v)

    def strings(self, field: str, v: Any, *, null: bool = False) -> None:
        if v is None and null:
            return
        if not isinstance(v, list):
            self.fail(field, "a list of strings" + (" or null" if null else ""), v)
        for i, x in enumerate(v):
            self.string(f"{field}[{i}]", x)

    def integers(self, field: str, v: Any, *, null: bool = False, low: int | None = None) -> None:
        if v is None and null:
            return
        if not isinstance(v, list):
            self.fail(field, "a list of integers" + (" or null" if null else ""), v)
        for i, x in enumerate(v):
            self.integer(f"{field}[{i}]", x, low=low)

    def samples(self, field: str, v: Any, *, timing: bool) -> None:
        """A list of numbers; ``timing``: every one finite and >= 0 (latencies). Fast on a million samples."""
        if not isinstance(v, list):
            self.fail(field, "a list of numbers", v)
        if not v:
            return
        types = set(map(type, v))
        if not types <= {int, float}:
            i, x = next((i, x) for i, x in enumerate(v) if type(x) not in (int, float))
            self.fail(f"{field}[{i}]", "a number", x)
        if int in types:
            for i, x in enumerate(v):
                if type(x) is int and abs(x) >= _INT_BOUND:
                    self.fail(f"{field}[{i}]", "a number of sensible size", x)
        if not timing:
            return
        try:
            finite = math.isfinite(math.fsum(v))  # one C pass: NaN or inf anywhere makes the sum non-finite
        except OverflowError:
            finite = False  # huge finite values can overflow the sum: look one by one
        if not finite:
            for i, x in enumerate(v):
                if not math.isfinite(x):
                    self.fail(f"{field}[{i}]", "a finite number of milliseconds", x)
        if min(v) < 0:
            i = next(i for i, x in enumerate(v) if x < 0)
            self.fail(f"{field}[{i}]", "a time >= 0", v[i])

    def free(self, field: str, v: Any) -> None:
        """Free-form JSON (suite definition, analysis, unknown fields): only its depth is bounded."""
        stack: list[tuple[Any, int]] = [(v, 0)]
        while stack:
            x, depth = stack.pop()
            if depth > MAX_DEPTH:
                self.fail(field, f"JSON nested at most {MAX_DEPTH} deep", describe=False)
            if isinstance(x, dict):
                stack.extend((y, depth + 1) for y in x.values() if isinstance(y, dict | list))
            elif isinstance(x, list) and (list in (ts := set(map(type, x))) or dict in ts):
                stack.extend((y, depth + 1) for y in x if isinstance(y, dict | list))


#: env fields the code reads as strings / integers (everything else in ``env`` is free-form)
_ENV_STRINGS = ("host", "os", "python", "torch", "torchvision", "timm", "numpy", "aigc_bench", "git_commit",
                "cpu_model", "cuda", "gpu_name", "gpu_driver")  # fmt: skip
_ENV_INTS = ("cpu_cores", "threads", "gpu_count")
_SHARD = re.compile(r"[1-9][0-9]{0,8}/[1-9][0-9]{0,8}")
#: the most shards a run file may claim to be split into (merge lists the missing ones)
MAX_SHARDS = 10_000
#: record fields with a known shape; anything else in a record is free-form
_RECORD_FIELDS = frozenset({"key", "variant", "status", "error", "metrics", "samples", "notes", "started_at",
                            "duration_s"})  # fmt: skip
_TOP_FIELDS = frozenset({*_REQUIRED, "suite_definition", "settings", "started_at", "finished_at", "analysis",
                         "merged_from"})  # fmt: skip
#: metrics that are quantities by their name (units in the names): a number or null, never a string or bool
_NUMERIC_METRIC = re.compile(
    r"params|macs|flops|throughput|tokens|buffers"
    r"|.*_(ms|mb|gb|s|pct|n|macs|params|flops|per_token|mean|std|ci95|ci_low|ci_high|seeds|drift|chance|steps"
    r"|iters|threads|per_sample)"
)
#: sample lists that are times: finite and >= 0 (compare and export compute on them)
_TIMED_SAMPLES = ("latency_ms", "speed_ref_ms")


def _check_env(c: _Check, env: Any) -> None:
    c.obj("env", env)
    for f in _ENV_STRINGS:
        c.string(f"env.{f}", env.get(f), null=True)
    for f in _ENV_INTS:
        c.integer(f"env.{f}", env.get(f), null=True)
    c.free("env", env)


def _check_settings(c: _Check, s: Any) -> None:
    c.obj("settings", s, null=True)
    if s is None:
        return
    for f in ("devices", "dtypes", "tiers", "families"):
        c.strings(f"settings.{f}", s.get(f), null=True)
    c.integers("settings.batch_sizes", s.get("batch_sizes"), null=True, low=1)
    c.integer("settings.threads", s.get("threads"), null=True, low=1)
    c.integer("settings.cells", s.get("cells"), null=True, low=0)
    c.string("settings.allocator", s.get("allocator"), null=True)
    shard = s.get("shard")
    if shard is not None:
        k, n = (int(x) for x in shard.split("/")) if isinstance(shard, str) and _SHARD.fullmatch(shard) else (0, 0)
        if not 1 <= k <= n <= MAX_SHARDS:
            c.fail("settings.shard", f"null or 'K/N' with 1 <= K <= N <= {MAX_SHARDS} (e.g. '2/4')", shard)
    c.free("settings", s)


def _check_record(c: _Check, i: int, r: Any) -> None:
    at = f"records[{i}]"
    c.obj(at, r)
    key = r.get("key")
    if not isinstance(key, dict):
        c.fail(f"{at}.key", "an object (the cell key)", key)
    gone = [k for k in _KEY_FIELDS if k not in key]
    if gone:
        raise StoreError(f"{c.where}: malformed results file: {at}.key lacks {', '.join(gone)}")
    for f in ("suite", "tier", "family", "model", "device", "dtype"):
        c.string(f"{at}.key.{f}", key[f], empty=False)
    c.string(f"{at}.key.mode", key.get("mode"), null=True, empty=False)
    c.integer(f"{at}.key.batch_size", key["batch_size"], low=1)
    c.integers(f"{at}.key.input_shape", key["input_shape"], low=0)
    c.integer(f"{at}.key.seq_len", key.get("seq_len"), null=True, low=1)
    status = r.get("status")
    if status not in STATUSES:
        c.fail(f"{at}.status", f"one of {', '.join(STATUSES)}", status)
    c.string(f"{at}.error", r.get("error"), null=True)
    metrics = r.get("metrics")
    c.obj(f"{at}.metrics", metrics, null=True)
    for name, v in (metrics or {}).items():
        if _NUMERIC_METRIC.fullmatch(name):  # a measured quantity: a number (NaN: not measured) or null
            c.number(f"{at}.metrics.{name}", v, null=True)
        elif not (v is None or isinstance(v, str | bool)):  # flat: a number, string, bool or null
            c.number(f"{at}.metrics.{name}", v)
    samples = r.get("samples")
    c.obj(f"{at}.samples", samples, null=True)
    for name, v in (samples or {}).items():
        c.samples(f"{at}.samples.{name}", v, timing=name in _TIMED_SAMPLES)
    c.strings(f"{at}.notes", r.get("notes"), null=True)
    variant = r.get("variant")
    c.obj(f"{at}.variant", variant, null=True)
    if variant is not None:
        c.string(f"{at}.variant.builder", variant.get("builder"), null=True)
        c.number(f"{at}.variant.target_params", variant.get("target_params"), null=True, nan=False)
        c.number(f"{at}.variant.achieved_params", variant.get("achieved_params"), null=True, nan=False)
        c.obj(f"{at}.variant.model_args", variant.get("model_args"), null=True)
        c.string(f"{at}.variant.knob", variant.get("knob"), null=True)
        c.free(f"{at}.variant", variant)
    c.string(f"{at}.started_at", r.get("started_at"), null=True)
    c.number(f"{at}.duration_s", r.get("duration_s"), null=True)
    for f in r.keys() - _RECORD_FIELDS:
        c.free(f"{at}.{f}", r[f])


def validate(doc: Any, path: Path | str) -> dict[str, Any]:
    """Check a loaded document against the schema (every field the code reads, with its type).

    ``StoreError`` names the file and the field; unknown extra fields are allowed (newer writers).
    """
    c = _Check(path)
    if not isinstance(doc, dict):
        raise StoreError(f"{c.where}: not an aigc-bench results file (top level is not an object)")
    if doc.get("kind") != KIND:
        raise StoreError(f"{c.where}: not an aigc-bench results file (kind is {_describe(doc.get('kind'))}, "
                         f"expected {KIND!r})")  # fmt: skip
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise StoreError(f"{c.where}: malformed results file, missing {', '.join(missing)}")
    if type(doc["schema_version"]) is not int or doc["schema_version"] != SCHEMA_VERSION:
        raise StoreError(f"{c.where}: schema_version {_describe(doc['schema_version'])} is not supported "
                         f"(this aigc-bench reads {SCHEMA_VERSION})")  # fmt: skip
    c.string("run_id", doc["run_id"], empty=False)
    c.string("suite", doc["suite"], empty=False)
    c.string("suite_hash", doc["suite_hash"])
    c.string("profile", doc["profile"], empty=False)
    _check_env(c, doc["env"])
    _check_settings(c, doc.get("settings"))
    c.obj("suite_definition", doc.get("suite_definition"), null=True)
    c.free("suite_definition", doc.get("suite_definition"))
    c.string("started_at", doc.get("started_at"), null=True)
    c.string("finished_at", doc.get("finished_at"), null=True)
    c.obj("analysis", doc.get("analysis"), null=True)
    c.free("analysis", doc.get("analysis"))
    merged = doc.get("merged_from")
    if merged is not None:
        if not isinstance(merged, list):
            c.fail("merged_from", "a list", merged)
        for i, m in enumerate(merged):
            c.obj(f"merged_from[{i}]", m)
            for f in ("run_id", "shard", "host"):
                c.string(f"merged_from[{i}].{f}", m.get(f), null=True)
            c.integer(f"merged_from[{i}].cells", m.get("cells"), null=True, low=0)
    for f in doc.keys() - _TOP_FIELDS:
        c.free(f, doc[f])
    records = doc["records"]
    if not isinstance(records, list):
        c.fail("records", "a list", records)
    for i, r in enumerate(records):
        _check_record(c, i, r)
    return doc


def load_run(path: Path | str) -> dict[str, Any]:
    """Read and validate one run file (``StoreError`` naming the file and the field on any fault)."""
    p = Path(path)
    return validate(read_json(p), p)


# --------------------------------------------------------------------------- finding files


def _scan(folder: Path) -> list[Path]:
    """Every non-hidden ``*.json`` under ``folder`` (symbolic links to folders are not followed: no loops)."""

    def fail(e: OSError) -> None:
        raise StoreError(f"{show_path(e.filename or folder)}: cannot list folder ({e.strerror or e})")

    out: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs.sort()
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
    """Flatten each record of a (validated) run document into one row (see ``COLUMNS``)."""
    host = (doc.get("env") or {}).get("host")
    for r in doc["records"]:
        key = dict(r["key"])
        key["input_shape"] = tuple(key.get("input_shape") or ())
        key.setdefault("seq_len", None)
        key["mode"] = key.get("mode") or "infer"
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


def results_frame(runs: Iterable[tuple[Path | str | None, Mapping[str, Any]]]):  # -> pandas.DataFrame
    """Validated run documents (with their paths) as one DataFrame, one row per cell (see ``load_results``)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for path, doc in runs:
        rows.extend(iter_rows(doc, path))
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = math.nan if c not in ("status", "error", "latency_samples") else None
    rest = [c for c in df.columns if c not in COLUMNS]
    return df[list(COLUMNS) + rest]


def load_results(paths: str | Path | Iterable[str | Path]):  # -> pandas.DataFrame
    """Load result files or folders (searched recursively) into a DataFrame, one row per cell.

    Columns: at least ``COLUMNS``, then every stored metric; missing values are NaN/None.
    Any malformed file is a ``StoreError`` (see :func:`load_runs`).
    """
    return results_frame(load_runs(paths))


# --------------------------------------------------------------------------- writing


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

    def add(self, record: Mapping[str, Any]) -> None:
        """Record a cell (replacing an earlier record of the same cell), merged with the file on disk."""
        record = dict(record)
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
    from bench.spec import CellKey

    return CellKey.from_dict(record["key"]).id
