"""What ``compare`` judges and how much change counts: the metric specs and the ``--fail-on`` thresholds."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from bench.errors import UsageError

DEFAULT_FAIL_ON = "latency:5%,memory:5%,macs:0%,accuracy:1pt"
#: CPU peak memory is rebuilt from RSS (``memory_method`` ``rss_*``), which moves between identical
#: runs even with malloc's thresholds fixed (bench.metrics._malloc): across 18 processes each,
#: densenet121 tiny read 34.6-46.6 MB, vgg11 tiny 41.2-48.7 MB, resnet10t 30.7-35.5 MB. Changes
#: smaller than this are noise whatever the percentage. CUDA peaks come from the allocator: no floor.
RSS_NOISE_FLOOR_MB = 16.0


@dataclass(frozen=True)
class MetricSpec:
    """How one comparable metric is read from a results row and judged."""

    name: str  # the name --fail-on uses
    column: str  # the load_results column
    unit: str  # unit of the values shown
    kind: str  # how it is judged: a ``bench.compare.checks.CHECKS`` key ("sampled", "single", "exact", "points")
    threshold_unit: str  # "%" (relative change) or "pt" (percentage points)
    default: float  # threshold used when --fail-on does not name the metric
    higher_is_worse: bool = True
    #: a change smaller than this (in ``unit``) is noise when the value was rebuilt from the process RSS
    rss_noise_floor: float = 0.0


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("latency", "latency_p50_ms", "ms", "sampled", "%", 5.0),
        MetricSpec("memory", "peak_memory_mb", "MB", "single", "%", 5.0, rss_noise_floor=RSS_NOISE_FLOOR_MB),
        MetricSpec("macs", "macs", "", "exact", "%", 0.0),
        MetricSpec("params", "params", "", "exact", "%", 0.0),
        MetricSpec("accuracy", "accuracy_mean", "pt", "points", "pt", 1.0, higher_is_worse=False),
    )
}

_FAIL_ON_SYNTAX = (
    "expected comma-separated METRIC:VALUE with VALUE in % for latency, memory, macs, params and in pt for "
    f"accuracy, e.g. --fail-on {DEFAULT_FAIL_ON}"
)


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
    text = DEFAULT_FAIL_ON if text is None else text
    named: dict[str, Threshold] = {}
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"([A-Za-z_]+)\s*:\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pt)", part)
        if not m:
            raise UsageError(f"bad --fail-on entry {part!r}: {_FAIL_ON_SYNTAX}")
        name, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3)
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"bad --fail-on metric {name!r}{hint}: valid metrics are {', '.join(METRICS)}; {_FAIL_ON_SYNTAX}"
            )
        if unit != METRICS[name].threshold_unit:
            raise UsageError(
                f"bad --fail-on entry {part!r}: {name} takes {METRICS[name].threshold_unit}; {_FAIL_ON_SYNTAX}"
            )
        if name in named:
            raise UsageError(f"bad --fail-on: {name} given twice; {_FAIL_ON_SYNTAX}")
        named[name] = Threshold(name, value, unit)
    return tuple(named.get(n) or Threshold(n, s.default, s.threshold_unit, gating=False) for n, s in METRICS.items())
