"""MAC formulas of convolution (direct, transposed, the backends' own kernels) and their bias adds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from bench.flops._ops.registry import _arg, _bias_out, macs, numel, other, out_numel

# ---------------------------------------------------------------------------------------------
# Convolution. Direct: each output element reduces C_in/groups x kernel inputs.
# Transposed: each *input* element is scattered through C_out/groups x kernel weights.


def _conv(x: Tensor, w: Tensor, out: Any, transposed: bool) -> int:
    kernel = numel(w.shape[2:])
    if transposed:
        return x.numel() * w.shape[1] * kernel  # weight is (C_in, C_out/groups, *k)
    return out_numel(out) * w.shape[1] * kernel  # weight is (C_out, C_in/groups, *k)


@macs("convolution", "_convolution")
def _convolution(inputs: Sequence[Any], outputs: Any) -> int:
    return _conv(inputs[0], inputs[1], outputs, bool(_arg(inputs, 6, False)))


@macs(
    "cudnn_convolution",
    "mkldnn_convolution",
    "miopen_convolution",
    "_slow_conv2d_forward",
    "thnn_conv2d",
    "slow_conv3d_forward",
    "_conv_depthwise2d",
    "conv_depthwise3d",
    "slow_conv_dilated2d",
    "slow_conv_dilated3d",
)
def _backend_conv(inputs: Sequence[Any], outputs: Any) -> int:
    return _conv(inputs[0], inputs[1], outputs, transposed=False)


@macs("conv_tbc")
def _conv_tbc(inputs: Sequence[Any], outputs: Any) -> int:
    # input (T, B, C_in), weight (K, C_in, C_out) -> output (T_out, B, C_out)
    w = inputs[1]
    return out_numel(outputs) * w.shape[0] * w.shape[1]


@macs("cudnn_convolution_transpose", "slow_conv_transpose2d", "slow_conv_transpose3d", "miopen_convolution_transpose")
def _backend_conv_transpose(inputs: Sequence[Any], outputs: Any) -> int:
    return _conv(inputs[0], inputs[1], outputs, transposed=True)


# Bias adds are other FLOPs, not MACs.
other("conv_tbc")(_bias_out(2))
other("convolution", "_convolution", "mkldnn_convolution")(_bias_out(2))


# Backward (``count_train_flops``): the input gradient is a transposed convolution of the output gradient and
# the weight gradient a correlation of the input with it; each costs the forward's MACs, counted for the
# gradients autograd asked for (``output_mask``: input, weight, bias; the bias gradient is a sum, no MACs).
@macs("convolution_backward")
def _convolution_backward(inputs: Sequence[Any], outputs: Any) -> int:
    grad_out, x, w = inputs[0], inputs[1], inputs[2]
    transposed = bool(_arg(inputs, 7, False))
    mask = _arg(inputs, 10, (True, True, True))
    return _conv(x, w, grad_out, transposed) * (int(bool(mask[0])) + int(bool(mask[1])))
