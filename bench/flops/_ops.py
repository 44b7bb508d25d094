"""The op registry: aten op -> small pure formulas ``(inputs, outputs) -> count``.

Two tables, in the shape of fvcore's handles but keyed by aten ops as ``TorchDispatchMode`` sees
them (after autograd, so composite ops such as ``aten::linear`` or ``aten::einsum`` have already
been decomposed into ``mm``/``bmm``/...; their formulas are kept for callers that meet them whole):

* ``MAC_FORMULAS``: multiply-accumulates of matmul-like work (GEMM, convolution, attention, RNNs).
  Biases are not MACs: a bias add goes to the other table.
* ``OTHER_FORMULAS``: everything else that computes (normalisation, softmax, pooling, activations,
  elementwise, reductions, FFT), as an estimate of scalar operations with a fixed cost per element
  (the costs are documented next to each entry and in ``docs/flops.md``).

An op in neither table is looked up in ``ZERO_OPS`` (work-free: views, copies, factories, indexing,
embeddings, random masks...) and by tag (``torch.Tag.pointwise`` ops cost one other FLOP per
output element, views cost nothing). Anything else is *uncounted* and reported, never silently 0.

``inputs`` is the op's positional arguments with keyword arguments appended in schema order
(see :func:`normalize_inputs`); ``outputs`` is what the op returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

#: ``(inputs, outputs) -> count`` -- a pure function of shapes (and a few scalar arguments).
Formula = Callable[[Sequence[Any], Any], int]

aten = torch.ops.aten

MAC_FORMULAS: dict[Any, Formula] = {}
OTHER_FORMULAS: dict[Any, Formula] = {}


def _ops(*names: str) -> list[Any]:
    """The aten op packets (or ``packet.overload``) that exist in this torch build."""
    found = []
    for name in names:
        packet_name, _, overload = name.partition(".")
        packet = getattr(aten, packet_name, None)
        if packet is None:
            continue
        if overload:
            op = getattr(packet, overload, None)
            if op is not None:
                found.append(op)
        else:
            found.append(packet)
    return found


def macs(*names: str) -> Callable[[Formula], Formula]:
    """Register a MAC formula for the named aten ops (missing ones in this torch are skipped)."""

    def deco(fn: Formula) -> Formula:
        for op in _ops(*names):
            MAC_FORMULAS[op] = fn
        return fn

    return deco


def other(*names: str) -> Callable[[Formula], Formula]:
    """Register an other-FLOPs formula (norm, softmax, pooling, elementwise...) for the named ops."""

    def deco(fn: Formula) -> Formula:
        for op in _ops(*names):
            OTHER_FORMULAS[op] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------
# shape helpers


def numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, list | tuple):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def out_numel(outputs: Any) -> int:
    t = _first_tensor(outputs)
    return 0 if t is None else _tensor_numel(t)


def _tensor_numel(t: Tensor) -> int:
    if t.is_nested:
        return int(sum(numel(s) for s in t._nested_tensor_size().tolist()))
    return t.numel()


def _arg(inputs: Sequence[Any], i: int, default: Any = None) -> Any:
    return inputs[i] if len(inputs) > i else default


# ---------------------------------------------------------------------------------------------
# GEMM family. MACs = (output elements) x (reduction length).


@macs("mm", "_int_mm", "_scaled_mm")
def _mm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[0], inputs[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


@macs("addmm", "_addmm_activation")
def _addmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[1], inputs[2]
    return a.shape[0] * a.shape[1] * b.shape[1]


@macs("bmm")
def _bmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[0], inputs[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


@macs("baddbmm", "addbmm")
def _baddbmm(inputs: Sequence[Any], outputs: Any) -> int:
    a, b = inputs[1], inputs[2]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


@macs("mv", "dot", "vdot")
def _mv(inputs: Sequence[Any], outputs: Any) -> int:
    return inputs[0].numel()


@macs("addmv")
def _addmv(inputs: Sequence[Any], outputs: Any) -> int:
    return inputs[1].numel()


@macs("matmul")
def _matmul(inputs: Sequence[Any], outputs: Any) -> int:
    # Broadcasting batched matmul: every output element is one dot product of length K.
    a = inputs[0]
    if a.is_nested:
        # Nested (e.g. the math path of SDPA on jagged tensors): per component, its output
        # elements times its own reduction length (sequence i: h*L_i*L_i*E for Q K^T).
        out = _first_tensor(outputs)
        ks = [int(s[-1]) for s in a._nested_tensor_size().tolist()]
        outs = [numel(s) for s in out._nested_tensor_size().tolist()]
        return sum(o * k for o, k in zip(outs, ks, strict=True))
    return max(out_numel(outputs), 1) * a.shape[-1]


@macs("linear", "mkldnn_linear")
def _linear(inputs: Sequence[Any], outputs: Any) -> int:
    w = inputs[1]
    return out_numel(outputs) * w.shape[-1]


@macs("einsum")
def _einsum(inputs: Sequence[Any], outputs: Any) -> int:
    equation, operands = inputs[0], list(inputs[1])
    return einsum_macs(equation, [tuple(t.shape) for t in operands])


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """MACs of an einsum evaluated left to right, one pairwise contraction at a time.

    Each pairwise step costs the product of the sizes of every index of the two operands; a single
    operand (a sum or a trace) costs no MACs.
    """
    equation = equation.replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    # Expand "..." into private letters so that broadcast dimensions are counted.
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)
    ell: list[str] = []
    sizes: dict[str, int] = {}
    letters_of: list[str] = []
    for term, shape in zip(terms, shapes, strict=False):
        if "..." in term:
            n = len(shape) - (len(term) - 3)
            while len(ell) < n:
                ell.append(next(spare))
            term = term.replace("...", "".join(ell[len(ell) - n :]))
        for c, s in zip(term, shape, strict=False):
            sizes[c] = max(sizes.get(c, 1), int(s))
        letters_of.append(term)
    out = rhs.replace("...", "".join(ell)) if "->" in equation else ""
    if len(letters_of) < 2:
        return 0
    total, cur = 0, set(letters_of[0])
    for i, term in enumerate(letters_of[1:], start=1):
        joint = cur | set(term)
        total += numel([sizes[c] for c in joint])
        later = set("".join(letters_of[i + 1 :])) | set(out)
        cur = {c for c in joint if c in later}
    return total


@macs("_cdist_forward")
def _cdist(inputs: Sequence[Any], outputs: Any) -> int:
    # (B, P, M) x (B, R, M) -> (B, P, R): one M-long reduction per output element.
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_euclidean_dist")
def _euclidean_dist(inputs: Sequence[Any], outputs: Any) -> int:
    # torch.cdist's default path for p=2 with more than 25 rows: ||x||^2 + ||y||^2 - 2 x.y, with
    # the cross term x.y one GEMM (B, P, M) x (B, M, R). Counted like _cdist_forward: B*P*R*M
    # (the kernel pads the GEMM by two columns to fold the norms in; those are other FLOPs).
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_pdist_forward")
def _pdist(inputs: Sequence[Any], outputs: Any) -> int:
    return out_numel(outputs) * inputs[0].shape[-1]


@macs("_trilinear")
def _trilinear(inputs: Sequence[Any], outputs: Any) -> int:
    """``_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim)``: sum over ``sumdim`` of
    the product of three operands unsqueezed at their ``expand`` dims (``nn.Bilinear``: x1^T A x2).

    One MAC per point of the joint index space (output dims x summed dims): for ``nn.Bilinear``
    that is batch x out x in1 x in2.
    """
    sizes: list[int] = []
    for t, expand in zip(inputs[:3], inputs[3:6], strict=True):
        shape = list(t.shape)
        for d in sorted(int(e) for e in expand):
            shape.insert(d, 1)
        sizes = [max(a, b) for a, b in zip(sizes, shape, strict=True)] if sizes else shape
    return numel(sizes)


@macs("addr")
def _addr(inputs: Sequence[Any], outputs: Any) -> int:
    # beta * input + alpha * outer(vec1, vec2): one product per output element.
    return inputs[1].numel() * inputs[2].numel()


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


# ---------------------------------------------------------------------------------------------
# Attention. Q K^T costs L*S*E and A V costs L*S*Ev per (batch, query head). The full L x S square
# is counted even when is_causal=True or a mask zeroes half of it, like fvcore and
# FlopCounterMode: the kernels compute (or at least allocate) work for the whole rectangle on most
# backends, and counts must not depend on which backend the dispatcher picked.


def _attn_bhld(q: Tensor, k: Tensor, v: Tensor) -> int:
    # (..., H, L, E) layout. Grouped-query attention: k/v have fewer heads, but every query head
    # still does the full product, so the count uses q's heads.
    batch_heads = numel(q.shape[:-2])
    length_q, e = q.shape[-2], q.shape[-1]
    length_k, ev = k.shape[-2], v.shape[-1]
    return batch_heads * length_q * length_k * (e + ev)


def _attn_blhd(q: Tensor, k: Tensor, v: Tensor) -> int:
    # (B, L, H, E) layout of the low-level flash / efficient kernels.
    b, length_q, h, e = q.shape
    length_k, ev = k.shape[1], v.shape[-1]
    return b * h * length_q * length_k * (e + ev)


@macs(
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
    "_triton_scaled_dot_attention",
)
def _sdpa(inputs: Sequence[Any], outputs: Any) -> int:
    return _attn_bhld(inputs[0], inputs[1], inputs[2])


#: attribute of a meta copy of a small 1-D integer tensor that holds the real tensor it was made from
HOST_VALUES_ATTR = "_bench_host_values"
#: 1-D integer tensors up to this many elements keep their values when copied to meta
HOST_VALUES_MAX_NUMEL = 1 << 20


def keep_host_values(real: Tensor, meta: Tensor) -> Tensor:
    """``meta``, remembering ``real`` when it is a small 1-D integer tensor with values (offsets, lengths).

    Formulas that need values (varlen attention's cumulative sequence offsets) read them back with
    :func:`host_values`; every other op sees a plain meta tensor.
    """
    if (
        meta is not real
        and real.device.type != "meta"
        and real.dim() == 1
        and not real.dtype.is_floating_point
        and not real.dtype.is_complex
        and real.numel() <= HOST_VALUES_MAX_NUMEL
    ):
        setattr(meta, HOST_VALUES_ATTR, real)
    return meta


def host_values(t: Tensor) -> Tensor:
    """``t``, or the real tensor a meta copy was made from; ValueError when values are unknown."""
    if t.device.type != "meta":
        return t
    real = getattr(t, HOST_VALUES_ATTR, None)
    if real is None:
        raise ValueError("values unknown: a meta tensor not copied from the inputs (computed inside forward?)")
    return real


def _varlen_pairs(cum_q: Tensor, cum_k: Tensor) -> int:
    """Sum of L_i * S_i over the sequences of a varlen (packed) batch, from cumulative offsets.

    Needs the offsets' values: given as inputs (or buffers) they are kept when counting on meta;
    computed on meta inside forward they are unknown and the formula fails (so the op is reported
    as uncounted rather than guessed).
    """
    lq, lk = host_values(cum_q).diff().tolist(), host_values(cum_k).diff().tolist()
    return int(sum(a * b for a, b in zip(lq, lk, strict=True)))


def _raw_attention(cum_q_index: int) -> Formula:
    # The raw flash / efficient kernels take (B, L, H, E); varlen batches pass (total, H, E)
    # (flash) or (1, total, H, E) (efficient) plus cumulative sequence offsets.
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        q, k, v = inputs[0], inputs[1], inputs[2]
        cum_q, cum_k = _arg(inputs, cum_q_index), _arg(inputs, cum_q_index + 1)
        if cum_q is not None and cum_k is not None:
            return q.shape[-2] * (q.shape[-1] + v.shape[-1]) * _varlen_pairs(cum_q, cum_k)
        return _attn_blhd(q, k, v)

    return f


macs("_flash_attention_forward")(_raw_attention(3))
macs("_efficient_attention_forward")(_raw_attention(4))


def _lengths(x: Tensor) -> list[int]:
    """Per-sample sequence lengths of a (B, N, D) tensor or a nested tensor of (N_i, D)."""
    if x.is_nested:
        return [int(s[0]) for s in x._nested_tensor_size().tolist()]
    return [int(x.shape[1])] * int(x.shape[0]) if x.dim() == 3 else [int(x.shape[0])]


def _mha_macs(query: Tensor, key: Tensor, d: int) -> int:
    # Projections: q on Nq tokens, k and v on Nk tokens, out on Nq -> 2 Nq D^2 + 2 Nk D^2;
    # scores and weighted sum 2 Nq Nk D (summed over heads, head_dim x heads = D).
    total = 0
    for nq, nk in zip(_lengths(query), _lengths(key), strict=False):
        total += 2 * nq * d * d + 2 * nk * d * d + 2 * nq * nk * d
    return total


@macs("_native_multi_head_attention", "_triton_multi_head_attention")
def _native_mha(inputs: Sequence[Any], outputs: Any) -> int:
    return _mha_macs(inputs[0], inputs[1], int(inputs[3]))


@macs("_transformer_encoder_layer_fwd")
def _encoder_layer(inputs: Sequence[Any], outputs: Any) -> int:
    # Self-attention (4 N D^2 + 2 N^2 D) plus the FFN (2 N D F), per sample.
    src, d, ffn_w1 = inputs[0], int(inputs[1]), inputs[14]
    f = ffn_w1.shape[0]
    return sum(4 * n * d * d + 2 * n * n * d + 2 * n * d * f for n in _lengths(src))


# ---------------------------------------------------------------------------------------------
# Recurrent networks. Per token and per layer-direction the gates cost rows(W_ih) x I +
# rows(W_hh) x H(or P) -- exactly the element counts of the 2-D weights (biases are 1-D, so
# they drop out; the LSTM projection W_hr (P, H) is 2-D and counts P*H). Layers >= 2 take the
# previous layer's output, which the weights' shapes already encode.


def _weights_macs(params: Sequence[Any]) -> int:
    return sum(p.numel() for p in params if isinstance(p, Tensor) and p.dim() == 2)


def _tokens(x: Tensor) -> int:
    # (T, B, I) / (B, T, I) -> T*B; unbatched (T, I) -> T; packed data (N, I) -> N.
    return x.numel() // x.shape[-1] if x.numel() else 0


@macs("lstm.input", "gru.input", "rnn_tanh.input", "rnn_relu.input")
def _rnn_input(inputs: Sequence[Any], outputs: Any) -> int:
    # lstm.input(input, hx[], params[], ...); gru/rnn.input(input, hx, params[], ...)
    return _tokens(inputs[0]) * _weights_macs(inputs[2])


@macs("lstm.data", "gru.data", "rnn_tanh.data", "rnn_relu.data")
def _rnn_data(inputs: Sequence[Any], outputs: Any) -> int:
    # (data, batch_sizes, hx, params[], ...): the packed data has one row per real token.
    return inputs[0].shape[0] * _weights_macs(inputs[3])


@macs("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
def _rnn_cell(inputs: Sequence[Any], outputs: Any) -> int:
    x, w_ih, w_hh = inputs[0], inputs[2], inputs[3]
    batch = x.shape[0] if x.dim() == 2 else 1
    return batch * (w_ih.numel() + w_hh.numel())


@macs("mkldnn_rnn_layer")
def _mkldnn_rnn_layer(inputs: Sequence[Any], outputs: Any) -> int:
    # One layer, one direction: weight0 = W_ih, weight1 = W_hh.
    return _tokens(inputs[0]) * (inputs[1].numel() + inputs[2].numel())


def _fused_rnn(batch_sizes_index: int) -> Formula:
    # cuDNN / MIOpen: a flat list of every layer-direction's weights; packed input when
    # batch_sizes is non-empty (then the data has one row per real token).
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        x, batch_sizes = inputs[0], _arg(inputs, batch_sizes_index)
        tokens = x.shape[0] if batch_sizes else _tokens(x)
        return tokens * _weights_macs(inputs[1])

    return f


macs("_cudnn_rnn")(_fused_rnn(14))
macs("miopen_rnn")(_fused_rnn(12))


# ---------------------------------------------------------------------------------------------
# Other FLOPs: estimates, one documented constant per family (not MACs, never added to them).

#: scalar operations per element of the op's input (or output where noted)
SOFTMAX_COST = 5  # max, subtract, exp, sum, divide
NORM_COST = 5  # mean, variance, subtract, scale, affine (train-mode batch norm, layer/group norm)
NORM_EVAL_COST = 2  # batch norm with running stats: one scale and one shift
RMS_NORM_COST = 4  # square, mean, rsqrt-scale, affine


def _bias_out(bias_index: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        return out_numel(outputs) if _arg(inputs, bias_index) is not None else 0

    return f


def _per_out(cost: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        return cost * out_numel(outputs)

    return f


def _per_in(cost: int) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        t = _first_tensor(inputs)
        return 0 if t is None else cost * _tensor_numel(t)

    return f


other("addmm", "baddbmm", "addbmm", "addmv", "addr")(_bias_out(0))  # the bias (or `input`) add
other("conv_tbc")(_bias_out(2))
other("convolution", "_convolution", "mkldnn_convolution")(_bias_out(2))
other("linear")(_bias_out(2))
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


@other("_euclidean_dist")
def _euclidean_dist_other(inputs: Sequence[Any], outputs: Any) -> int:
    # Squared norms (one per input element) and, per output, adding them in and the square root.
    return _tensor_numel(inputs[0]) + _tensor_numel(inputs[1]) + 2 * out_numel(outputs)


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


@other(
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
    "_triton_scaled_dot_attention",
)
def _sdpa_other(inputs: Sequence[Any], outputs: Any) -> int:
    q, k = inputs[0], inputs[1]
    return SOFTMAX_COST * numel(q.shape[:-1]) * k.shape[-2]


@other("_flash_attention_forward", "_efficient_attention_forward")
def _sdpa_blhd_other(inputs: Sequence[Any], outputs: Any) -> int:
    q, k = inputs[0], inputs[1]
    return SOFTMAX_COST * numel(q.shape[:-1]) * k.shape[-3] if q.dim() == 4 else 0


@other("_native_multi_head_attention", "_triton_multi_head_attention")
def _native_mha_other(inputs: Sequence[Any], outputs: Any) -> int:
    query, key, heads = inputs[0], inputs[1], int(inputs[4])
    d = int(inputs[3])
    scores = sum(nq * nk for nq, nk in zip(_lengths(query), _lengths(key), strict=False))
    tokens = sum(_lengths(query)) + 2 * sum(_lengths(key))
    return SOFTMAX_COST * heads * scores + tokens * d + sum(_lengths(query)) * d  # softmax + biases


@other("_transformer_encoder_layer_fwd")
def _encoder_layer_other(inputs: Sequence[Any], outputs: Any) -> int:
    src, d, heads, f = inputs[0], int(inputs[1]), int(inputs[2]), inputs[14].shape[0]
    total = 0
    for n in _lengths(src):
        total += SOFTMAX_COST * heads * n * n  # softmax
        total += 2 * NORM_COST * n * d  # two layer norms
        total += 4 * n * d + n * f + n * d  # qkv/out/ffn biases
        total += n * f + 2 * n * d  # activation, two residual adds
    return total


# RNN gate arithmetic per token and hidden unit (bias adds, gate nonlinearities, cell update),
# counted from the decomposition the meta kernels run: LSTM 4 gates x (2 bias adds + 1
# nonlinearity) + 3 products + 1 sum + 1 tanh; GRU 3 gates x 2 bias adds + 3 nonlinearities +
# 5 blend ops; vanilla RNN 2 bias adds + 1 nonlinearity.
_RNN_OTHER_PER_UNIT = {"lstm": 17, "gru": 14, "rnn_tanh": 3, "rnn_relu": 3}


def _rnn_other_for(kind: str, data: bool) -> Formula:
    def f(inputs: Sequence[Any], outputs: Any) -> int:
        tokens = inputs[0].shape[0] if data else _tokens(inputs[0])
        # Hidden units over all layer-directions, from the final state (L*D, B, H): c_n for an
        # LSTM (its h_n is P wide with a projection), h_n otherwise.
        state = outputs[2] if kind == "lstm" else outputs[1]
        return _RNN_OTHER_PER_UNIT[kind] * tokens * state.shape[0] * state.shape[-1]

    return f


for _kind in _RNN_OTHER_PER_UNIT:
    other(f"{_kind}.input")(_rnn_other_for(_kind, data=False))
    other(f"{_kind}.data")(_rnn_other_for(_kind, data=True))


@other("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell")
def _cell_other(inputs: Sequence[Any], outputs: Any) -> int:
    return 4 * out_numel(outputs)


# ---------------------------------------------------------------------------------------------
# Known work-free ops (no MACs, no other FLOPs worth counting): views, copies, factories, shape
# and indexing ops, embeddings (a gather: 0 MACs), random masks. Listed explicitly so that every
# op *not* listed, and not covered by a tag rule, is reported as uncounted.
ZERO_OP_NAMES = """
alias as_strided as_strided_ _reshape_alias view view_as _unsafe_view reshape t transpose transpose_ permute
expand expand_as squeeze squeeze_ unsqueeze unsqueeze_ flatten unflatten select slice narrow diagonal unfold
detach detach_ lift lift_fresh lift_fresh_copy clone copy copy_ _to_copy to contiguous _copy_from
_copy_from_and_resize resize_ resize_as_ set_ _local_scalar_dense item is_nonzero equal _assert_async
_assert_tensor_metadata _functional_assert_async sym_size sym_stride sym_numel sym_storage_offset
empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones ones_like new_ones
full full_like new_full scalar_tensor arange linspace logspace eye tensor _to_dense
rand rand_like randn randn_like randint randint_like randperm normal normal_ uniform_ bernoulli bernoulli_
exponential_ random_ _fused_dropout native_dropout_backward fill fill_ zero_ masked_fill masked_fill_
cat stack hstack vstack split split_with_sizes unsafe_split unsafe_split_with_sizes unbind chunk unsafe_chunk
tensor_split constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
replication_pad2d replication_pad3d _pad_circular flip roll repeat repeat_interleave tile
index index_select index_put index_put_ _index_put_impl_ gather scatter scatter_ take masked_select
masked_scatter masked_scatter_ nonzero slice_scatter select_scatter diagonal_scatter as_strided_scatter
tril triu tril_ triu_ im2col pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle
embedding one_hot _nested_tensor_from_mask _nested_tensor_from_mask_left_aligned
_nested_tensor_size _nested_tensor_strides _nested_from_padded _nested_view_from_buffer
to_padded_tensor _transform_bias_rescale_qkv _unique _unique2 unique_dim bincount histc
_pack_padded_sequence _pad_packed_sequence _make_dep_token _has_compatible_shallow_copy_type
view_as_real view_as_complex _conj _neg_view resolve_conj resolve_neg real imag
align_tensors _shape_as_tensor record_stream _version set_data
view_copy expand_copy permute_copy t_copy transpose_copy squeeze_copy unsqueeze_copy slice_copy select_copy
split_copy split_with_sizes_copy unbind_copy unfold_copy as_strided_copy alias_copy detach_copy diagonal_copy
narrow_copy _unsafe_index _unsafe_index_put _unsafe_masked_index _unsafe_masked_index_put_accumulate
take_along_dim diag diag_embed max_unpool2d max_unpool3d _conj_copy _neg_view_copy
_linalg_check_errors sym_is_contiguous is_contiguous _nested_tensor_from_tensor_list
""".split()

ZERO_OPS: set[Any] = set(_ops(*ZERO_OP_NAMES))


def op_name(func: Any) -> str:
    """``aten::addmm`` for ``aten.addmm.default`` (the overload is dropped)."""
    try:
        return func._schema.name
    except AttributeError:
        return str(func)


def classify(func: Any) -> tuple[Formula | None, Formula | None, bool]:
    """``(mac_formula, other_formula, known)`` for one op overload; ``known`` False means uncounted.

    Looked up by overload first (``aten.lstm.data``), then by packet (``aten.lstm``).
    """
    packet = getattr(func, "overloadpacket", None)
    mac = MAC_FORMULAS.get(func) or MAC_FORMULAS.get(packet)
    oth = OTHER_FORMULAS.get(func) or OTHER_FORMULAS.get(packet)
    if mac is not None or oth is not None:
        return mac, oth, True
    if packet in ZERO_OPS or func in ZERO_OPS:
        return None, None, True
    tags = getattr(func, "tags", ())
    if torch.Tag.pointwise in tags:
        return None, _per_out(1), True  # elementwise: one operation per output element
    if getattr(func, "is_view", False) or torch.Tag.inplace_view in tags:
        return None, None, True
    schema = getattr(func, "_schema", None)
    if schema is not None and not any(_is_tensor_type(a.type) for a in schema.arguments):
        return None, None, True  # a factory: no tensor inputs, nothing computed
    return None, None, False


def _is_tensor_type(t: Any) -> bool:
    text = str(t)
    return "Tensor" in text


def normalize_inputs(func: Any, args: Sequence[Any], kwargs: dict[str, Any] | None) -> list[Any]:
    """Positional arguments with keyword arguments appended in schema order (defaults filled)."""
    inputs = list(args)
    if not kwargs:
        return inputs
    schema = getattr(func, "_schema", None)
    if schema is None:
        return inputs
    for a in schema.arguments[len(inputs) :]:
        if a.name in kwargs:
            inputs.append(kwargs[a.name])
        else:
            inputs.append(a.default_value if a.has_default_value() else None)
    return inputs
