"""The metric catalogue: what every metric produces, declared once where the metric is registered.

A metric is one file in ``bench/metrics/`` (or any imported module): a function ``(ctx) -> dict`` and the
columns it returns, each a :class:`Column` with its unit, which direction is better, how ``compare``
judges it (:class:`Judge`), its report header and scope, and the other metrics' columns it needs::

    from bench.catalogue import Column, Judge
    from bench.registry import register_metric

    @register_metric("achieved", needs=("macs", "latency_p50_ms"), columns=(
        Column("fwd_gflops", unit="GFLOP/s", better="higher", header="GFLOP/s",
               judge=Judge("threshold", default=10.0), export=True),
    ))
    def achieved(ctx):
        seconds = ctx.results["latency_p50_ms"] / 1e3
        return {"fwd_gflops": 2 * ctx.results["macs"] / seconds / 1e9}

Everything else is derived from the catalogue: the worker runs a metric after those it needs and hands
it their values (``MetricContext.results``); the report's main table takes its columns (header, scope,
best direction), the tidy CSV its leading columns, ``compare`` its checks and ``--fail-on`` names,
``export`` the values it copies and ``load_results`` the columns every frame has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

#: which way a column is better; None: neither (a count such as params, a label)
BETTER = ("lower", "higher")
#: a column's scope: measured per cell (one value per device, batch, ...: a report column per device) or a
#: property of the variant (params, MACs, accuracy: one report column whatever the device)
SCOPES = ("cell", "variant")
#: how ``compare`` judges a column: ``sampled`` (raw samples: a significance test and the threshold),
#: ``threshold`` (one measurement per run: the threshold alone), ``exact`` (a count: any change beyond the
#: threshold, either way, regresses), ``points`` (accuracy: percentage points and the CI of the difference)
JUDGE_KINDS = ("sampled", "threshold", "exact", "points")
#: a metric's place among the others in tables and the CSV when it does not say (after the built-ins)
DEFAULT_ORDER = 100


@dataclass(frozen=True)
class Judge:
    """How ``compare`` judges a column: its kind (``JUDGE_KINDS``), default threshold and ``--fail-on`` name.

    ``default`` is in percent (relative change), or in points for ``points``. ``gating``: the threshold is
    in the default ``--fail-on``, so a regression fails the build unless the user names other metrics.
    ``unit``: the unit compare shows values in (default: the column's). ``samples``: the raw sample array
    a ``sampled`` check tests. ``rss_noise_floor``: a change smaller than this (in ``unit``) is noise when
    the value was rebuilt from the process RSS (CPU peak memory).
    """

    kind: str
    default: float
    name: str | None = None  # None: the column's name
    gating: bool = False
    unit: str | None = None
    samples: str | None = None
    rss_noise_floor: float = 0.0
    order: float = DEFAULT_ORDER  # position among compare's metrics (its reports list them in this order)
    #: an opt-in metric (``run --metric``): compare lists its threshold only when it is named in ``--fail-on``
    #: or a side measured it, so comparisons of runs without it read as before
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"unknown judge kind {self.kind!r}; valid choices: {', '.join(JUDGE_KINDS)}")
        if self.kind == "sampled" and not self.samples:
            raise ValueError("a sampled judge names its raw sample array (samples=...)")

    @property
    def threshold_unit(self) -> str:
        """``pt`` (percentage points) for accuracy-like metrics, else ``%`` (relative change)."""
        return "pt" if self.kind == "points" else "%"


@dataclass(frozen=True)
class Column:
    """One value a metric returns (a key of the record's ``metrics``), and how every reader treats it.

    ``header``: the report's main-table header (None: not a table column); ``scope``: ``cell`` (one column
    per device) or ``variant`` (one column before the devices). ``csv``: among the tidy CSV's leading
    columns (else with the remaining ones, sorted by name). ``frame``: every ``load_results`` frame has it
    (NaN where not measured). ``export``: copied into each exported benchmark. ``clock``: timed by the
    clock, so an INVALID latency verdict (``bench.validity``) invalidates it; a column that needs a clock
    column is timed too. ``replaces``: a column this one takes the place of in a table that has values for
    it (tokens/s for samples/s in sequence suites). ``metric`` and ``order`` are filled in by
    ``register_metric``.
    """

    name: str
    unit: str = ""
    better: str | None = None
    header: str | None = None
    scope: str = "cell"
    judge: Judge | None = None
    csv: bool = True
    frame: bool = False
    export: bool = False
    clock: bool = False
    replaces: str | None = None
    description: str = ""
    metric: str = ""
    order: float = DEFAULT_ORDER

    def __post_init__(self) -> None:
        if self.better is not None and self.better not in BETTER:
            raise ValueError(f"column {self.name!r}: better must be one of {', '.join(BETTER)} or None")
        if self.scope not in SCOPES:
            raise ValueError(f"column {self.name!r}: scope must be one of {', '.join(SCOPES)}")

    @property
    def compare_name(self) -> str | None:
        """The name ``--fail-on`` and compare's reports use, or None when compare does not judge it."""
        return None if self.judge is None else self.judge.name or self.name


@dataclass(frozen=True)
class MetricDecl:
    """A registered metric's declaration: its columns, the columns it needs, its place among the others."""

    name: str
    columns: tuple[Column, ...] = ()
    needs: tuple[str, ...] = ()
    order: float = DEFAULT_ORDER
    #: a derived metric (``derived_metric``): ``(values, run) -> dict``, computed from stored values when results
    #: are read, never run by the worker
    derive: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]] | None = None


_declared: dict[str, MetricDecl] = {}
_version = [0]  # bumped on every declaration: cached views rebuild


def declare(name: str, columns: Sequence[Column] = (), needs: Sequence[str] = (),
            order: float = DEFAULT_ORDER, derive: Any = None) -> MetricDecl:  # fmt: skip
    """Record metric ``name`` 's columns (``bench.registry.register_metric`` and ``derived_metric`` call this)."""
    for c in columns:
        other = producer(c.name, load=False)
        if other is not None and other != name:
            raise ValueError(f"column {c.name!r} of metric {name!r} is already produced by metric {other!r}")
    decl = MetricDecl(name, tuple(replace(c, metric=name, order=order) for c in columns), tuple(needs), order, derive)
    _declared[name] = decl
    _version[0] += 1
    return decl


def forget(name: str) -> None:
    """Remove metric ``name`` 's declaration (``bench.registry.unregister_metric``)."""
    if _declared.pop(name, None) is not None:
        _version[0] += 1


def _load() -> None:
    from bench.registry import METRICS

    METRICS.names()  # imports the built-in metric modules once: their decorators declare their columns


def metrics(load: bool = True) -> list[MetricDecl]:
    """Every declared metric, in report order (``order``, then name)."""
    if load:
        _load()
    return sorted(_declared.values(), key=lambda d: (d.order, d.name))


def declaration(name: str) -> MetricDecl | None:
    """The declaration of metric ``name``, or None (a metric registered without columns, a fake in a test)."""
    _load()
    return _declared.get(name)


def columns(where: Callable[[Column], bool] | None = None) -> list[Column]:
    """Every declared column in report order (metrics by ``order``, columns as each metric lists them)."""
    out = [c for d in metrics() for c in d.columns]
    return [c for c in out if where is None or where(c)]


def column(name: str) -> Column | None:
    """The declared column ``name``, or None."""
    return next((c for c in columns() if c.name == name), None)


def producer(name: str, load: bool = True) -> str | None:
    """The metric that produces column ``name``, or None."""
    return next((d.name for d in metrics(load) for c in d.columns if c.name == name), None)


def version() -> int:
    """A number that changes whenever a metric is declared or forgotten (for caches)."""
    return _version[0]


# --- what the readers derive -------------------------------------------------------------------------------


def judged() -> list[Column]:
    """Columns ``compare`` judges, in compare's order (``Judge.order``, then report order)."""
    out = columns(lambda c: c.judge is not None)
    return sorted(out, key=lambda c: c.judge.order if c.judge else 0)


def default_fail_on() -> str:
    """The default ``--fail-on``: every gating column's default threshold, e.g. ``latency:5%,macs:0%``."""
    return ",".join(f"{c.compare_name}:{c.judge.default:g}{c.judge.threshold_unit}" for c in judged()
                    if c.judge.gating)  # fmt: skip


def frame_columns() -> tuple[str, ...]:
    """Metric columns every ``load_results`` frame has, in report order."""
    return tuple(c.name for c in columns(lambda c: c.frame))


def csv_columns() -> tuple[str, ...]:
    """The tidy CSV's leading metric columns, in report order."""
    return tuple(c.name for c in columns(lambda c: c.csv))


def exported() -> tuple[str, ...]:
    """Columns copied into each exported benchmark, in report order."""
    return tuple(c.name for c in columns(lambda c: c.export))


def table_columns(scope: str) -> list[Column]:
    """The report main table's columns of one scope (those with a header), in report order."""
    return columns(lambda c: c.header is not None and c.scope == scope)


def timed(name: str) -> bool:
    """Whether column ``name`` is timed by the clock: declared ``clock``, or produced by a metric that needs
    a timed column (an INVALID latency invalidates it too)."""
    return _timed(name, set())


def _timed(name: str, seen: set[str]) -> bool:
    col = column(name)
    if col is None or name in seen:
        return False
    seen.add(name)
    decl = _declared.get(col.metric)
    return col.clock or any(_timed(n, seen) for n in (decl.needs if decl else ()))


def run_order(names: Iterable[str]) -> list[str]:
    """``names`` (metrics) reordered so that each runs after the metrics producing the columns it needs.

    Otherwise the given order is kept (a stable topological sort); a need no listed metric produces
    is left for the worker to report (the metric is then not run: ``missing_needs``).
    """
    names = list(dict.fromkeys(names))
    listed = set(names)
    after = {n: {p for p in (producer(c) for c in _needs(n)) if p in listed and p != n} for n in names}
    out: list[str] = []
    while len(out) < len(names):
        ready = next((n for n in names if n not in out and after[n] <= set(out)), None)
        if ready is None:  # a cycle: keep the rest as given (each then misses what it needs, and says so)
            out += [n for n in names if n not in out]
            break
        out.append(ready)
    return out


def _needs(name: str) -> tuple[str, ...]:
    decl = declaration(name)
    return decl.needs if decl else ()


def missing_needs(name: str, results: Any) -> list[str]:
    """The columns metric ``name`` needs that ``results`` (the cell's values so far) lacks or holds as None."""
    return [c for c in _needs(name) if results.get(c) is None]


# --- derived metrics: computed from stored values when results are read ------------------------------------


def derived_metric(name: str, *, columns: Sequence[Column], needs: Sequence[str] = (),
                   order: float = DEFAULT_ORDER) -> Callable[[Any], Any]:  # fmt: skip
    """Declare a metric computed from a cell's stored values and its run, never measured by the worker.

    The function is ``(values, run) -> dict``: ``values`` holds the cell's metrics (those it ``needs`` are
    there, not None) and the values of derived metrics declared before it; ``run`` is the run document
    (``env``, ``settings``...). Readers call :func:`derive` on every stored cell, so old runs get the
    columns on re-report. Returns the function unchanged.
    """

    def deco(fn: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]) -> Any:
        declare(name, columns, needs, order, derive=fn)
        return fn

    return deco


def derived() -> list[MetricDecl]:
    """The derived metrics, each after those whose columns it needs."""
    decls = {d.name: d for d in metrics() if d.derive is not None}
    return [decls[n] for n in run_order(decls)]


def derive(values: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """Every derived metric's values for one cell (``values``: its stored metrics; None for missing ones).

    A derived metric whose needs are missing gives nothing; its columns are then absent, never zero.
    """
    seen = dict(values)
    out: dict[str, Any] = {}
    for d in derived():
        if missing_needs(d.name, seen):
            continue
        got = dict(d.derive(seen, run))  # type: ignore[misc]
        seen.update(got)
        out.update(got)
    return out
