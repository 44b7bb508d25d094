"""Other FLOPs of softmax, normalisation, reductions, pooling, interpolation, sampling, scatter and FFT.

Estimates with one documented cost per element (constants in ``registry``), never added to MACs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.flops._ops.registry import (
    NORM_COST,
    NORM_EVAL_COST,
    RMS_NORM_COST,
    SOFTMAX_COST,
    Formula,
    _arg,
    _first_tensor,
    _per_in,
    _per_out,
    _tensor_numel,
    numel,
    other,
    out_numel,
)

other("_softmax", "_log_softmax", "_safe_softmax", "_masked_softmax", "softmax", "log_softmax")(_per_in(SOFTMAX_COST))


def _norm(weight_index: int) -> Formula:
    # fvcore's costs: 5 per element with an affine transform, 4 without.
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        affine = _arg(inputs, weight_index) is not None
        return (NORM_COST if affine else NORM_COST - 1) * _tensor_numel(inputs[0])

    return f


def _batch_norm(training: int | str) -> Formula:
    # Training mode computes batch statistics (a full norm); eval mode is one scale and one shift
    # per element with the running statistics (fvcore: 2 with affine, 1 without).
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        affine = _arg(inputs, 1) is not None
        is_training = training == "train" or isinstance(training, int) and bool(_arg(inputs, training, False))
        if is_training:
            return (NORM_COST if affine else NORM_COST - 1) * inputs[0].numel()
        return (NORM_EVAL_COST if affine else NORM_EVAL_COST - 1) * inputs[0].numel()

    return f


other("native_layer_norm")(_norm(2))
other("native_group_norm")(_norm(1))
other("native_batch_norm", "_native_batch_norm_legit.default", "cudnn_batch_norm", "miopen_batch_norm")(_batch_norm(5))
other("_native_batch_norm_legit.no_stats", "_batch_norm_with_update")(_batch_norm("train"))
other("_native_batch_norm_legit_no_training", "_batch_norm_no_update")(_batch_norm("eval"))
other("_fused_rms_norm", "rms_norm")(_per_in(RMS_NORM_COST))
# Reductions and scans: one operation per input element.
other("sum", "mean", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean", "norm", "linalg_vector_norm")(
    _per_in(1)
)
other("logsumexp", "prod", "cumsum", "cumprod", "argmax", "argmin", "topk", "sort", "any", "all", "aminmax")(_per_in(1))
# Pooling: one operation per element read (adaptive pooling reads each input once).
other("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d")(_per_in(1))
other("adaptive_max_pool1d", "_adaptive_avg_pool1d")(_per_in(1))
# Interpolation: taps per output element.
other("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d")(_per_out(1))
other("_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d")(_per_out(1))
other("upsample_linear1d")(_per_out(2))
other("upsample_bilinear2d", "_upsample_bilinear2d_aa", "cudnn_grid_sampler")(_per_out(4))
other("upsample_trilinear3d")(_per_out(8))
other("upsample_bicubic2d", "_upsample_bicubic2d_aa")(_per_out(16))

#: grid_sampler_2d/3d's ``interpolation_mode`` (0 bilinear/trilinear, 1 nearest, 2 bicubic) -> taps
GRID_TAPS_2D = {0: 4, 1: 1, 2: 16}
GRID_TAPS_3D = {0: 8, 1: 1}


def _grid_sampler(taps: dict[int, int]) -> Formula:
    # (input, grid, interpolation_mode, padding_mode, align_corners): taps per output element.
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        return taps[int(inputs[2])] * out_numel(outputs)

    return f


other("grid_sampler_2d", "_grid_sampler_2d_cpu_fallback")(_grid_sampler(GRID_TAPS_2D))
other("grid_sampler_3d")(_grid_sampler(GRID_TAPS_3D))


other("col2im", "embedding_bag", "_embedding_bag", "_embedding_bag_forward_only", "native_dropout")(_per_out(1))
other("scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_", "index_add", "index_add_")(_per_out(1))
other("index_reduce", "index_reduce_", "segment_reduce", "_segment_reduce", "fractional_max_pool2d")(_per_out(1))
# Elementwise ops that carry no pointwise tag in torch: one operation per output element.
other("rsub", "where", "glu", "hardswish", "hardswish_", "_prelu_kernel", "prelu", "rrelu_with_noise")(_per_out(1))
other("log_sigmoid_forward", "polar", "complex", "_weight_norm_interface", "_weight_norm")(_per_out(1))
# More reductions, sorts and searches: one operation per input element.
other("logcumsumexp", "argsort", "kthvalue", "median", "nanmedian", "mode", "count_nonzero", "nansum")(_per_in(1))
other("norm_except_dim", "trace", "dist", "bucketize", "searchsorted")(_per_in(1))


@other(
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "mkldnn_max_pool2d",
)
def _pool(inputs: Sequence[Any], outputs: Any) -> int:
    # One comparison/add per window element per output element.
    x, k = inputs[0], inputs[1]
    k = list(k) if isinstance(k, list | tuple) else [k]
    spatial = max(x.dim() - 2, 1)
    if len(k) == 1:
        k = k * spatial
    return out_numel(outputs) * numel(k)


@other("_fft_r2c", "_fft_c2r", "_fft_c2c")
def _fft(inputs: Sequence[Any], outputs: Any) -> int:
    # The classic 5 N log2 N per transform, N = product of the transformed dims (the larger of
    # input and output: a c2r transform's output is the full signal).
    x, out, dims = inputs[0], _first_tensor(outputs), list(inputs[1])
    n = numel([max(x.shape[d], out.shape[d] if out is not None else 0) for d in dims])
    batch = x.numel() // max(numel([x.shape[d] for d in dims]), 1)
    return int(5 * batch * n * math.log2(n)) if n > 1 else 0
