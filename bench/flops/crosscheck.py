"""Compare our count with the two common counters: fvcore and torch's FlopCounterMode.

Both run real forward passes, so they run once at batch 1 (on CPU, float32) and their totals are
scaled linearly to the cell's batch -- the result says so in ``note``. Everything they raise
becomes an error string in the result; a crosscheck never fails a cell.

* fvcore (``FlopCountAnalysis``) traces the model with ``torch.jit.trace`` and counts the traced
  ops it knows; ``unsupported_ops()`` lists the rest. It calls MACs "flops".
* ``torch.utils.flop_counter.FlopCounterMode`` counts aten ops like us but has formulas for only
  ~20 ops and counts 2 FLOPs per MAC (converted here). It reports no list of what it skipped, so
  its ``missed`` ops are the ones our own counter, run alongside it, found MACs in and that have
  no entry in its registry.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bench.flops import _ops
from bench.flops._counter import _split_inputs, count_flops
from bench.flops._dispatch import _DispatchCounter
from bench.flops._meta import map_tensors
from bench.flops._tally import FlopCount, _Tally

log = logging.getLogger(__name__)

#: A batch-1 forward above this many MACs is not run (2 CPU cores do roughly 5-10 GMAC/s).
DEFAULT_MAX_MACS = 20e9
#: Recurrent layers at batch 1 run as matrix-vector steps, several times slower per MAC.
DEFAULT_MAX_RNN_MACS = 2e9
_RNN_OPS = ("aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu", "aten::lstm_cell", "aten::gru_cell")


@dataclass(frozen=True)
class CrossCheck:
    """MAC totals of fvcore and FlopCounterMode next to ours, scaled to ``batch_size``.

    ``*_diff_pct`` is ``100 * (theirs - ours) / ours``; ``flagged`` is true when either differs
    by more than ``tolerance_pct``. ``*_missed`` maps op names to calls for ops that carry work
    and that the tool did not count. ``skipped`` says why nothing was run (e.g. over the cap).
    """

    ours_macs: int
    batch_size: int
    ran_batch: int | None = None
    fvcore_macs: int | None = None
    fvcore_missed: dict[str, int] = field(default_factory=dict)
    fvcore_unsupported: dict[str, int] = field(default_factory=dict)
    fvcore_error: str | None = None
    fvcore_seconds: float | None = None
    fcm_macs: int | None = None
    fcm_missed: dict[str, int] = field(default_factory=dict)
    fcm_error: str | None = None
    fcm_seconds: float | None = None
    ours_real_macs: int | None = None  # our counter on the same real batch-1 run, scaled
    tolerance_pct: float = 1.0
    note: str = ""
    skipped: str | None = None

    @property
    def fvcore_diff_pct(self) -> float | None:
        return _diff_pct(self.fvcore_macs, self.ours_macs)

    @property
    def fcm_diff_pct(self) -> float | None:
        return _diff_pct(self.fcm_macs, self.ours_macs)

    @property
    def flagged(self) -> bool:
        """Either tool disagrees with ours by more than the tolerance."""
        return any(d is not None and abs(d) > self.tolerance_pct for d in (self.fvcore_diff_pct, self.fcm_diff_pct))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(fvcore_diff_pct=self.fvcore_diff_pct, fcm_diff_pct=self.fcm_diff_pct, flagged=self.flagged)
        return d


def _diff_pct(theirs: int | None, ours: int) -> float | None:
    if theirs is None:
        return None
    if ours == 0:
        return 0.0 if theirs == 0 else float("inf")
    return round(100.0 * (theirs - ours) / ours, 3)


def _one_line(e: BaseException) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text[:300] + ("..." if len(text) > 300 else "")


def missed_summary(missed: dict[str, int]) -> str:
    """``"aten::lstm x1; aten::scaled_dot_product_attention x12"`` or ``""``."""
    return "; ".join(f"{k} x{v}" for k, v in sorted(missed.items(), key=lambda kv: (-kv[1], kv[0])))


def crosscheck(
    model: nn.Module,
    example_inputs: Any,
    *,
    ours: FlopCount | None = None,
    batch_size: int | None = None,
    max_macs: float = DEFAULT_MAX_MACS,
    max_rnn_macs: float = DEFAULT_MAX_RNN_MACS,
    tolerance_pct: float = 1.0,
) -> CrossCheck:
    """Run fvcore and FlopCounterMode on ``model`` and compare their MACs with ``ours``.

    ``example_inputs`` are the cell's inputs (batch ``batch_size`` along dim 0). When every
    top-level tensor input has ``batch_size`` rows, the tools run on the first row and their totals
    are multiplied by ``batch_size``; otherwise they run on the inputs as given. ``ours`` defaults
    to ``count_flops(model, example_inputs)``. Runs whose batch-1 MACs exceed ``max_macs``
    (``max_rnn_macs`` for recurrent models) are skipped. Never raises for a tool's failure.
    """
    if ours is None:
        ours = count_flops(model, example_inputs)
    args, kwargs = _split_inputs(example_inputs)
    batch = batch_size or 1
    sliceable = batch > 1 and _rows(args, kwargs) == {batch}
    scale = batch if sliceable else 1
    base = dict(ours_macs=ours.macs, batch_size=batch, tolerance_pct=tolerance_pct)
    per_run = ours.macs / scale
    cap = max_rnn_macs if any(op in ours.by_operator for op in _RNN_OPS) else max_macs
    if per_run > cap:
        return CrossCheck(**base, skipped=f"a {'batch-1 ' if sliceable else ''}forward of {per_run / 1e9:.1f} GMACs "
                                          f"is over the crosscheck cap of {cap / 1e9:g} GMACs")  # fmt: skip
    try:
        real, r_args, r_kwargs = _cpu_fp32(model, args, kwargs, first_row=sliceable)
    except Exception as e:  # noqa: BLE001 -- e.g. a model that only exists on meta
        err = f"cannot prepare a real CPU copy: {_one_line(e)}"
        return CrossCheck(**base, fvcore_error=err, fcm_error=err)
    note = f"fvcore and FlopCounterMode ran at batch 1 on CPU fp32, scaled x{scale} to batch {batch}" if sliceable else (
        "fvcore and FlopCounterMode ran on the given inputs on CPU fp32")  # fmt: skip
    fcm = _run_fcm(real, r_args, r_kwargs, scale)
    fv = _run_fvcore(real, r_args, r_kwargs, scale)
    return CrossCheck(**base, ran_batch=1 if sliceable else batch, note=note, **fcm, **fv)


def _rows(args: tuple[Any, ...], kwargs: dict[str, Any]) -> set[int]:
    return {int(v.shape[0]) for v in (*args, *kwargs.values()) if isinstance(v, Tensor) and v.dim() > 0}


def _cpu_fp32(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, first_row: bool
) -> tuple[nn.Module, tuple[Any, ...], dict[str, Any]]:
    """The model and inputs on CPU in float32 (the original model when it already is, in eval)."""

    def fix(t: Tensor) -> Tensor:
        if t.device.type == "meta":
            raise ValueError("inputs are meta tensors; the crosscheck needs real ones")
        t = t.detach().to("cpu")
        return t.float() if t.is_floating_point() else t

    params = list(model.parameters()) + list(model.buffers())
    on_cpu_fp32 = all(
        p.device.type == "cpu" and (p.dtype == torch.float32 or not p.is_floating_point()) for p in params
    )
    if on_cpu_fp32 and not model.training:
        real = model
    else:
        memo: dict[int, Any] = {}
        for t in params:
            c = fix(t)
            memo[id(t)] = nn.Parameter(c, requires_grad=False) if isinstance(t, nn.Parameter) else c
        real = copy.deepcopy(model, memo)
    top = {id(v) for v in (*args, *kwargs.values())}

    def prep(t: Tensor) -> Tensor:
        t = t[:1] if first_row and id(t) in top and t.dim() > 0 else t
        return fix(t)

    return real, map_tensors(args, prep), map_tensors(kwargs, prep)


def _fcm_names() -> set[str]:
    from torch.utils.flop_counter import flop_registry

    return {name for k in flop_registry if (name := getattr(k, "_qualified_op_name", None))}


def _run_fcm(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], scale: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        from torch.utils.flop_counter import FlopCounterMode

        tally = _Tally({})
        with torch.no_grad(), FlopCounterMode(display=False) as fcm, _DispatchCounter(tally):
            model(*args, **kwargs)
        known = _fcm_names()
        # ops with MACs (by our formulas) that FlopCounterMode has no formula for, with calls
        missed = {op: n for op, n in tally.mac_calls.items() if op not in known}
        return dict(
            fcm_macs=int(fcm.get_total_flops()) // 2 * scale,
            fcm_missed=missed,
            ours_real_macs=tally.macs * scale,
            fcm_seconds=round(time.perf_counter() - t0, 3),
        )
    except Exception as e:  # noqa: BLE001 -- a tool's failure is data, never the cell's failure
        log.debug("FlopCounterMode failed", exc_info=True)
        return dict(fcm_error=_one_line(e), fcm_seconds=round(time.perf_counter() - t0, 3))


def _run_fvcore(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], scale: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        if kwargs:
            raise TypeError("fvcore takes positional tensor inputs only")
        with warnings.catch_warnings():
            # fvcore scripts a loss function at import time, which torch now warns about.
            warnings.simplefilter("ignore", FutureWarning)
            from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, args)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad(), warnings.catch_warnings(), _quiet("fvcore"):
            warnings.simplefilter("ignore")
            total = int(analysis.total())
            unsupported = dict(analysis.unsupported_ops())
        return dict(
            fvcore_macs=total * scale,
            fvcore_unsupported=unsupported,
            fvcore_missed={k: v for k, v in unsupported.items() if _carries_work(k)},
            fvcore_seconds=round(time.perf_counter() - t0, 3),
        )
    except Exception as e:  # noqa: BLE001 -- a tool's failure is data, never the cell's failure
        log.debug("fvcore failed", exc_info=True)
        return dict(fvcore_error=_one_line(e), fvcore_seconds=round(time.perf_counter() - t0, 3))


@contextlib.contextmanager
def _quiet(logger_name: str) -> Any:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _carries_work(name: str) -> bool:
    """Whether an op fvcore skipped has MACs by our table (or is unknown to us too).

    fvcore lists every op it has no handle for, elementwise ones included; only the ones with a
    MAC formula here (``aten::lstm``, ``aten::scaled_dot_product_attention``...) or with no
    entry at all are worth reporting as missed MACs.
    """
    ns, _, op = name.partition("::")
    packet = getattr(getattr(torch.ops, ns, None), op, None) if op else None
    if packet is None:
        return True
    overloads = packet.overloads()
    func = getattr(packet, "default" if "default" in overloads else overloads[0])
    mac, _, known = _ops.classify(func)
    return mac is not None or not known
