"""Export a run to other tools' formats. Today: pytest-benchmark's saved-run JSON.

A file written by ``to_pytest_benchmark`` is read by ``pytest-benchmark compare FILE`` (and by
``pytest --benchmark-compare`` when placed in its storage as ``.benchmarks/<machine>/NNNN_<name>.json``):
one benchmark per ok cell, statistics computed from the raw latency samples, in seconds, with the
same definitions as ``pytest_benchmark.stats.Stats`` (quartiles by its methods 2 and 3, Tukey fences).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from bench.numbers import is_finite
from bench.result import results_of
from bench.spec import CellKey

FORMATS = ("pytest-benchmark",)


def extra_metrics() -> tuple[str, ...]:
    """Metrics copied into each benchmark's ``extra_info`` when the cell has them: the metric catalogue's
    ``export`` columns (``bench.catalogue.exported``: params, MACs, FLOPs, latency p50, throughput, peak
    memory, accuracy and any metric that declares ``export=True``)."""
    from bench.catalogue import exported

    return exported()


def __getattr__(name: str) -> Any:  # ``EXTRA_METRICS``, as this module had it: now read from the catalogue
    if name == "EXTRA_METRICS":
        return extra_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_benchmark_stats(samples_s: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for raw per-round times in seconds (``iterations`` 1).

    Computed by the installed pytest-benchmark's own ``Stats`` class, so the numbers match whatever
    version will read the file (its outlier bounds changed between releases).
    """
    from pytest_benchmark.stats import Stats

    if not samples_s:
        raise ValueError("pytest-benchmark stats need at least one sample")
    data = [float(x) for x in samples_s]
    stats = Stats()
    for x in data:
        stats.update(x)
    return {**stats.as_dict(), "data": data, "iterations": 1}


def _machine_info(env: Mapping[str, Any]) -> dict[str, Any]:
    os_name = str(env.get("os") or "")
    return {
        "node": env.get("host") or "",
        "processor": env.get("cpu_model") or "",
        "machine": next((p for p in os_name.split("-") if p in ("x86_64", "aarch64", "arm64", "AMD64")), ""),
        "python_compiler": "",
        "python_implementation": "CPython",
        "python_implementation_version": env.get("python") or "",
        "python_version": env.get("python") or "",
        "python_build": ["", ""],
        "release": "",
        "system": os_name.split("-")[0] if os_name else "",
        "cpu": {"brand_raw": env.get("cpu_model") or "", "count": env.get("cpu_cores")},
        "aigc_bench_env": dict(env),  # the full fingerprint, for whoever reads the file later
    }


def _commit_info(env: Mapping[str, Any]) -> dict[str, Any]:
    commit = str(env.get("git_commit") or "unversioned")
    return {
        "id": commit.removesuffix("+dirty"),
        "time": None,
        "author_time": None,
        "dirty": commit.endswith("+dirty"),
        "project": "aigc-bench",
        "branch": "(unknown)",
    }


def _param(key: CellKey) -> str:
    parts = [key.tier, key.model, key.device, key.dtype, f"b{key.batch_size}", "x".join(map(str, key.input_shape))]
    if key.seq_len is not None:
        parts.append(f"T{key.seq_len}")
    extra = [key.execution] if key.execution != "eager" else []  # eager: the names of runs before executions
    return "-".join([*parts, key.mode, *extra])


def to_pytest_benchmark(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A run document as pytest-benchmark's saved JSON, plus the ids of cells left out (not ok, no samples)."""
    env = doc.get("env") or {}
    benchmarks: list[dict[str, Any]] = []
    left_out: list[str] = []
    extra = extra_metrics()
    for r in sorted(results_of(doc["records"]), key=lambda r: r.id):
        key, samples, metrics = r.key, r.samples.get("latency_ms") or (), r.metrics
        if not r.ok or not samples:
            left_out.append(key.id)
            continue
        param = _param(key)
        benchmarks.append({
            "group": f"{key.suite}/{key.tier} {key.device} {key.dtype} b{key.batch_size} {key.mode}",
            "name": f"{key.family}[{param}]",
            "fullname": f"{key.suite}::{key.family}[{param}]",
            "params": {k: v for k, v in key.to_dict().items()},
            "param": param,
            "extra_info": {"cell": key.id, **{m: metrics[m] for m in extra if is_finite(metrics.get(m))}},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(samples), "max_time": None,
                        "min_time": None, "warmup": True},
            "stats": pytest_benchmark_stats([x / 1e3 for x in samples]),  # ms -> s
        })  # fmt: skip
    started = doc.get("started_at") or ""
    try:
        version = metadata.version("pytest-benchmark")
    except metadata.PackageNotFoundError:
        version = "5.0.0"
    out = {
        "machine_info": _machine_info(env),
        "commit_info": _commit_info(env),
        "benchmarks": benchmarks,
        "datetime": started.replace("Z", "+00:00"),
        "version": version,
    }
    return out, left_out
