"""The function-level counter: calls counted whole before their composite kernels split them.

Three kinds, each explained where it is handled: fused RNNs on meta (answered with empty outputs),
complex convolutions, and ``scaled_dot_product_attention`` on CUDA tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from bench.flops._tally import _Tally

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
