"""Attention: scaled dot-product kernels, varlen (packed) batches, jagged tensors, fused MHA/encoder layers.

Varlen formulas need the cumulative sequence offsets' values, which survive the copy to meta through
:func:`keep_host_values` (the counter calls it when it moves inputs and buffers to meta).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from bench.flops._ops.registry import NORM_COST, SOFTMAX_COST, Formula, _arg, macs, numel, other

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


#: scaled_dot_product_attention and every backend kernel it dispatches to, in the (..., H, L, E) layout
SDPA_OPS = (
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


@macs(*SDPA_OPS)
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


# Other FLOPs: the softmax over the scores (and, for the fused layers, norms, biases, activations).


@other(*SDPA_OPS)
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


# Backward (``count_train_flops``): dV = P^T dO and dP = dO V^T cost L*S*Ev, dQ = dS K and dK = dS^T Q cost L*S*E:
# twice the forward's L*S*(E + Ev). A kernel that recomputes the scores (flash) does more; as for the forward,
# the count is the model's, not the kernel's. Every one of these takes (grad_out, query, key, value, ...).
SDPA_BACKWARD_OPS = (
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)


@macs(*SDPA_BACKWARD_OPS)
def _sdpa_backward(inputs: Sequence[Any], outputs: Any) -> int:
    return 2 * _attn_bhld(inputs[1], inputs[2], inputs[3])
