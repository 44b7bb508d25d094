"""Environment fingerprint: what a result depends on besides the code under test.

Stored in every run file; ``compare`` checks the fields in ``COMPARABLE`` before it trusts a
difference (CI machines change under you: pytest-benchmark #255/#276).
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

#: fields that must match for latency/memory comparisons to be meaningful
COMPARABLE = ("cpu_model", "gpu_name", "torch", "threads", "cuda")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or ``platform.processor()`` elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The aigc-bench checkout's commit (with ``+dirty`` if modified), when run from a git tree."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(threads: int | None = None) -> dict[str, Any]:
    """The environment of this process as plain JSON-able data."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    fp: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "fvcore": _version("fvcore"),
        "numpy": _version("numpy"),
        "aigc_bench": _version("aigc-bench"),
        "git_commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_gb": _mem_total_gb(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        # A busy machine slows everything: the 1-minute load average at the start says how busy.
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        # ... and whether it was too busy for this run's threads (see bench.validity.busy_at_start).
        "busy_at_start": load_at_start(threads),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cuda": None,
        "gpu_name": None,
        "gpu_count": 0,
        "gpu_driver": None,
        "cudnn": None,
    }
    if torch.cuda.is_available():
        fp["cuda"] = torch.version.cuda
        fp["gpu_count"] = torch.cuda.device_count()
        fp["gpu_name"] = torch.cuda.get_device_name(0)
        fp["cudnn"] = torch.backends.cudnn.version()
        fp["gpu_driver"] = _nvidia_driver()
    return fp


# --- how busy the machine is --------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else every CPU; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_1m() -> float | None:
    """The 1-minute load average (runnable plus uninterruptible tasks, whole machine); None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def runnable_others(reads: int = 5, interval_s: float = 0.02) -> int | None:
    """Threads running or waiting for a CPU now, besides the one asking: the median of ``reads`` reads.

    Read from ``procs_running`` in ``/proc/stat`` (the whole machine, this thread included, hence the -1),
    as pyperf records ``runnable_threads``. One read is a snapshot of a moment; the median of a few over
    ``reads * interval_s`` seconds ignores a task that only woke up for it. None where not available.
    """
    counts = []
    for i in range(reads):
        if i:
            time.sleep(interval_s)
        try:
            with open("/proc/stat", encoding="ascii") as f:
                line = next((x for x in f if x.startswith("procs_running ")), None)
        except OSError:
            return None
        if line is None:
            return None
        counts.append(int(line.split()[1]))
    return max(0, int(statistics.median_low(counts)) - 1)


def load_at_start(threads: int | None = None) -> dict[str, Any]:
    """How busy the machine is before a run with ``threads`` threads per cell (None: torch's default).

    The figures and ``busy``, :func:`bench.validity.busy_at_start` of them; stored in the run's ``env``.
    """
    from bench.validity import busy_at_start

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    figures: dict[str, Any] = {"load_1m": load_1m(), "runnable_others": runnable_others(), "cpus": usable_cpus(),
                               "cpus_total": os.cpu_count(), "threads": int(threads)}  # fmt: skip
    figures["busy"] = busy_at_start(**figures)
    return figures


def busy_warning(threads: int | None = None) -> str | None:
    """The one-line warning ``aigc-bench run`` prints when the machine is too busy for its threads, else None."""
    from bench.validity import busy_message

    figures = load_at_start(threads)
    return busy_message(figures) if figures["busy"] else None


def latency_load(load_before: float | None) -> dict[str, Any]:
    """The load figures a latency record keeps (``load_1m_before`` given, ``load_1m_after`` read now)."""
    return {"load_1m_before": load_before, "load_1m_after": load_1m(), "load_cpus": usable_cpus(),
            "load_cpus_total": os.cpu_count()}  # fmt: skip


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def available_devices() -> list[str]:
    """Devices this machine can run: always ``cpu``, plus ``cuda`` when a GPU is visible."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gpu_ids() -> list[str]:
    """The GPUs a run may hand out one per worker (``--jobs``): the entries of ``CUDA_VISIBLE_DEVICES`` when
    the driver was given one (ids or UUIDs), else ``0..device_count-1``; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shown is not None:
        return [x.strip() for x in shown.split(",") if x.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def measured_on(record: Mapping[str, Any], doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The fingerprint of the host that measured ``record`` of run ``doc``: its own ``host_env`` (a Ray run),
    else the run's ``env``; an empty mapping where the (untrusted) file has neither as an object."""
    for src in (record.get("host_env"), doc.get("env")):
        if isinstance(src, Mapping):
            return src
    return {}


def host_fingerprint() -> dict[str, Any]:
    """The part of the fingerprint that tells one host (and its GPUs) from another, taken where a cell runs
    (a Ray worker on another node): stored per record, so cells measured on different hardware are told apart."""
    fp = fingerprint()
    keep = ("host", "os", "python", "torch", "timm", "aigc_bench", "git_commit", "cpu_model", "cpu_cores",
            "cpu_affinity", "memory_gb", "mkldnn", "cuda", "gpu_name", "gpu_count", "gpu_driver", "cudnn")  # fmt: skip
    out = {k: fp[k] for k in keep}
    out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return out
