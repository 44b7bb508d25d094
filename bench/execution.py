"""Executions: how a cell's model is run -- eager, compiled, in channels_last, under autocast -- as a cell axis.

An execution is a name (``CellKey.execution``; docs/executions.md). The single executions:

- ``eager``: the model as built (today's measurement, and the default);
- ``compile``: ``torch.compile(model)`` with inductor's default mode; ``compile-max``:
  ``mode="max-autotune-no-cudagraphs"``; ``reduce-overhead``: ``mode="reduce-overhead"`` (CUDA graphs; CUDA only);
- ``channels_last``: ``model.to(memory_format=torch.channels_last)`` and channels_last 4-D inputs (image
  models only: a cell without a 4-D input is ``skipped`` with the reason);
- ``autocast``: a float32 model run under ``torch.autocast(device, dtype)`` for the cell's dtype, where
  ``eager`` at bf16 casts the weights instead. An autocast cell's dtype is never fp32 (autocast to fp32 is
  eager): ``cell_dtype`` turns fp32 into bf16.

**Combination rule.** Executions join with ``+``: at most one compiler (``compile``, ``compile-max``,
``reduce-overhead``) with any of ``channels_last`` and ``autocast``; ``eager`` combines with nothing (it is
the absence of the others). Names are canonical -- compiler, then ``channels_last``, then ``autocast`` --
so ``autocast+compile`` is stored as ``compile+autocast``. Applied in the order layout, precision, compiler:
the model is moved to channels_last, wrapped in autocast, and the whole is compiled (so autocast is traced
into the graph, as PyTorch recommends).

``apply`` changes only the model it is given (moved, wrapped, compiled) and returns new inputs; dynamo's
counters it reads are snapshotted and put back by ``Applied.close`` (graph breaks and recompiles are the
deltas over the cell). Resetting dynamo (``fresh_dynamo``) is for worker processes only: it drops every
compiled function of the process, which nothing can restore.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    import torch

#: the default execution: the model as built (cells without an ``execution`` are eager)
EAGER = "eager"
#: compiler executions -> ``torch.compile`` mode
COMPILERS: dict[str, str] = {"compile": "default", "compile-max": "max-autotune-no-cudagraphs",
                             "reduce-overhead": "reduce-overhead"}  # fmt: skip
#: executions that change the layout or precision, combinable with one compiler
MODIFIERS: tuple[str, ...] = ("channels_last", "autocast")
#: every single execution, in canonical order
SINGLE: tuple[str, ...] = (EAGER, *COMPILERS, *MODIFIERS)
#: compiler modes that need CUDA (CUDA graphs)
CUDA_ONLY: tuple[str, ...] = ("reduce-overhead",)
#: metrics measured on the eager model whatever the execution: they count work (the same work) or train their
#: own copy, so MACs stay those of the eager graph. Every other metric runs the executed model.
EAGER_METRICS: tuple[str, ...] = ("params", "flops", "seq", "accuracy")
#: the variable naming inductor's on-disk cache (its compiled kernels, FX graphs): a warm one makes compiling cheap
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
#: ``torch.compile`` 's backend for compiled executions (tests set "eager": dynamo without inductor's compile time)
DEFAULT_BACKEND = "inductor"
#: the dtype an autocast cell at fp32 runs in (autocast to float32 would be eager)
AUTOCAST_DEFAULT_DTYPE = "bf16"


class NotApplicable(Exception):
    """The execution does not apply to this cell (the message says why): the cell is ``skipped``, not failed."""


@dataclass(frozen=True)
class Execution:
    """A parsed execution: a compiler (or None) and the modifiers; ``name`` is its canonical text."""

    compiler: str | None = None
    channels_last: bool = False
    autocast: bool = False

    @property
    def name(self) -> str:
        parts = [*([self.compiler] if self.compiler else []), *(["channels_last"] if self.channels_last else []),
                 *(["autocast"] if self.autocast else [])]  # fmt: skip
        return "+".join(parts) or EAGER

    @property
    def compiled(self) -> bool:
        return self.compiler is not None

    @property
    def compile_mode(self) -> str | None:
        """The ``torch.compile`` mode, or None for an uncompiled execution."""
        return COMPILERS[self.compiler] if self.compiler else None


def parse(text: str) -> Execution:
    """``"compile+channels_last"`` -> ``Execution``; an unknown part or a combination the rule forbids is a
    ``UsageError`` (exit 2) naming the valid choices."""
    parts = [p.strip() for p in str(text).split("+")]
    for p in parts:
        if p not in SINGLE:
            raise UnknownNameError("execution", p, SINGLE)
    if len(set(parts)) != len(parts):
        raise UsageError(f"execution {text!r} names a part twice")
    if EAGER in parts and len(parts) > 1:
        raise UsageError(f"execution {text!r}: eager combines with nothing (it is the absence of the others)")
    compilers = [p for p in parts if p in COMPILERS]
    if len(compilers) > 1:
        raise UsageError(f"execution {text!r}: at most one of {', '.join(COMPILERS)}")
    return Execution(compilers[0] if compilers else None, "channels_last" in parts, "autocast" in parts)


def canonical(text: str) -> str:
    """The canonical name of an execution (``autocast+compile`` -> ``compile+autocast``)."""
    return parse(text).name


def check_executions(names: Sequence[str]) -> tuple[str, ...]:
    """Canonical names, in the order given, without repeats (bad ones: ``UsageError``)."""
    return tuple(dict.fromkeys(canonical(n) for n in names))


def cell_dtype(execution: str, dtype: str) -> str:
    """The dtype of a cell of ``execution`` asked to run at ``dtype``: an autocast cell at fp32 runs at bf16."""
    return AUTOCAST_DEFAULT_DTYPE if parse(execution).autocast and dtype == "fp32" else dtype


def weights_dtype(execution: str, dtype: str) -> str:
    """The dtype the model's weights and inputs are built in: fp32 under autocast, else the cell's."""
    return "fp32" if parse(execution).autocast else dtype


def check_applicable(execution: str, device: str) -> None:
    """Raise ``NotApplicable`` for an execution this device cannot run (before anything is built)."""
    ex = parse(execution)
    if ex.compiler in CUDA_ONLY and device != "cuda":
        raise NotApplicable(f"{ex.compiler} uses CUDA graphs: CUDA only")


def _autocast_module() -> type:
    import torch

    class Autocast(torch.nn.Module):
        """Runs ``inner`` under ``torch.autocast(device_type, dtype)``: parameters and state stay ``inner`` 's."""

        def __init__(self, inner: torch.nn.Module, device_type: str, dtype: torch.dtype) -> None:
            super().__init__()
            self.inner = inner
            self.device_type = device_type
            self.autocast_dtype = dtype

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            with torch.autocast(self.device_type, dtype=self.autocast_dtype):
                return self.inner(*args, **kwargs)

    return Autocast


@dataclass
class Applied:
    """An execution applied to one model: what to run (``model``, ``inputs``), what counts work (``eager_model``,
    ``eager_inputs``), when ``torch.compile`` was called and dynamo's counters before it."""

    execution: Execution
    model: Any
    inputs: tuple[Any, ...]
    eager_model: Any
    eager_inputs: tuple[Any, ...]
    compile_call_s: float | None = None  # how long the torch.compile call took (compiling itself is at the first call)
    first_call: dict[str, Any] = field(default_factory=dict)  # set by measure_first_call
    _counters: Any = None  # dynamo's counters before compiling (restored by close)
    _metrics_seen: frozenset[int] = frozenset()  # ids of dynamo's compilation records before compiling
    _cache: tuple[str, str | None] | None = None  # (the cold inductor cache folder, TORCHINDUCTOR_CACHE_DIR before)

    def counts(self) -> dict[str, int | None]:
        """Graph breaks and recompiles since ``apply`` (None for an uncompiled execution)."""
        if not self.execution.compiled:
            return {"graph_breaks": None, "recompiles": None}
        from torch._dynamo.utils import counters, get_compilation_metrics

        before = self._counters.get("graph_break", {}) if self._counters is not None else {}
        breaks = sum(counters["graph_break"].values()) - sum(before.values())
        recompiles = sum(1 for m in get_compilation_metrics()
                         if id(m) not in self._metrics_seen and m.recompile_reason is not None)  # fmt: skip
        return {"graph_breaks": int(breaks), "recompiles": int(recompiles)}

    def close(self) -> None:
        """Put dynamo's counters and ``TORCHINDUCTOR_CACHE_DIR`` back as they were before ``apply``, and remove
        the cold cache folder (the caller's process is left as found)."""
        if self._counters is not None:
            from torch._dynamo.utils import counters

            counters.clear()
            for k, v in self._counters.items():
                counters[k].update(v)
            self._counters = None
        if self._cache is not None:
            folder, before = self._cache
            _set_env(CACHE_ENV, before)
            shutil.rmtree(folder, ignore_errors=True)
            self._cache = None


def apply(model: torch.nn.Module, inputs: Sequence[Any], execution: str, *, device: str | torch.device,
          dtype: str, backend: str | Callable[..., Any] | None = None, cold_cache: bool = False) -> Applied:  # fmt: skip
    """Apply ``execution`` to ``model`` (built in ``weights_dtype``) and ``inputs`` for a cell of ``dtype``.

    Returns an ``Applied``; raises ``NotApplicable`` when the execution does not apply (channels_last without a
    4-D input, a CUDA-only mode elsewhere). The model is changed in place (channels_last) and wrapped; nothing
    runs yet: compiling happens at the first call (``measure_first_call``). ``backend``: ``torch.compile`` 's
    (None: ``DEFAULT_BACKEND``, inductor). ``cold_cache``: point inductor's
    on-disk cache (``TORCHINDUCTOR_CACHE_DIR``) at a new empty folder until ``close``, so ``compile_s`` is a cold
    compile's whatever ran before on the machine (the worker does; a fresh process has no in-memory cache).
    """
    import torch

    from bench.inputs import torch_dtype

    ex = parse(execution)
    dev = torch.device(device)
    check_applicable(ex.name, dev.type)
    eager_inputs = tuple(inputs)
    run_inputs = eager_inputs
    if ex.channels_last:
        images = [x for x in eager_inputs if isinstance(x, torch.Tensor) and x.dim() == 4]
        if not images:
            shapes = ", ".join(str(tuple(x.shape)) for x in eager_inputs if isinstance(x, torch.Tensor)) or "none"
            raise NotApplicable(f"channels_last applies to 4-D (N, C, H, W) image inputs; this cell's are {shapes}")
        model.to(memory_format=torch.channels_last)
        run_inputs = tuple(x.contiguous(memory_format=torch.channels_last)
                           if isinstance(x, torch.Tensor) and x.dim() == 4 else x for x in eager_inputs)  # fmt: skip
    run_model: Any = model
    if ex.autocast:
        run_model = _autocast_module()(model, dev.type, torch_dtype(cell_dtype(ex.name, dtype)))
    applied = Applied(ex, run_model, run_inputs, model, eager_inputs)
    if ex.compiled:
        from torch._dynamo.utils import counters, get_compilation_metrics

        applied._counters = copy.deepcopy({k: dict(v) for k, v in counters.items()})
        applied._metrics_seen = frozenset(id(m) for m in get_compilation_metrics())
        if cold_cache:
            applied._cache = (tempfile.mkdtemp(prefix="aigc-bench-inductor-"), os.environ.get(CACHE_ENV))
            os.environ[CACHE_ENV] = applied._cache[0]
        mode = None if ex.compile_mode == "default" else ex.compile_mode
        t0 = time.perf_counter()
        applied.model = torch.compile(run_model, mode=mode, backend=backend or DEFAULT_BACKEND)
        applied.compile_call_s = time.perf_counter() - t0
    return applied


def measure_first_call(applied: Applied, mode: str, device: torch.device) -> dict[str, Any]:
    """The cold first call (one forward, or one training step for ``mode="train"``) of the executed model.

    ``first_call_ms``: its wall time, synchronised on CUDA; ``compile_s``: the ``torch.compile`` call and that
    first call, which compiles (None when not compiled). Called once, before any other metric runs the
    executed model; later calls return the first result.
    """
    if applied.first_call:
        return dict(applied.first_call)
    import torch

    from bench.metrics._step import make_step, preserved_state

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with preserved_state(device):
        step = make_step(applied.model, applied.inputs, mode)
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        t1 = time.perf_counter()
    del step  # the training step's optimizer state goes with it
    call = applied.compile_call_s  # the metrics between apply and this call (MACs, params) are not compiling
    applied.first_call = {"first_call_ms": (t1 - t0) * 1e3, "compile_s": call + (t1 - t0) if call is not None else None}
    return dict(applied.first_call)


def fresh_dynamo() -> None:
    """Reset dynamo and its counters: for a worker process between cells only (the caller's compiled
    functions would be dropped, and nothing can restore them)."""
    import torch

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def first_call_first(metrics: Sequence[str]) -> list[str]:
    """``metrics`` with ``execution`` moved before the first metric that runs the executed model, so its
    first call is the cold one (the others keep their order)."""
    names = list(metrics)
    if "execution" not in names:
        return names
    names.remove("execution")
    at = next((i for i, n in enumerate(names) if n not in EAGER_METRICS), len(names))
    return [*names[:at], "execution", *names[at:]]


def context_for(metric: str, ctx: Any) -> Any:
    """The metric context ``metric`` sees: the eager model and inputs for ``EAGER_METRICS`` (MACs are counted
    on the eager graph, the same work), the executed ones for every other metric. Samples, notes and results
    are shared with ``ctx``."""
    from dataclasses import replace

    applied = getattr(ctx, "execution", None)
    if metric not in EAGER_METRICS or applied is None or applied.model is applied.eager_model:
        return ctx
    return replace(ctx, model=applied.eager_model, inputs=applied.eager_inputs)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def one_execution(records: Sequence[Any]) -> list[Any]:
    """The stored records of one execution: eager's when any, else the first record's. Scaling fits use them: a
    series of lengths must not mix eager and compiled points."""

    def ex(r: Any) -> str:
        return (r.get("key") or {}).get("execution") or EAGER

    execs = [ex(r) for r in records]
    keep = EAGER if EAGER in execs or not execs else execs[0]
    return [r for r, e in zip(records, execs, strict=True) if e == keep]
