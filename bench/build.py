"""Build a variant's model from its builder string, and count parameters without building it for real.

A builder is ``"timm:<model name>"`` (``timm.create_model(name, pretrained=False, **args)``) or
``"<module>:<function>"`` (imported and called with the model arguments). Weights are never downloaded.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from bench.errors import UnknownNameError, UsageError
from bench.spec import _thaw, freeze

logger = logging.getLogger(__name__)


class _Buildable(Protocol):
    """Anything with a builder and model arguments: a ``Variant`` or a ``VariantSpec``."""

    builder: str
    model_args: tuple[tuple[str, Any], ...]


def build_model(variant: _Buildable, *, device: str | torch.device | None = None, **overrides: Any) -> nn.Module:
    """Build ``variant``'s model (``Variant`` or ``VariantSpec``) in eval mode, randomly initialised.

    ``device`` builds the parameters there directly (``"meta"`` allocates nothing); ``overrides`` replace or
    add model arguments (e.g. ``num_classes=10``). Call ``.train()`` on the result for a training step.
    """
    args = {k: _thaw(v) for k, v in variant.model_args} | overrides
    return _build(variant.builder, args, device).eval()


def count_params(
    builder: str,
    model_args: Mapping[str, Any] | tuple[tuple[str, Any], ...] = (),
    *,
    submodule: str | None = None,
) -> int:
    """Number of (unique) parameters of the model ``builder(**model_args)``, built on the meta device.

    ``submodule`` counts only ``model.get_submodule(submodule)`` (e.g. a backbone without embeddings or
    heads). Building on ``meta`` allocates no memory and initialises nothing for real, so sizing a
    100M-parameter model takes milliseconds. Results are cached: the solver asks for the same configuration
    repeatedly.
    """
    frozen = freeze(model_args) if isinstance(model_args, Mapping) else tuple(model_args)
    return _count_params(builder, frozen, submodule)


@functools.lru_cache(maxsize=4096)
def _count_params(builder: str, frozen: tuple[tuple[str, Any], ...], submodule: str | None) -> int:
    args = {k: _thaw(v) for k, v in frozen}
    try:
        model = _build(builder, args, "meta")
    except UsageError:
        raise
    except (NotImplementedError, RuntimeError) as e:
        # Some constructors read tensor values (``.item()``/``.tolist()``), which meta tensors lack.
        logger.debug("building %s on meta failed (%s); counting on cpu", builder, e)
        model = _build(builder, args, "cpu")
    if submodule:
        try:
            model = model.get_submodule(submodule)
        except AttributeError:
            raise UnknownNameError(
                f"submodule of {builder}", submodule, [n for n, _ in model.named_children()]
            ) from None
    return sum(p.numel() for p in model.parameters())


def resolve_builder(builder: str) -> Callable[..., nn.Module]:
    """The callable behind a builder string; fails with a ``UsageError`` naming what is wrong."""
    module, sep, name = builder.partition(":")
    if not sep or not module or not name:
        raise UsageError(f"bad builder {builder!r}: expected 'timm:<model name>' or '<module>:<function>'")
    if module == "timm":
        _check_timm_name(name)
        import timm

        return functools.partial(timm.create_model, name, pretrained=False)
    return load_callable(builder, "builder")


def load_callable(path: str, what: str = "function") -> Callable[..., Any]:
    """The function named by ``"<module>:<function>"``; a ``UsageError`` if it cannot be found."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise UsageError(f"bad {what} {path!r}: expected '<module>:<function>'")
    try:
        mod = _import(module)
    except ImportError as e:
        raise UsageError(f"bad {what} {path!r}: cannot import {module!r} ({e})") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        public = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise UnknownNameError(f"{what} function in {module}", name, public)
    return fn


def _build(builder: str, args: Mapping[str, Any], device: str | torch.device | None) -> nn.Module:
    fn = resolve_builder(builder)
    if device is None:
        model = fn(**args)
    else:
        with torch.device(device):
            model = fn(**args)
    if not isinstance(model, nn.Module):
        raise UsageError(f"builder {builder!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _check_timm_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    # timm registers ~1,500 names: list the close matches, not all of them.
    err = UnknownNameError("timm model", name, close)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    err.args = (f"unknown timm model {name!r}{hint}; see timm.list_models('{name.split('_')[0]}*')",)
    raise err


def _import(module: str) -> Any:
    if module == "bench.suites" or module.startswith("bench.suites."):
        # From a source tree that was not installed, suites/ becomes bench.suites only once the
        # registry has mounted it (a worker process rebuilding a suite's model starts here).
        from bench.registry import list_suites

        list_suites()
    return importlib.import_module(module)
