"""From an aten op to its formulas: the tables, the work-free ops, the tag rules; argument normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bench.flops._ops.registry import MAC_FORMULAS, OTHER_FORMULAS, Formula, _aten_ops, _per_out

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

ZERO_OPS: set[Any] = set(_aten_ops(*ZERO_OP_NAMES))


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
