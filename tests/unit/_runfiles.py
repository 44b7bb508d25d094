"""Synthetic run files for the compare / merge / export tests (built with the store's own writer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.store import RunWriter, reserve_path

ENV = {"host": "ci-1", "cpu_model": "Test CPU 9000", "gpu_name": None, "torch": "2.14.1", "threads": 2, "cuda": None,
       "python": "3.11.7", "os": "Linux-6.1-x86_64-with-glibc2.36", "cpu_cores": 2, "git_commit": "abc123+dirty"}  # fmt: skip


def record(model: str, samples: Sequence[float] = (10.0, 10.1, 9.9), *, status: str = "ok", family: str = "fam",
           tier: str = "tiny", batch: int = 1, macs: int = 4_089_184_256, params: int = 25_557_032,
           memory: float = 100.0, speed_ref: Sequence[float] | None = None, speed_drift: float = 0.0,
           speed_kind: str = "refnet fp32 cpu 2t v1", **metrics: Any) -> dict[str, Any]:  # fmt: skip
    """One record in the schema of docs/results-schema.md (``speed_ref``: machine-speed reference samples)."""
    srt = sorted(samples)
    if speed_ref is not None:
        ref = sorted(speed_ref)
        metrics = {"speed_ref_ms": ref[len(ref) // 2], "speed_ref_drift": speed_drift, "speed_ref_kind": speed_kind,
                   **metrics}  # fmt: skip
    raw = {"latency_ms": [float(x) for x in samples]}
    if speed_ref is not None:
        raw["speed_ref_ms"] = [float(x) for x in speed_ref]
    return {
        "key": {"suite": "s", "tier": tier, "family": family, "model": model, "device": "cpu", "dtype": "fp32",
                "batch_size": batch, "input_shape": [3, 8, 8], "seq_len": None, "mode": "infer"},
        "variant": {"builder": "x:y", "model_args": {}, "target_params": params, "achieved_params": params},
        "status": status,
        "error": None if status == "ok" else "RuntimeError: boom",
        "metrics": {} if status != "ok" else {
            "params": params, "macs": macs, "flops": 2 * macs, "latency_p50_ms": srt[len(srt) // 2],
            "latency_n": len(srt), "peak_memory_mb": memory, **metrics},
        "samples": raw if status == "ok" else {},
        "notes": [],
    }  # fmt: skip


def run_file(folder: Path, records: Iterable[Mapping[str, Any]], *, env: Mapping[str, Any] | None = None,
             suite_hash: str = "hash1", profile: str = "quick", shard: str | None = None, host: str = "ci-1",
             run_id: str | None = None) -> Path:  # fmt: skip
    """A finished run file under ``folder/s/``."""
    path = reserve_path(folder, "s", host=host)
    header = {"run_id": run_id or path.stem, "suite": "s", "suite_hash": suite_hash, "suite_definition": {},
              "profile": profile, "settings": {"devices": ["cpu"], "threads": None, "shard": shard},
              "env": dict(env or ENV), "started_at": "2026-11-29T09:30:00Z"}  # fmt: skip
    w = RunWriter(path, header, records)
    w.finish()
    return path
