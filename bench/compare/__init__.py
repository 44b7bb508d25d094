"""Regression checks: join two sets of runs cell by cell and give every metric a verdict.

Comparison is data (pytest-benchmark's ``RegressionCheck`` idea): ``compare`` returns a frozen
``ComparisonReport`` that knows its verdicts, ``to_dict()`` and ``exit_code``; the CLI only renders it.

How a verdict is reached, per metric:

Which metrics are compared, and how, is declared with each metric (``bench.catalogue.Judge``); the five
below are the built-in ones.

* **latency** -- from the raw samples of both runs: a two-sided Mann-Whitney U test (p-values
  corrected for the number of cells compared, Holm by default, Benjamini-Hochberg optionally) and a
  seeded bootstrap confidence interval of the ratio of medians. A change is *significant* when the
  corrected p-value is below ``alpha`` and the interval excludes 1. It is a regression (or an
  improvement) only when it is significant **and** the median moved by more than the ``--fail-on``
  threshold; beyond the threshold but not significant is "too noisy"; significant but within the
  threshold is "unchanged". Samples whose IQR/median exceeds 0.1 on either side (the machine was
  disturbed during the run) make a change "too noisy" even when it is significant.
  **Machine speed.** Every latency measurement is bracketed by a fixed reference network (the
  machine-speed reference, ``bench.metrics.latency.ReferenceNet``). Between runs of the same
  environment, a latency change is also computed relative to it (current samples divided by the
  cell's reference ratio, the references resampled in the bootstrap). The reference can only
  *veto* a verdict, never make one: a change counts only when it also holds relative to the
  machine, in the same direction, beyond the threshold and significant (the larger p-value of the
  two is the one corrected). So a machine that is 15% slower today (a busy neighbour VM, a lower
  clock) is not a 15% regression of every model, while a code change, which does not move the
  reference, still shows. When the reference moved by x%, a change relative to it must also exceed
  the threshold by ``SPEED_SENSITIVITY * x%``, else it is "too noisy" (models follow the machine only
  roughly). A reference that moved more than ``UNSTABLE_SPEED_DRIFT`` during one
  measurement makes that cell "too noisy". Across an environment change (threads, CPU, torch) the
  reference moves with the change itself, so nothing is adjusted there; ``--no-speed-adjust``
  turns the adjustment off.
* **memory** -- one measurement per run, so the threshold alone decides (no test is possible); on
  CPU, where the peak is rebuilt from RSS, the change must also exceed ``RSS_NOISE_FLOOR_MB``.
* **macs**, **params** -- exact counts: any change beyond the threshold (``0%``: any change at all,
  in either direction) is a regression, because a fixed model whose count moves is a changed model
  or a changed counter, and the baseline must be re-saved on purpose.
* **accuracy** -- in percentage points; when both runs carry a confidence interval, a drop beyond
  the threshold must also exceed the interval of the difference, else it is "too noisy".

When the machines differ (``bench.env.COMPARABLE``), the verdicts are computed and shown but marked
environment-changed and never fail the build, unless the caller allows environment changes.

The package, along its seams (data flows down the list):

* ``stats`` -- Mann-Whitney U, the bootstrap of a median ratio, Holm / Benjamini-Hochberg (pure numbers);
* ``thresholds`` -- the metrics compared (``METRICS``, read from the metric catalogue ``bench.catalogue``) and
  ``--fail-on`` (``Threshold``, ``parse_fail_on``);
* ``model`` -- the verdict model: ``Verdict``, ``MetricComparison``, ``CellComparison``, ``ComparisonReport``;
* ``loading`` -- one side: ``load_side`` (run file, folder or baseline name), row keys and values;
* ``checks`` -- one class per way of judging (``SampledCheck``, ``ThresholdCheck``, ``ExactCheck``,
  ``PointsCheck``), chosen by ``MetricSpec.kind``;
* ``judge`` -- ``compare``: join the sides cell by cell, run every check, correct the latency tests together;
* ``render`` -- ``to_markdown`` (a pull-request comment) and ``print_table`` / ``table_text`` (the terminal).

Every name below stays importable from ``bench.compare``.
"""

from __future__ import annotations

from typing import Any

from bench.compare.checks import (
    CHECKS,
    SPEED_SENSITIVITY,
    UNSTABLE_SPEED_DRIFT,
    CellPair,
    Check,
    ExactCheck,
    Judging,
    Pending,
    PointsCheck,
    SampledCheck,
    ThresholdCheck,
    check_for,
    speed_refs,
)
from bench.compare.judge import compare
from bench.compare.loading import KEY_FIELDS, allocator_changes, env_changes, load_side, row_key
from bench.compare.model import (
    ADDED,
    COMPARED,
    FAILED,
    NOT_COMPARED,
    REMOVED,
    CellComparison,
    ComparisonReport,
    EnvChange,
    MetricComparison,
    RunInfo,
    RunSet,
    Verdict,
)
from bench.compare.render import (
    cell_label,
    format_change,
    format_value,
    print_table,
    speed_text,
    table_text,
    to_markdown,
    verdict_text,
)
from bench.compare.stats import (
    CORRECTIONS,
    N_BOOTSTRAP,
    RESAMPLE_MAX,
    UNSTABLE_IQR_OVER_MEDIAN,
    SampleShift,
    _boot_medians,
    adjust_pvalues,
    cell_seed,
    min_p_value,
    sample_shift,
)
from bench.compare.thresholds import METRICS, MetricSpec, Threshold, default_fail_on, parse_fail_on
from bench.metrics.memory import RSS_NOISE_FLOOR_MB

__all__ = [
    "ADDED",
    "CHECKS",
    "COMPARED",
    "CORRECTIONS",
    "FAILED",
    "KEY_FIELDS",
    "METRICS",
    "NOT_COMPARED",
    "N_BOOTSTRAP",
    "REMOVED",
    "RESAMPLE_MAX",
    "RSS_NOISE_FLOOR_MB",
    "SPEED_SENSITIVITY",
    "UNSTABLE_IQR_OVER_MEDIAN",
    "UNSTABLE_SPEED_DRIFT",
    "CellComparison",
    "CellPair",
    "Check",
    "ComparisonReport",
    "EnvChange",
    "ExactCheck",
    "Judging",
    "MetricComparison",
    "MetricSpec",
    "Pending",
    "PointsCheck",
    "RunInfo",
    "RunSet",
    "SampleShift",
    "SampledCheck",
    "Threshold",
    "ThresholdCheck",
    "Verdict",
    "_boot_medians",
    "adjust_pvalues",
    "allocator_changes",
    "cell_label",
    "cell_seed",
    "check_for",
    "compare",
    "default_fail_on",
    "env_changes",
    "format_change",
    "format_value",
    "load_side",
    "min_p_value",
    "parse_fail_on",
    "print_table",
    "row_key",
    "sample_shift",
    "speed_refs",
    "speed_text",
    "table_text",
    "to_markdown",
    "verdict_text",
]


def __getattr__(name: str) -> Any:  # ``DEFAULT_FAIL_ON`` is read from the metric catalogue when asked for
    if name == "DEFAULT_FAIL_ON":
        return default_fail_on()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
