"""The dispatch-level counter: every aten op after autograd, handed to the tally.

Two corrections keep the count the model's own: composite ops that inference mode lets through
whole are decomposed as autograd would have, and the head-dim padding CUDA's attention adds before
its fused kernels is read off (see ``_DispatchCounter._unpadded_attention_inputs``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from bench.flops._tally import _Tally

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
