"""Registries: suites, metrics and input makers, looked up by name with close-match errors.

A new suite is one file in ``suites/`` plus ``@register_suite``; a new metric is one file in
``bench/metrics/`` plus ``@register_metric`` (which declares its columns in the metric catalogue,
``bench.catalogue``); a new input kind is ``@register_inputs``.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table; ``get`` fails with the valid names and close matches."""

    def __init__(self, what: str, loader: Callable[[], None] | None = None) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: loading registers into this very registry
            assert self._loader is not None
            self._loader()

    def add(self, name: str, obj: T) -> T:
        self._items[name] = obj
        return obj

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plug-in unloaded, a test cleaning up); unknown names are ignored."""
        self._items.pop(name, None)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.what, name, self._items) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        self._load()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_SOURCE_SUITES = Path(__file__).resolve().parent.parent / "suites"


def _load_builtin_suites() -> None:
    """Import every module of ``bench.suites`` (the repository's ``suites/`` folder).

    Installed, ``suites/`` ships as the subpackage ``bench.suites`` (see pyproject.toml). From a
    source tree that was not installed, the folder is mounted under that name by path.
    """
    try:
        pkg = importlib.import_module("bench.suites")
    except ModuleNotFoundError:
        pkg = types.ModuleType("bench.suites")
        pkg.__path__ = [str(_SOURCE_SUITES)]
        sys.modules["bench.suites"] = pkg
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.suites.{info.name}")


def _load_builtin_metrics() -> None:
    import bench.metrics as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.metrics.{info.name}")


def _load_builtin_inputs() -> None:
    importlib.import_module("bench.inputs")
    _load_builtin_suites()  # suites may register their own input kinds


#: suite name -> zero-argument factory returning a ``bench.spec.Suite`` (declaration; sizing resolves it)
SUITES: Registry[Callable[[], Any]] = Registry("suite", _load_builtin_suites)
#: metric name -> function(ctx) -> dict of values (see bench.metrics); the columns each returns, and what it
#: needs, are in the metric catalogue (bench.catalogue)
METRICS: Registry[Callable[..., Any]] = Registry("metric", _load_builtin_metrics)
#: input kind -> function(spec, batch_size, device, dtype) -> tuple of tensors
INPUTS: Registry[Callable[..., Any]] = Registry("input kind", _load_builtin_inputs)

_suite_cache: dict[str, Any] = {}


def register_suite(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Register a suite factory under ``name`` (the CLI's ``aigc-bench run NAME``)."""
    return SUITES.register(name)


def register_metric(
    name: str, *, columns: Sequence[Any] = (), needs: Sequence[str] = (), order: float | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a metric function under ``name`` (used in a profile's ``metrics``) with its catalogue entry.

    ``columns``: the ``bench.catalogue.Column`` s the function returns; ``needs``: columns of other metrics
    it reads from ``ctx.results`` (the worker runs it after them); ``order``: its place among the metrics in
    tables and the CSV (built-ins use 10-60; default after them). Returns the function unchanged.
    """
    from bench import catalogue

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        catalogue.declare(name, columns, needs, catalogue.DEFAULT_ORDER if order is None else order)
        return METRICS.add(name, fn)

    return deco


def unregister_metric(name: str) -> None:
    """Remove metric ``name`` and its catalogue entry (the inverse of ``register_metric``)."""
    from bench import catalogue

    METRICS.remove(name)
    catalogue.forget(name)


def register_inputs(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an input maker under ``name`` (a suite's ``input_kind``)."""
    return INPUTS.register(name)


def get_suite(name: str) -> Any:
    """The suite declared under ``name``, built once per process (``bench.sizing`` sizes its variants)."""
    if name not in _suite_cache:
        _suite_cache[name] = SUITES.get(name)()
    return _suite_cache[name]


def list_suites(pattern: str = "*") -> list[str]:
    """Names of the registered suites matching a wildcard."""
    return SUITES.names(pattern)
