"""The result of a count (``FlopCount``) and the running totals it is built from (``_Tally``)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from bench.flops import _bytes, _ops

log = logging.getLogger(__name__)

CONVENTION = "MAC = multiply-accumulate; FLOPs = 2 x MACs; norm/act/softmax/pool/elementwise in other_flops"


@dataclass(frozen=True)
class FlopCount:
    """The MACs of one forward pass, where they came from, and what could not be counted.

    * ``macs``: multiply-accumulates of matmul-like work only (linear/GEMM, convolution,
      attention products, RNN gates). Biases are not MACs. The unit is the operands' element
      type: on complex tensors one complex multiply-accumulate is one MAC (about 4 real ones),
      for convolution and mm alike.
    * ``flops``: ``2 * macs`` (one multiply plus one add per MAC).
    * ``other_flops``: estimated scalar operations of everything else (normalisation,
      activations, softmax, pooling, elementwise, reductions, bias adds), never mixed into MACs.
    * ``by_module``: module path -> MACs, hierarchical (a parent includes its children; the root is
      ``""`` and equals ``macs``), in the order modules were first called.
    * ``by_operator``: aten op name -> MACs; ``other_by_operator`` likewise for ``other_flops``.
    * ``uncounted``: op name -> calls, for ops met that have no formula and are not known to be
      work-free. Non-empty means the totals are a lower bound.
    * ``method``: ``"meta"``, ``"real"`` (asked for with ``device=None``) or ``"fallback:<why>"``.
    * ``bytes_moved``: bytes of the distinct input and output tensors (weights included) of every op that
      does work -- counted ops and data-movement ops (copies, cat, pad, gathers) -- at each tensor's element
      size: the no-reuse upper bound of memory traffic (``bench.flops._bytes``; docs/efficiency.md).
      ``bytes_by_operator``: aten op name -> bytes, largest first.
    """

    macs: int
    other_flops: int
    by_module: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    other_by_operator: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)
    method: str = "meta"
    seconds: float = 0.0
    bytes_moved: int = 0
    bytes_by_operator: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """FLOPs of the matmul-like work: two per MAC."""
        return 2 * self.macs

    @property
    def arith_intensity(self) -> float | None:
        """FLOPs (two per MAC) per byte moved; None when no bytes were counted."""
        return self.flops / self.bytes_moved if self.bytes_moved else None

    @property
    def convention(self) -> str:
        return CONVENTION

    def uncounted_summary(self) -> str:
        """``"aten::foo x3; aten::bar x1"`` (most frequent first), or ``""``."""
        items = sorted(self.uncounted.items(), key=lambda kv: (-kv[1], kv[0]))
        return "; ".join(f"{name} x{n}" for name, n in items)

    def modules_at_depth(self, depth: int) -> dict[str, int]:
        """``by_module`` restricted to paths with at most ``depth`` components (root is depth 0)."""
        return {k: v for k, v in self.by_module.items() if (k.count(".") + 1 if k else 0) <= depth}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, with ``flops`` and the convention added."""
        d = asdict(self)
        d["flops"] = self.flops
        d["convention"] = CONVENTION
        return d


# ---------------------------------------------------------------------------------------------
# tallying


class _Tally:
    """Running totals, attributed to the modules active when each op ran."""

    def __init__(self, names: Mapping[int, str]) -> None:
        self.names = names
        self.macs = 0
        self.other = 0
        self.by_module: dict[str, int] = {}
        self.by_op: Counter[str] = Counter()
        self.mac_calls: Counter[str] = Counter()  # calls that counted MACs, per op
        self.other_by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()
        self.bytes = 0
        self.bytes_by_op: Counter[str] = Counter()
        self._stack: list[str] = []
        self._active: tuple[str, ...] = ()
        self._rules: dict[Any, tuple[Any, Any, bool, str, bool]] = {}
        self._paused = 0  # > 0 while an op counted whole runs its parts

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Ignore the ops run inside (they are parts of one op that is counted whole)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    # module tracking (global forward hooks; only modules of the counted model are tracked)
    def enter(self, module: nn.Module, *_: Any) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self._stack.append(name)
            self.by_module.setdefault(name, 0)
            self._active = tuple(dict.fromkeys(self._stack))  # a module re-entering itself counts once

    def leave(self, module: nn.Module, *_: Any) -> None:
        name = self.names.get(id(module))
        if name is not None and self._stack and self._stack[-1] == name:
            self._stack.pop()
            self._active = tuple(dict.fromkeys(self._stack))

    def record(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any] | None, out: Any) -> None:
        if self._paused:
            return
        rule = self._rules.get(func)
        if rule is None:
            rule = self._rules[func] = (*_ops.classify(func), _ops.op_name(func), _bytes.moves(func))
        mac_f, other_f, known, name, moves = rule
        if not known:
            self.uncounted[name] += 1
            return
        if mac_f is None and other_f is None:
            if moves:  # no arithmetic, but memory read and written
                self._add_bytes(name, args, kwargs, out)
            return
        inputs = _ops.normalize_inputs(func, args, kwargs)
        try:
            m = int(mac_f(inputs, out)) if mac_f is not None else 0
            o = int(other_f(inputs, out)) if other_f is not None else 0
        except Exception as e:  # noqa: BLE001 -- a formula that cannot read the shapes is reported, not fatal
            log.debug("formula for %s failed: %s", name, e)
            self.uncounted[f"{name} (formula failed)"] += 1
            return
        if m:
            self.macs += m
            self.by_op[name] += m
            self.mac_calls[name] += 1
            for mod in self._active:
                self.by_module[mod] += m
        if o:
            self.other += o
            self.other_by_op[name] += o
        self._add_bytes(name, inputs, None, out)

    def _add_bytes(self, name: str, args: Any, kwargs: dict[str, Any] | None, out: Any) -> None:
        n = _bytes.op_bytes([args, list((kwargs or {}).values())], out)
        if n:
            self.bytes += n
            self.bytes_by_op[name] += n

    def result(self, method: str, seconds: float) -> FlopCount:
        # The root holds the total, including ops run outside any tracked module.
        by_module = {"": self.macs, **{k: v for k, v in self.by_module.items() if k}}
        return FlopCount(
            macs=self.macs,
            other_flops=self.other,
            by_module=by_module,
            by_operator=dict(self.by_op.most_common()),
            other_by_operator=dict(self.other_by_op.most_common()),
            uncounted=dict(self.uncounted.most_common()),
            method=method,
            seconds=round(seconds, 4),
            bytes_moved=self.bytes,
            bytes_by_operator=dict(self.bytes_by_op.most_common()),
        )
