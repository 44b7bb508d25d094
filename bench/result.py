"""What one cell produced: a ``Status`` and a frozen ``CellResult``, the record of docs/results-schema.md.

The worker builds a ``CellResult``; its JSON form (``to_dict``) is what crosses the process boundary and
what a run file stores, unchanged from schema version 1; the store, merge, export, compare and the
report read records back with ``from_dict``. pandas appears only at the edges: ``row`` is one flat
``load_results`` row, and :func:`key_of_row` reads a cell's key back from such a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from bench.spec import CellKey, CellSpec

#: the fields of a cell's key (``CellKey``), in the order the schema lists them: the join key of everything
KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CellKey))


class Status(str, Enum):
    """How a cell ended. A ``str`` enum: ``Status.OK == "ok"``, and JSON stores the plain value."""

    OK = "ok"
    FAILED = "failed"  # the model or a metric raised, or the worker died (out of memory)
    TIMEOUT = "timeout"  # the stall timeout or its hard cap fired (bench.executors)
    SKIPPED = "skipped"  # the device or dtype cannot run it: not an error

    def __str__(self) -> str:
        return self.value

    @property
    def broken(self) -> bool:
        """Failed or timed out: what ``--retry-failed`` runs again, exit 3 counts and compare calls failed."""
        return self in BROKEN


#: the values a record's ``status`` may take, in the schema's order
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
#: statuses of a cell that did not finish
BROKEN: tuple[Status, ...] = (Status.FAILED, Status.TIMEOUT)

#: the record fields this version knows, in the order a record is written
_FIELDS = ("key", "variant", "status", "error", "metrics", "samples", "notes", "started_at", "duration_s")


def variant_dict(cell: CellSpec) -> dict[str, Any]:
    """The variant part of a record: how the model was built and how close it is to its tier."""
    v = cell.variant
    return {
        "builder": v.builder,
        "model_args": v.args,
        "target_params": v.target_params,
        "achieved_params": v.achieved_params,
        "tolerance": v.tolerance,
        "knob": v.knob,
        "knob_value": v.knob_value,
    }


@dataclass(frozen=True)
class CellResult:
    """One cell's record: its key, how it ended, what its metrics measured, raw samples and notes.

    ``metrics`` is flat (name -> number, string, bool or None; units in the names, see the metric
    catalogue ``bench.catalogue``), ``samples`` holds raw arrays (``latency_ms``...). ``extra`` keeps the
    record fields this version does not know (a newer writer's), so reading and writing a record loses
    nothing. Mappings are read-only; ``to_dict`` returns fresh ones.
    """

    key: CellKey
    status: Status
    variant: Mapping[str, Any] | None = None
    error: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    started_at: str | None = None
    duration_s: float | None = None
    traceback: str | None = None  # the innermost frames of a failed cell's exception
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "status", Status(self.status))
        if self.variant is not None:
            set_(self, "variant", MappingProxyType(dict(self.variant)))
        set_(self, "metrics", MappingProxyType(dict(self.metrics)))
        set_(self, "samples", MappingProxyType({k: tuple(v) for k, v in self.samples.items()}))
        set_(self, "notes", tuple(self.notes))
        set_(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[Any, ...]:  # read-only mappings do not pickle: go through the JSON form
        return (CellResult.from_dict, (self.to_dict(),))

    @classmethod
    def pending(cls, cell: CellSpec, status: Status | str, error: str | None = None) -> CellResult:
        """A result with no measurements yet (also the record of a failure, timeout or skip)."""
        return cls(key=cell.key, status=Status(status), variant=variant_dict(cell), error=error)

    @property
    def id(self) -> str:
        """The cell's id (``CellKey.id``): unique within a suite."""
        return self.key.id

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def with_metrics(self, values: Mapping[str, Any]) -> CellResult:
        """A copy with ``values`` added to (or replacing entries of) ``metrics``."""
        return replace(self, metrics={**self.metrics, **values})

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (docs/results-schema.md): fresh, JSON-ready containers."""
        out: dict[str, Any] = {
            "key": self.key.to_dict(),
            "variant": _thaw(self.variant) if self.variant is not None else None,
            "status": self.status.value,
            "error": self.error,
            "metrics": dict(self.metrics),
            "samples": {k: list(v) for k, v in self.samples.items()},
            "notes": list(self.notes),
            "started_at": self.started_at,
            "duration_s": self.duration_s,
        }
        if self.traceback is not None:
            out["traceback"] = self.traceback
        out.update(_thaw(self.extra))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellResult:
        """A record as stored, validated (``bench.store.validate``); older records get today's defaults
        (a key without ``mode`` is an ``infer`` cell; missing lists are empty)."""
        key = dict(d["key"])
        key["mode"] = key.get("mode") or "infer"  # as cell_id reads it
        known = {*_FIELDS, "traceback"}
        return cls(
            key=CellKey.from_dict(key),
            status=Status(d["status"]),
            variant=d.get("variant"),
            error=d.get("error"),
            metrics=d.get("metrics") or {},
            samples=d.get("samples") or {},
            notes=tuple(d.get("notes") or ()),
            started_at=d.get("started_at"),
            duration_s=d.get("duration_s"),
            traceback=d.get("traceback"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def row(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One flat ``load_results`` row: key fields, every metric, ``latency_samples``, status, error, notes,
        the variant's counts, then ``context`` (the run's id, profile...) and the other sample arrays as
        ``<name>_samples``."""
        variant = self.variant or {}
        row: dict[str, Any] = {
            **{f: getattr(self.key, f) for f in KEY_FIELDS},
            **self.metrics,
            "latency_samples": list(self.samples.get("latency_ms", ())),
            "status": self.status.value,
            "error": self.error,
            "notes": "; ".join(self.notes),
            "target_params": variant.get("target_params"),
            "achieved_params": variant.get("achieved_params"),
            "builder": variant.get("builder"),
            **(context or {}),
        }
        for name, values in self.samples.items():
            if name != "latency_ms":
                row[f"{name}_samples"] = list(values)
        return row


def _thaw(x: Any) -> Any:
    """Read-only mappings (and the tuples ``CellResult`` keeps) back to JSON's dicts and lists."""
    if isinstance(x, Mapping):
        return {k: _thaw(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_thaw(v) for v in x]
    return x


def cell_id(record: Mapping[str, Any]) -> str:
    """The cell id (``CellKey.id``) of a stored record, read as ``CellResult.from_dict`` reads its key."""
    key = dict(record["key"])
    key["mode"] = key.get("mode") or "infer"
    return CellKey.from_dict(key).id


def results_of(records: Iterable[Mapping[str, Any] | CellResult]) -> list[CellResult]:
    """Records (stored dicts or results) as ``CellResult`` s."""
    return [r if isinstance(r, CellResult) else CellResult.from_dict(r) for r in records]


def plain(value: Any) -> Any:
    """A value from a pandas frame as a plain Python value: NaN -> None, whole floats -> int, numpy -> Python."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def key_of_row(row: Mapping[str, Any]) -> CellKey:
    """The ``CellKey`` of a ``load_results`` row (frames turn integer columns with gaps into floats)."""
    d = {f: plain(row.get(f)) for f in KEY_FIELDS}
    d["mode"] = d["mode"] or "infer"
    return CellKey.from_dict(d)
