"""What ``compare`` judges and how much change counts: the metric specs and the ``--fail-on`` thresholds.

The specs are read from the metric catalogue (``bench.catalogue``): a metric's column that declares a
``Judge`` is compared, under the name, kind and default threshold it declares.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bench import catalogue
from bench.catalogue import Column
from bench.errors import UsageError


@dataclass(frozen=True)
class MetricSpec:
    """How one comparable metric is read from a results row and judged (from its ``bench.catalogue.Judge``)."""

    name: str  # the name --fail-on uses
    column: str  # the load_results column
    unit: str  # unit of the values shown
    kind: str  # how it is judged: a ``bench.compare.checks.CHECKS`` key ("sampled", "threshold", "exact", "points")
    threshold_unit: str  # "%" (relative change) or "pt" (percentage points)
    default: float  # threshold used when --fail-on does not name the metric
    higher_is_worse: bool = True
    #: a change smaller than this (in ``unit``) is noise when the value was rebuilt from the process RSS
    rss_noise_floor: float = 0.0
    samples: str | None = None  # the load_results column of the raw samples a "sampled" check tests
    gating: bool = False  # in the default --fail-on
    optional: bool = False  # opt-in (``Judge.optional``): listed only when named or measured

    @classmethod
    def of(cls, column: Column) -> MetricSpec:
        """The spec of a catalogue column that declares a ``Judge``."""
        j = column.judge
        if j is None:
            raise ValueError(f"column {column.name!r} declares no judge: compare does not judge it")
        samples = (
            None if j.samples is None else "latency_samples" if j.samples == "latency_ms" else f"{j.samples}_samples"
        )
        return cls(column.compare_name or column.name, column.name, column.unit if j.unit is None else j.unit, j.kind,
                   j.threshold_unit, j.default, column.better != "higher", j.rss_noise_floor, samples, j.gating,
                   j.optional)  # fmt: skip


class _Specs(Mapping[str, MetricSpec]):
    """compare's metrics by ``--fail-on`` name, in compare's order: every metric catalogue column with a judge
    (``bench.catalogue.judged``), read again whenever a metric is registered."""

    def __init__(self) -> None:
        self._version = -1
        self._specs: dict[str, MetricSpec] = {}

    def _current(self) -> dict[str, MetricSpec]:
        if self._version != catalogue.version() or not self._specs:
            specs = {}
            for c in catalogue.judged():
                spec = MetricSpec.of(c)
                specs[spec.name] = spec
            self._specs, self._version = specs, catalogue.version()
        return self._specs

    def __getitem__(self, name: str) -> MetricSpec:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"METRICS({list(self)})"


#: the metrics compare judges, by ``--fail-on`` name (latency, memory, macs, params, accuracy, and any metric
#: whose catalogue column declares a ``Judge``)
METRICS: Mapping[str, MetricSpec] = _Specs()


def default_fail_on() -> str:
    """The default ``--fail-on``: the gating metrics' default thresholds (``latency:5%,memory:5%,macs:0%,accuracy:1pt``)."""
    return catalogue.default_fail_on()


def _fail_on_syntax() -> str:
    by_unit = {u: [n for n, s in METRICS.items() if s.threshold_unit == u] for u in ("%", "pt")}
    return (f"expected comma-separated METRIC:VALUE with VALUE in % for {', '.join(by_unit['%'])} and in pt for "
            f"{', '.join(by_unit['pt'])}, e.g. --fail-on {default_fail_on()}")  # fmt: skip


def __getattr__(name: str) -> Any:  # names this module had as constants, now read from the metric catalogue
    if name == "DEFAULT_FAIL_ON":
        return default_fail_on()
    if name == "RSS_NOISE_FLOOR_MB":
        from bench.metrics.memory import RSS_NOISE_FLOOR_MB

        return RSS_NOISE_FLOOR_MB
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Threshold:
    """The smallest change of one metric that counts: ``value`` in ``unit`` (``%`` relative, ``pt`` points).

    ``gating``: whether a regression of this metric fails the build (metrics that ``--fail-on`` does
    not name are still compared, with their default threshold, but only reported).
    """

    metric: str
    value: float
    unit: str
    gating: bool = True

    def exceeded_by(self, change: float) -> bool:
        """Whether a change (in this threshold's unit, either sign) is beyond the threshold."""
        return abs(change) > self.value

    def __str__(self) -> str:
        return f"{self.metric}:{self.value:g}{self.unit}"


def parse_fail_on(text: str | None) -> tuple[Threshold, ...]:
    """``"latency:5%,macs:0%"`` -> one ``Threshold`` per metric (named ones gate, the rest only report).

    Raises ``UsageError`` (exit 2) with the syntax and the valid metrics on any fault.
    """
    text = default_fail_on() if text is None else text
    named: dict[str, Threshold] = {}
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"([A-Za-z_]+)\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pt)", part)
        if not m:
            raise UsageError(f"bad --fail-on entry {part!r}: {_fail_on_syntax()}")
        name, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3)
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"bad --fail-on metric {name!r}{hint}: valid metrics are {', '.join(METRICS)}; {_fail_on_syntax()}"
            )
        if unit != METRICS[name].threshold_unit:
            raise UsageError(
                f"bad --fail-on entry {part!r}: {name} takes {METRICS[name].threshold_unit}; {_fail_on_syntax()}"
            )
        if name in named:
            raise UsageError(f"bad --fail-on: {name} given twice; {_fail_on_syntax()}")
        named[name] = Threshold(name, value, unit)
    return tuple(named.get(n) or Threshold(n, s.default, s.threshold_unit, gating=False) for n, s in METRICS.items())
