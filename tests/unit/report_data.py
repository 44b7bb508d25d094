"""Synthetic run files for the report tests: known numbers, so tables can be checked against them."""

from __future__ import annotations

from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from bench.store import RunWriter, atomic_write_json, reserve_path

XSS = "<script>alert(1)</script>"

# cpu p50 (ms) at batch 1 per (tier, family); cuda is 8x faster, batch 8 is 5x slower than batch 1
CV_P50 = {("tiny", "resnet"): 10.0, ("tiny", "vit"): 18.0, ("tiny", "convnext"): 12.5,
          ("small", "resnet"): 30.0, ("small", "vit"): 45.0, ("small", "convnext"): 36.0}  # fmt: skip
CV_PARAMS = {"tiny": 5.5e6, "small": 22.0e6}
CV_MACS = {("tiny", "resnet"): 1.25e9, ("tiny", "vit"): 1.26e9, ("tiny", "convnext"): 1.3e9,
           ("small", "resnet"): 4.1e9, ("small", "vit"): 4.6e9, ("small", "convnext"): 4.45e9}  # fmt: skip
CV_ACC = {("tiny", "resnet"): (0.91, 0.004), ("tiny", "vit"): (0.88, 0.01), ("tiny", "convnext"): (0.93, 0.003),
          ("small", "resnet"): (0.94, 0.002), ("small", "vit"): (0.95, 0.004), ("small", "convnext"): (0.93, 0.005)}  # fmt: skip


def key(suite: str, tier: str, family: str, model: str, device: str, batch: int, seq_len: int | None = None,
        shape: tuple[int, ...] = (3, 32, 32)) -> dict[str, Any]:  # fmt: skip
    return {"suite": suite, "tier": tier, "family": family, "model": model, "device": device, "dtype": "fp32",
            "batch_size": batch, "input_shape": list(shape), "seq_len": seq_len, "mode": "infer"}  # fmt: skip


def record(k: dict[str, Any], metrics: dict[str, Any], status: str = "ok", error: str | None = None) -> dict[str, Any]:
    return {
        "key": k,
        "variant": {
            "builder": "x:y",
            "model_args": {},
            "target_params": 1,
            "achieved_params": metrics.get("params", 1),
        },
        "status": status,
        "error": error,
        "metrics": metrics if status == "ok" else {},
        "samples": {"latency_ms": [1.0, 2.0, 3.0]},
        "notes": [],
    }


def cv_records(model_names: dict[str, str] | None = None, accuracy: bool = True) -> list[dict[str, Any]]:
    """Two tiers x three families x cpu/cuda x batch 1/8; vit/small's FLOPs flagged; convnext/small fails on cuda b8."""
    names = model_names or {}
    out = []
    for tier in ("tiny", "small"):
        for family in ("resnet", "vit", "convnext"):
            model = names.get(family, f"{family}_{tier}")
            for device in ("cpu", "cuda"):
                for batch in (1, 8):
                    k = key("cv-synth", tier, family, model, device, batch)
                    if (tier, family, device, batch) == ("small", "convnext", "cuda", 8):
                        out.append(record(k, {}, "failed", "CUDA out of memory. Tried to allocate 2.00 GiB"))
                        continue
                    p50 = CV_P50[(tier, family)] * (1 if batch == 1 else 5) / (8 if device == "cuda" else 1)
                    m: dict[str, Any] = {
                        "params": CV_PARAMS[tier] * (1 + 0.01 * len(family)),
                        "macs": CV_MACS[(tier, family)] * batch,
                        "flops": 2 * CV_MACS[(tier, family)] * batch,
                        "latency_p50_ms": p50, "latency_p90_ms": p50 * 1.1, "latency_p99_ms": p50 * 1.2,
                        "throughput": batch / p50 * 1e3, "peak_memory_mb": 100.0 * batch + 10 * len(family),
                        "fvcore_macs": CV_MACS[(tier, family)] * batch * (0.9239 if (tier, family) == ("small", "vit") else 1.0),
                        "macs_flagged": (tier, family) == ("small", "vit"),
                    }  # fmt: skip
                    if accuracy:
                        mean, std = CV_ACC[(tier, family)]
                        m.update(accuracy_mean=mean, accuracy_std=std, accuracy_seeds=3, dataset="digits")
                    out.append(record(k, m))
    return out


def seq_records() -> list[dict[str, Any]]:
    """lstm latency and memory grow like T, transformer like T^2; MACs likewise; one tier, cpu, batch 1."""
    out = []
    for family, power in (("lstm", 1.0), ("transformer", 2.0)):
        for T in (64, 128, 256, 512):
            k = key("seq-synth", "small", family, f"{family}_small", "cpu", 1, T, shape=(T,))
            p50 = 2.0 * (T / 64) ** power
            out.append(record(k, {"params": 1.0e6, "macs": 3.0e6 * (T / 64) ** power, "latency_p50_ms": p50,
                                  "latency_p90_ms": p50 * 1.05, "throughput": 1e3 / p50, "tokens_per_s": T * 1e3 / p50,
                                  "peak_memory_mb": 5.0 * (T / 64) ** power}))  # fmt: skip
    return out


def write_run(folder: Path, suite: str, records: list[dict[str, Any]], *, host: str = "synth-host",
              started: str = "2026-01-02T03:04:05Z", analysis: dict[str, Any] | None = None,
              env: dict[str, Any] | None = None, profile: str = "quick") -> Path:  # fmt: skip
    """A finished run file ``folder/<suite>/<started>-<host>.json`` as the runner writes it."""
    t = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    path = reserve_path(folder, suite, t, host)
    header = {
        "run_id": f"{path.stem}-abc123", "suite": suite, "suite_hash": "abc123abc123abcd", "suite_definition": {},
        "profile": profile, "settings": {"devices": ["cpu", "cuda"], "threads": 2},
        "env": env or {"host": host, "cpu_model": "Synthetic CPU @ 3.0GHz", "threads": 2, "torch": "2.14.1",
                       "timm": "1.0.31", "gpu_name": "Synthetic GPU", "cuda": "12.8", "git_commit": "0123456789abcdef"},
        "started_at": started,
    }  # fmt: skip
    w = RunWriter(path, header)
    for r in records:
        w.add(r)
    if analysis is not None:
        w.doc["analysis"] = analysis
    w.doc["finished_at"] = started.replace("03:04", "03:14")
    atomic_write_json(path, w.doc)
    return path


class TagCollector(HTMLParser):
    """Every start tag (with its attributes) and every text run of an HTML page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
