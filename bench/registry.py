"""Registries: suites, metrics and input makers, looked up by name with close-match errors.

A new suite is one file in ``suites/`` plus ``@register_suite``; a new metric is one file in
``bench/metrics/`` plus ``@register_metric`` (which declares its columns in the metric catalogue,
``bench.catalogue``); a new input kind is ``@register_inputs``.

Suites from outside the package come two ways, as pytest's plugins do: a suite file named on the command line
(``aigc-bench run path/to/my_suite.py``, ``load_suite_file``), or an installed package that declares an entry
point in the group ``aigc_bench.suites`` (``ENTRY_POINT_GROUP``), loaded with the built-in suites.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import logging
import os
import pkgutil
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError, UsageError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: entry-point group of installed suite plug-ins. An entry point names a module (importing it registers its
#: suites with ``@register_suite``) or a zero-argument suite factory (registered under the entry point's name):
#: ``[project.entry-points."aigc_bench.suites"] my-suite = "mypkg.bench_suite"``
ENTRY_POINT_GROUP = "aigc_bench.suites"
#: suite files loaded in this process, ``os.pathsep``-joined: a worker process inherits the variable and imports
#: the same files (their input kinds and metrics; builders named ``<file stem>:<function>``)
SUITE_FILES_ENV = "AIGC_BENCH_SUITE_FILES"


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
    _load_entry_points()
    for path in filter(None, os.environ.get(SUITE_FILES_ENV, "").split(os.pathsep)):
        try:  # a worker of a run of a suite file: the driver loaded it already, so it loads here too
            load_suite_file(path)
        except UsageError as e:
            log.warning("%s", e)


def _load_entry_points() -> None:
    """Load the installed plug-ins of ``ENTRY_POINT_GROUP``; a broken one is a warning, never the end of every
    command (the suites of the others still load)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 -- the plug-in's own error, whatever it is
            log.warning("suite plug-in %r (%s) did not load: %s", ep.name, ep.value, _one_line(e))
            continue
        if not isinstance(obj, types.ModuleType) and callable(obj) and ep.name not in SUITES._items:
            SUITES.add(ep.name, obj)


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_suite_file(path: str | Path) -> list[str]:
    """Import a suite file by path (``aigc-bench run path/to/my_suite.py``); the names of the suites it registered.

    The file is imported as the module named by its stem, with its folder first on ``sys.path`` (as
    ``python my_suite.py`` would), so ``import mymodels`` beside it works and a builder written
    ``f"{__name__}:build"`` is found again by the worker processes, which import the same files
    (``SUITE_FILES_ENV``). A missing file, a file that fails to import (the user's exception, in one line) or
    that registers no suite is a ``UsageError`` (exit 2). Loading the same file twice is a no-op.
    """
    p = Path(path).expanduser()
    shown = str(path)
    try:
        if not p.exists():
            raise UsageError(f"suite file {shown}: no such file")
        p = p.resolve()
    except OSError as e:  # a name too long, a loop of links
        raise UsageError(f"suite file {shown}: {e.strerror or e}") from None
    if p.suffix != ".py" or not p.is_file():
        raise UsageError(f"suite file {shown}: expected a Python file (.py)")
    if str(p) in _loaded_files:
        return _loaded_files[str(p)]
    SUITES.names()  # the built-in suites first: what the file adds is what it registers now
    if str(p) in _loaded_files:  # loading the built-ins loaded it (a worker: the files named in SUITE_FILES_ENV)
        return _loaded_files[str(p)]
    before = dict(SUITES._items)
    name = p.stem
    taken = sys.modules.get(name)
    if not name.isidentifier() or (taken is not None and getattr(taken, "__file__", None) != str(p)):
        name = f"_aigc_suite_{hashlib.sha256(str(p).encode()).hexdigest()[:12]}"  # never shadow another module
    if str(p.parent) not in sys.path:
        sys.path.insert(0, str(p.parent))
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise UsageError(f"suite file {shown}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- the user's code: any error is theirs, shown in one line
        sys.modules.pop(name, None)
        raise UsageError(f"suite file {shown} failed to import: {_one_line(e)}") from None
    added = [n for n, f in SUITES._items.items() if before.get(n) is not f]
    if not added:
        raise UsageError(f"suite file {shown} registers no suite: decorate a function returning a Suite with "
                         '@register_suite("name") (from bench.registry)')  # fmt: skip
    for n in added:
        _suite_cache.pop(n, None)
    _loaded_files[str(p)] = added
    files = [f for f in os.environ.get(SUITE_FILES_ENV, "").split(os.pathsep) if f]
    if str(p) not in files:
        os.environ[SUITE_FILES_ENV] = os.pathsep.join([*files, str(p)])
    return added


def suite_name(arg: str) -> str:
    """A suite name as the command line gives it: a registered name, or a suite file ``path/to/file.py``
    (``file.py:NAME`` picks one of several suites the file registers), loaded here."""
    path, sep, which = arg.rpartition(":")
    if not (sep and path.endswith(".py")):
        path, which = arg, ""
    if not path.endswith(".py") and os.sep not in path:
        return arg  # a name: looked up (with close matches) where it is used
    added = load_suite_file(path)
    if which:
        if which not in added:
            raise UnknownNameError(f"suite of {path}", which, added)
        return which
    if len(added) > 1:
        raise UsageError(f"suite file {path} registers {len(added)} suites ({', '.join(added)}); "
                         f"name one: {path}:{added[0]}")  # fmt: skip
    return added[0]


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
#: suite file (resolved path) -> the suites it registered (``load_suite_file``)
_loaded_files: dict[str, list[str]] = {}


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
