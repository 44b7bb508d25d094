"""``count_flops``: run a model once under a ``TorchDispatchMode`` and sum the op formulas.

By default the model is copied to the meta device (parameters are swapped for meta tensors while
copying, so the copy costs no real memory) and the inputs are moved there too: every op runs its
shape function only, so a ViT at batch 256 or a Transformer at 16k tokens is counted in seconds
and allocates nothing. Where the model cannot run on meta, it is run for real and ``method`` says
so.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bench.flops._dispatch import _DispatchCounter
from bench.flops._functions import _FunctionCounter, aten_op
from bench.flops._meta import _any_meta, _keep_lengths_on_host, _to_meta, map_tensors, meta_copy
from bench.flops._tally import CONVENTION, FlopCount, _Tally

__all__ = ["CONVENTION", "FlopCount", "aten_op", "count_flops", "map_tensors", "meta_copy"]

log = logging.getLogger(__name__)


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
