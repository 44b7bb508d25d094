"""The results-file schema, checked once on load: every field the code relies on, with its type.

The schema is documented in ``docs/results-schema.md``. ``validate`` raises a one-line ``StoreError``
naming the file and the field; unknown extra fields are allowed (newer writers), their nesting bounded.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import StoreError
from bench.result import STATUSES, CellKey
from bench.store.migrate import readable_versions, upgrade
from bench.store.read import show_path

#: the version of what a run file stores; older versions are upgraded on load (``bench.store.migrate``)
SCHEMA_VERSION = 2
KIND = "aigc-bench/run"
_REQUIRED = ("schema_version", "kind", "run_id", "suite", "suite_hash", "profile", "env", "records")
#: key fields every record has (``CellKey`` fields without a default; ``seq_len`` and ``mode`` came later)
_KEY_FIELDS = tuple(f.name for f in fields(CellKey) if f.default is MISSING)
#: deepest nesting accepted in the free-form parts (suite_definition, env, analysis); ours are < 10 deep.
#: Bounded so that no later ``json.dump``, ``deepcopy`` or repr of a document can hit the recursion limit.
MAX_DEPTH = 64
#: integers outside +-2**63 are refused: no metric is that large, and beyond it ``float()`` overflows.
_INT_BOUND = 1 << 63


def utc_now() -> str:
    """The current UTC time, ISO 8601 with a ``Z``, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
_TIMED_SAMPLES = ("latency_ms", "speed_ref_ms", "latency_process_ms", "speed_ref_process_ms")


def _check_env(c: _Check, env: Any) -> None:
    c.obj("env", env)
    for f in _ENV_STRINGS:
        c.string(f"env.{f}", env.get(f), null=True)
    for f in _ENV_INTS:
        c.integer(f"env.{f}", env.get(f), null=True)
    c.free("env", env)
    _check_peak(c, env.get("peak"))


def _check_peak(c: _Check, peak: Any) -> None:
    """``env.peak`` (``bench.peak``): per device, GEMM GFLOP/s per dtype and bandwidth GB/s, with raw samples."""
    c.obj("env.peak", peak, null=True)
    for device, entry in (peak or {}).items():
        at = f"env.peak.{device}"
        c.obj(at, entry)
        c.string(f"{at}.error", entry.get("error"), null=True)
        c.integer(f"{at}.threads", entry.get("threads"), null=True, low=1)
        gemm = entry.get("gemm")
        c.obj(f"{at}.gemm", gemm, null=True)
        for dtype, g in (gemm or {}).items():
            c.obj(f"{at}.gemm.{dtype}", g)
            c.number(f"{at}.gemm.{dtype}.gflops", g.get("gflops"), null=True)
            sizes = g.get("sizes")
            if sizes is not None and not isinstance(sizes, list):
                c.fail(f"{at}.gemm.{dtype}.sizes", "a list", sizes)
            for i, size in enumerate(sizes or ()):
                c.obj(f"{at}.gemm.{dtype}.sizes[{i}]", size)
                c.samples(f"{at}.gemm.{dtype}.sizes[{i}].samples", size.get("samples", []), timing=True)
        bw = entry.get("bandwidth")
        c.obj(f"{at}.bandwidth", bw, null=True)
        c.number(f"{at}.bandwidth.gbs", (bw or {}).get("gbs"), null=True)
        for kernel in ("copy", "triad"):
            k = (bw or {}).get(kernel)
            c.obj(f"{at}.bandwidth.{kernel}", k, null=True)
            c.samples(f"{at}.bandwidth.{kernel}.samples", (k or {}).get("samples", []), timing=True)


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
    c.string(f"{at}.key.execution", key.get("execution"), null=True, empty=False)  # absent: eager (bench.execution)
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
    """Check a loaded document against the schema (every field the code reads, with its type); returns it,
    upgraded to the current schema version when it was written by an older one (``bench.store.migrate``).

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
    versions = readable_versions(SCHEMA_VERSION)
    if type(doc["schema_version"]) is not int or doc["schema_version"] not in versions:
        raise StoreError(f"{c.where}: schema_version {_describe(doc['schema_version'])} is not supported "
                         f"(this aigc-bench reads {', '.join(map(str, versions))})")  # fmt: skip
    doc = upgrade(doc, SCHEMA_VERSION)
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
