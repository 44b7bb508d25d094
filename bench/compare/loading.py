"""One side of a comparison: load it (a run file, a folder or a baseline name), key its rows, read its values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.compare.model import EnvChange, RunInfo, RunSet
from bench.env import COMPARABLE
from bench.errors import UsageError
from bench.numbers import finite
from bench.result import KEY_FIELDS as RESULT_KEY_FIELDS
from bench.result import key_of_row, plain
from bench.spec import CellKey

#: the join key of two runs, in the order the schema lists it (``bench.result.KEY_FIELDS``)
KEY_FIELDS = RESULT_KEY_FIELDS


def load_side(spec: str | Path, baselines_dir: Path | str | None = None) -> RunSet:
    """A run file, a folder of run files, or (where no such path exists) a baseline name.

    Every file is read and validated once (``bench.store.load_runs``): a malformed one, even in a
    folder, is a ``StoreError`` (exit 2), never left out of the comparison.
    """
    from bench.baselines import DEFAULT_DIR, resolve
    from bench.compare.hosts import rows_with_hosts
    from bench.store import iter_rows, load_runs, show_path

    runs = load_runs(resolve(spec, baselines_dir or DEFAULT_DIR))
    if not runs:
        raise UsageError(f"{show_path(spec)}: no aigc-bench run files found")
    paths = [p for p, _ in runs]
    docs = [d for _, d in runs]
    # no pandas: compare reads rows; each knows the host that measured it (bench.compare.hosts)
    rows = tuple(row for path, doc in runs for row in rows_with_hosts(doc, iter_rows(doc, path)))
    envs = [d.get("env") or {} for d in docs]
    info = RunInfo(
        label=str(spec),
        paths=tuple(str(p) for p in paths),
        run_ids=tuple(d["run_id"] for d in docs),
        suites=tuple(sorted({d["suite"] for d in docs})),
        profiles=tuple(sorted({d["profile"] for d in docs})),
        suite_hashes=tuple(sorted({d["suite_hash"] for d in docs})),
        host=envs[0].get("host"),
        started_at=min((d.get("started_at") or "" for d in docs), default=None) or None,
    )
    return RunSet(info, envs[0], rows)


def _rows_by_key(rs: RunSet) -> dict[CellKey, dict[str, Any]]:
    out: dict[CellKey, dict[str, Any]] = {}
    for row in rs.rows:
        key = row_key(row)
        if key in out:
            raise UsageError(
                f"cell {key.id} appears twice in {rs.info.label} ({out[key].get('path')} and {row.get('path')}); "
                "merge shards with `aigc-bench merge` or name one run file"
            )
        out[key] = row
    return out


def env_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[EnvChange, ...]:
    """The ``COMPARABLE`` environment fields that differ."""
    return tuple(EnvChange(f, baseline.get(f), current.get(f)) for f in COMPARABLE if baseline.get(f) != current.get(f))


def allocator_changes(baseline: RunSet, current: RunSet) -> tuple[EnvChange, ...]:
    """The malloc regime its latency was measured under (``latency_malloc``; ``bench.allocator``), if it
    differs: steady vs system malloc is up to 20% on some models, so it blocks like a change of machine."""
    from bench.allocator import regime_of

    def regimes(side: RunSet) -> str | None:
        found = sorted({r for r in (regime_of(row.get("latency_malloc")) for row in side.rows) if r is not None})
        return "+".join(found) or None  # None: no latency measured, or too old to say

    b, c = regimes(baseline), regimes(current)
    return (EnvChange("allocator", b, c),) if b and c and b != c else ()


def _clean(v: Any) -> Any:
    """A frame value as a plain Python value: NaN -> None, whole floats -> int (``bench.result.plain``)."""
    return plain(v)


def row_key(row: Mapping[str, Any]) -> CellKey:
    """The ``CellKey`` of a ``load_results`` row (``bench.result.key_of_row``)."""
    return key_of_row(row)


def _value(row: Mapping[str, Any], column: str) -> float | None:
    return finite(row.get(column))


def _samples(row: Mapping[str, Any], column: str) -> list[float]:
    v = row.get(column)
    return [float(x) for x in v] if isinstance(v, list | tuple) else []
