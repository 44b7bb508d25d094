"""``count_flops``: run a model once under a ``TorchDispatchMode`` and sum the op formulas.

By default the model is copied to the meta device (parameters are swapped for meta tensors while
copying, so the copy costs no real memory) and the inputs are moved there too: every op runs its
shape function only, so a ViT at batch 256 or a Transformer at 16k tokens is counted in seconds
and allocates nothing. Where the model cannot run on meta, it is run for real and ``method`` says
so.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from bench.flops import _ops

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
    """

    macs: int
    other_flops: int
    by_module: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    other_by_operator: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)
    method: str = "meta"
    seconds: float = 0.0

    @property
    def flops(self) -> int:
        """FLOPs of the matmul-like work: two per MAC."""
        return 2 * self.macs

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
        self._stack: list[str] = []
        self._active: tuple[str, ...] = ()
        self._rules: dict[Any, tuple[Any, Any, bool, str]] = {}
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
            rule = self._rules[func] = (*_ops.classify(func), _ops.op_name(func))
        mac_f, other_f, known, name = rule
        if not known:
            self.uncounted[name] += 1
            return
        if mac_f is None and other_f is None:
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
        )


_PAD = torch.ops.aten.constant_pad_nd.default
#: fused attention kernels that CUDA's scaled_dot_product_attention feeds with head-dim-padded q/k/v
_PADDED_ATTENTION = {
    getattr(torch.ops.aten, name).default
    for name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_cudnn_attention",
                 "_scaled_dot_product_efficient_attention")
    if hasattr(torch.ops.aten, name)
}  # fmt: skip


class _DispatchCounter(TorchDispatchMode):
    """Sees every aten op after autograd and hands it to the tally."""

    def __init__(self, tally: _Tally) -> None:
        super().__init__()
        self.tally = tally
        # id(output) -> (the output, its last dim before padding) for each constant_pad_nd that padded the
        # last dim alone: see _unpadded_attention_inputs.
        self._padded: dict[int, tuple[weakref.ref[Tensor], int]] = {}

    def _unpadded_attention_inputs(self, args: Sequence[Any]) -> Sequence[Any]:
        """Attention kernel arguments with torch's own head-dim padding taken off q/k/v, for the formula.

        CUDA's ``scaled_dot_product_attention`` pads the head dimension to a multiple of 8 before its
        flash kernel and slices the output back (68 -> 72 for a 408-wide, 6-head ViT in bf16). Inside
        torch code that the function-level counter cannot see (``nn.MultiheadAttention``'s forward), the
        kernel is all that reaches the tally. When q, k and v are all fresh outputs of such a pad, the
        formula reads their shapes before it (meta stand-ins): the model's attention, not the kernel's.
        """
        if len(args) < 3:
            return args
        shapes = []
        for t in args[:3]:
            entry = self._padded.get(id(t)) if isinstance(t, Tensor) else None
            if entry is None or entry[0]() is not t:
                return args
            shapes.append((*t.shape[:-1], entry[1]))
        stand_ins = [torch.empty(shape, dtype=t.dtype, device="meta") for shape, t in zip(shapes, args, strict=False)]
        return (*stand_ins, *args[3:])

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        composite = _skipped_composite_kernel(func, args, kwargs)
        if composite is not None:
            # Autograd was skipped (inference mode, or inference tensors only), so a composite op
            # arrived whole. Run its composite kernel here, as the Autograd key would have, so that
            # the count is the same under grad, no_grad and inference_mode.
            with self:
                return func._op_dk(composite, *args, **kwargs)
        out = func(*args, **kwargs)
        if func is _PAD and isinstance(out, Tensor) and _pads_last_dim_only(args):
            if len(self._padded) > 64:  # forget the freed ones now and then
                self._padded = {k: v for k, v in self._padded.items() if v[0]() is not None}
            self._padded[id(out)] = (weakref.ref(out), args[0].shape[-1])
        elif func in _PADDED_ATTENTION:
            self.tally.record(func, self._unpadded_attention_inputs(args), kwargs, out)
            return out
        self.tally.record(func, args, kwargs, out)
        return out


def _pads_last_dim_only(args: Sequence[Any]) -> bool:
    pad = list(args[1]) if len(args) > 1 else []
    return len(pad) == 2 and pad[0] == 0 and pad[1] > 0 and isinstance(args[0], Tensor)


_DK = torch._C.DispatchKey
_COMPOSITE_KERNEL: dict[tuple[Any, Any], Any] = {}
# Size/stride queries reach the mode only from tensors with a Python size/stride policy (jagged
# nested tensors), never through autograd, in every mode; their composite kernels ask the tensor
# again, so running them here would recurse (the same set FlopCounterMode leaves alone).
_METADATA_QUERIES = {
    getattr(getattr(torch.ops.aten, packet), overload)
    for packet, overload in (
        ("sym_is_contiguous", "default"), ("is_contiguous", "default"), ("is_contiguous", "memory_format"),
        ("is_strides_like_format", "default"), ("is_non_overlapping_and_dense", "default"), ("size", "default"),
        ("sym_size", "default"), ("stride", "default"), ("sym_stride", "default"), ("storage_offset", "default"),
        ("sym_storage_offset", "default"), ("numel", "default"), ("sym_numel", "default"), ("dim", "default"),
    )
    if hasattr(getattr(torch.ops.aten, packet, None), overload)
}  # fmt: skip


def _autograd_key(t: Tensor) -> Any:
    """The autograd dispatch key a (non-inference) tensor like ``t`` goes through."""
    if t.is_nested:
        return _DK.AutogradNestedTensor
    backend = torch._C._dispatch_key_for_device(t.device.type)
    return getattr(_DK, f"Autograd{backend}", _DK.AutogradOther)


def _skipped_composite_kernel(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """The composite kernel autograd would have run for this call, when autograd was skipped; else None.

    Under grad or no_grad the Autograd dispatch key runs an op's ``CompositeImplicitAutograd``
    kernel (``conv2d`` -> ``convolution``, ``linear`` -> ``addmm``, ``batch_norm`` -> ...), so such
    ops never reach this mode whole. Under ``torch.inference_mode()`` (or with inference tensors
    only) the Autograd key is skipped and they do.
    """
    if not isinstance(func, torch._ops.OpOverload) or func in _METADATA_QUERIES:
        return None
    tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, Tensor)]
    tensors = tensors or [t for a in args if isinstance(a, list | tuple) for t in a if isinstance(t, Tensor)]
    if not tensors:
        return None
    key = _autograd_key(tensors[0])
    if not torch.is_inference_mode_enabled() and any(torch._C._dispatch_keys(t).has(key) for t in tensors):
        return None  # autograd ran for this call: what reached us is what grad mode sees
    if (func, key) not in _COMPOSITE_KERNEL:
        _COMPOSITE_KERNEL[(func, key)] = _composite_kernel_for(func.name(), key)
    return _COMPOSITE_KERNEL[(func, key)]


def _composite_kernel_for(name: str, key: Any) -> Any:
    """The composite key the dispatcher fills autograd ``key``'s entry of op ``name`` from, or None.

    The dispatcher's own rule (``OperatorEntry::computeDispatchTableEntry``): a direct autograd
    registration wins; a composite kernel is used for an autograd key only when the backend has no
    kernel of its own (``linear`` on a nested tensor keeps its explicit autograd kernel). Checked
    against the computed dispatch table for every aten overload (CPU, meta, nested).
    """
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    if has(name, key):
        return None
    if key == _DK.AutogradNestedTensor and has(name, _DK.CompositeImplicitAutogradNestedTensor):
        return _DK.CompositeImplicitAutogradNestedTensor
    backend = torch._C._dispatch_get_backend_keyset_from_autograd(key)
    if torch._C._dispatch_has_kernel_for_any_dispatch_key(name, backend) or has(name, _DK.CompositeExplicitAutograd):
        return None
    return _DK.CompositeImplicitAutograd if has(name, _DK.CompositeImplicitAutograd) else None


# ---------------------------------------------------------------------------------------------
# Fused RNN ops on meta. aten::lstm/gru/rnn_* are composite: on meta they decompose into ~12
# small ops per time step, each through a Python meta kernel, so an LSTM at T=4096 takes ~15 s
# even uncounted. On meta the result's values are meaningless anyway, so the whole call is
# answered with empty outputs of the right shapes and counted with the fused op's formula.

_VF = torch._C._VariableFunctions


def aten_op(name: str) -> Any:
    """``"lstm.data"`` -> ``torch.ops.aten.lstm.data`` (``.default`` when no overload is named)."""
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


def _rnn_outputs(kind: str, args: Sequence[Any]) -> tuple[Any, tuple[Tensor, ...]]:
    x = args[0]
    if kind.endswith("_cell"):
        hx = args[1]
        if kind == "lstm_cell":
            return aten_op(kind), (torch.empty_like(hx[0]), torch.empty_like(hx[1]))
        return aten_op(kind), (torch.empty_like(hx),)
    packed = isinstance(args[1], Tensor) and (kind == "lstm" or isinstance(args[2], Tensor))
    hx = args[2] if packed else args[1]
    bidirectional = bool(args[8] if packed else args[7])
    h0 = hx[0] if kind == "lstm" else hx
    out = x.new_empty((*x.shape[:-1], (2 if bidirectional else 1) * h0.shape[-1]))
    states = (torch.empty_like(hx[0]), torch.empty_like(hx[1])) if kind == "lstm" else (torch.empty_like(hx),)
    return aten_op(f"{kind}.{'data' if packed else 'input'}"), (out, *states)


_RNN_FUNCS: dict[Any, str] = {
    getattr(_VF, n): n
    for n in ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
}


def _all_meta(x: Any) -> bool:
    if isinstance(x, Tensor):
        return x.device.type == "meta" or x.dim() == 1 and x.dtype == torch.int64  # packed batch_sizes live on CPU
    if isinstance(x, list | tuple):
        return all(_all_meta(v) for v in x)
    return True


# ---------------------------------------------------------------------------------------------
# Complex convolution. conv1d/2d/3d and conv_transpose1d/2d/3d on complex tensors run, inside
# their composite kernels, as three real convolutions (Gauss's trick) plus additions, which is
# all the dispatch mode would see. MACs are counted in the operands' own element type (a complex
# multiply-accumulate is one MAC, as for complex mm/bmm/matmul), so the call is counted whole with
# the convolution formula and its parts are not counted. On meta this is always on; on real
# tensors only for models whose parameters, buffers or inputs are complex (see _run).

_CONV_FUNCS: dict[Any, bool] = {  # function -> transposed
    torch.conv1d: False,
    torch.conv2d: False,
    torch.conv3d: False,
    torch.conv_transpose1d: True,
    torch.conv_transpose2d: True,
    torch.conv_transpose3d: True,
}


def _complex_conv_inputs(args: Sequence[Any], kwargs: Mapping[str, Any], transposed: bool) -> list[Any]:
    """``aten::convolution``'s argument list for the formulas: input, weight, bias, ..., transposed."""
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return [args[0], args[1] if len(args) > 1 else kwargs["weight"], bias, None, None, None, transposed]


# ---------------------------------------------------------------------------------------------
# Attention on CUDA. scaled_dot_product_attention pads the head dimension to a multiple of 8
# before CUDA's flash kernel (68 -> 72 for a 408-wide, 6-head ViT) and slices the output back, so
# the kernel the dispatch mode sees is larger than the model's attention (+0.4% of a ViT's MACs in
# bf16, none in fp32, whose memory-efficient kernel does not pad). The count is of the model's
# algorithm, the same on every backend: on real CUDA tensors the call is counted whole, with the
# shapes the caller passed. Tensor subclasses (nested/jagged) keep their own dispatch path.

_SDPA = torch.nn.functional.scaled_dot_product_attention


def _sdpa_cuda_operands(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Tensor] | None:
    """``[query, key, value]`` when all three are plain tensors on a CUDA device, else None."""
    names = ("query", "key", "value")
    qkv = [args[i] if len(args) > i else kwargs.get(names[i]) for i in range(3)]
    if all(type(t) is Tensor and t.device.type == "cuda" for t in qkv):
        return qkv
    return None


class _FunctionCounter(TorchFunctionMode):
    """Calls counted whole at the torch-function level, before their composite kernels split them."""

    def __init__(self, tally: _Tally, *, meta: bool) -> None:
        super().__init__()
        self.tally = tally
        self.meta = meta

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = _RNN_FUNCS.get(func) if self.meta else None
        if kind is not None and not kwargs and isinstance(args[0], Tensor) and args[0].device.type == "meta":
            if _all_meta(args):
                op, outputs = _rnn_outputs(kind, args)
                self.tally.record(op, args, None, outputs)
                return outputs if len(outputs) > 1 else outputs[0]
        if func is _SDPA:
            qkv = _sdpa_cuda_operands(args, kwargs)
            if qkv is not None:
                with self.tally.paused():
                    out = func(*args, **kwargs)
                self.tally.record(aten_op("scaled_dot_product_attention"), qkv, None, out)
                return out
        transposed = _CONV_FUNCS.get(func)
        if transposed is not None and args and isinstance(args[0], Tensor) and args[0].is_complex():
            with self.tally.paused():
                out = func(*args, **kwargs)
            self.tally.record(aten_op("convolution"), _complex_conv_inputs(args, kwargs, transposed), None, out)
            return out
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# moving things to meta


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are meta tensors.

    The meta tensors are put in deepcopy's memo before copying, so the real weights are never
    duplicated (a copy of a 1 GB model costs nothing); shared/tied tensors stay shared.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) in memo:
            continue
        meta = torch.empty_like(t, device="meta")
        if isinstance(t, nn.Parameter):
            memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad)
        else:
            memo[id(t)] = _ops.keep_host_values(t, meta)  # e.g. sequence offsets kept as a buffer
    return copy.deepcopy(model, memo)


def map_tensors(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor in nested tuples/lists/dicts/PackedSequences."""
    if isinstance(x, PackedSequence):
        # batch_sizes must stay a CPU int64 tensor (the RNN kernels read it as a host array).
        idx = [None if i is None else fn(i) for i in (x.sorted_indices, x.unsorted_indices)]
        return PackedSequence._make([fn(x.data), x.batch_sizes, *idx])
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)._make(map_tensors(v, fn) for v in x)
    if isinstance(x, list | tuple):
        return type(x)(map_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    return x


def _to_meta(t: Tensor) -> Tensor:
    return _ops.keep_host_values(t, t.to("meta"))


def _keep_lengths_on_host(t: Tensor) -> Tensor:
    if t.dim() == 1 and t.dtype == torch.int64 and t.device.type == "cpu":
        return t
    return _to_meta(t)


def _any_meta(x: Any) -> bool:
    found = False

    def check(t: Tensor) -> Tensor:
        nonlocal found
        found = found or t.device.type == "meta"
        return t

    map_tensors(x, check)
    return found


# ---------------------------------------------------------------------------------------------
# counting


@contextlib.contextmanager
def _module_hooks(tally: _Tally) -> Iterator[None]:
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    pre = register_module_forward_pre_hook(tally.enter)
    post = register_module_forward_hook(tally.leave, always_call=True)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def _holds(model: nn.Module, inputs: Any, test: Callable[[Tensor], bool]) -> bool:
    """Whether any parameter, buffer or input tensor passes ``test``."""
    found = any(test(t) for t in itertools.chain(model.parameters(), model.buffers()))

    def check(t: Tensor) -> Tensor:
        nonlocal found
        found = found or test(t)
        return t

    map_tensors(inputs, check)
    return found


def _run(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, meta: bool, default_meta: bool) -> _Tally:
    tally = _Tally({id(m): n for n, m in model.named_modules()})
    # Any torch-function mode turns off the fused fast paths of nn.MultiheadAttention and
    # nn.TransformerEncoderLayer (they check has_torch_function), so on real tensors the function
    # counter is used only where it is needed: complex models (their convolutions) and CUDA (its
    # attention pads the head dimension). Their counts are the same either way; only what runs differs.
    functions = meta or _holds(model, (args, kwargs), lambda t: t.is_complex() or t.device.type == "cuda")
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(_module_hooks(tally))
        if default_meta:
            # Tensors built inside forward without a device (torch.arange(n)) land on meta too.
            stack.enter_context(torch.device("meta"))
        if functions:
            stack.enter_context(_FunctionCounter(tally, meta=meta))
        stack.enter_context(_DispatchCounter(tally))
        model(*args, **kwargs)
    return tally


@contextlib.contextmanager
def _restoring_state(model: nn.Module, inputs: Any) -> Iterator[None]:
    """Undo what a real forward changes: buffers (batch-norm statistics in training mode) and the RNGs (dropout).

    Snapshotting the buffers, rather than running a deep copy of the model, costs a copy of the
    buffers only and works for models that cannot be copied (a module holding a lock).
    """
    saved = [(mod, name, buf, buf.clone()) for mod in model.modules() for name, buf in mod._buffers.items()
             if buf is not None]  # fmt: skip
    cuda: set[int] = set()

    def note_cuda(t: Tensor) -> Tensor:
        if t.device.type == "cuda":
            cuda.add(t.device.index or 0)
        return t

    map_tensors([list(model.parameters()), [entry[2] for entry in saved], inputs], note_cuda)
    try:
        with torch.random.fork_rng(devices=sorted(cuda)):
            yield
    finally:
        with torch.no_grad():
            for mod, name, buf, copy_ in saved:
                if mod._buffers.get(name) is not buf:
                    mod._buffers[name] = buf  # the forward rebound it
                if not torch.equal(buf, copy_):  # only what changed: an unchanged inference tensor stays untouched
                    buf.copy_(copy_)


def _split_inputs(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple) and not hasattr(example_inputs, "_fields"):
        return example_inputs, {}
    return (example_inputs,), {}


def _one_line(e: BaseException) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text[:200] + ("..." if len(text) > 200 else "")


def count_flops(
    model: nn.Module,
    example_inputs: Any,
    *,
    device: str | None = "meta",
    fallback: bool = True,
) -> FlopCount:
    """Count the MACs (and other FLOPs) of one forward pass of ``model``.

    ``example_inputs`` is a tensor, a tuple of positional inputs, or a dict of keyword inputs;
    they may be real or already on meta. With ``device="meta"`` (default) a meta copy of the model
    runs on meta copies of the inputs -- nothing real is computed or allocated and ``model`` is
    not touched. If that fails (data-dependent control flow, ``.item()``, ...) and ``fallback`` is
    true, the model runs for real on the given inputs (a copy when it is in training mode, so that
    batch-norm statistics are not disturbed) and ``method`` starts with ``"fallback:"``.
    ``device=None`` counts on the given inputs' devices directly (``method="real"``).

    The forward pass runs under ``torch.no_grad()``: the count is of inference-style forward work
    in the model's current train/eval mode (dropout, batch-norm statistics...). It is the same
    under the caller's grad, ``no_grad`` or ``inference_mode`` (composite ops that inference mode
    lets through whole are decomposed as autograd would), and the caller's modes are left as they
    were, also when counting raises.
    """
    t0 = time.perf_counter()
    args, kwargs = _split_inputs(example_inputs)
    if device is None:
        with _restoring_state(model, (args, kwargs)):
            tally = _run(model, args, kwargs, meta=False, default_meta=False)
        return tally.result("real", time.perf_counter() - t0)
    if str(device) != "meta":
        raise ValueError(f"device must be 'meta' or None, not {device!r}")
    errors: list[str] = []
    # Three ways to run on meta, cheapest assumption first: everything on meta; also tensors that
    # forward builds without a device; or 1-D integer tensors kept on the host (sequence lengths
    # for pack_padded_sequence must be CPU tensors).
    for default_meta, keep_lengths in ((False, False), (True, False), (False, True)):
        to_meta = _keep_lengths_on_host if keep_lengths else _to_meta
        try:
            m_model = meta_copy(model)
            m_args, m_kwargs = map_tensors(args, to_meta), map_tensors(kwargs, to_meta)
            tally = _run(m_model, m_args, m_kwargs, meta=True, default_meta=default_meta)
            return tally.result("meta", time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 -- any failure on meta means: try the next way
            log.debug("counting on meta failed (default_meta=%s, keep_lengths=%s): %s", default_meta, keep_lengths, e)
            errors.append(_one_line(e))
    why = errors[0]
    if not fallback:
        raise RuntimeError(f"cannot count {type(model).__name__} on the meta device: {why}")
    if _any_meta((args, kwargs)):
        raise RuntimeError(f"cannot count {type(model).__name__} on meta ({why}) and its inputs are meta tensors")
    log.info("counting %s on real tensors: meta failed with %s", type(model).__name__, why)
    with _restoring_state(model, (args, kwargs)):
        tally = _run(model, args, kwargs, meta=False, default_meta=False)
    return tally.result(f"fallback:real tensors (meta failed: {why})", time.perf_counter() - t0)
