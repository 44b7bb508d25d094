"""Reading older result files: one step per schema version, applied in turn until a document is current.

A change to what a run file stores bumps ``bench.store.schema.SCHEMA_VERSION`` and adds the step from the
version before it to ``STEPS``: files written earlier then still load (``validate`` upgrades them before
checking them against the current schema), and nothing else in the code needs to know old shapes. Within a
version, records written before a field existed are read with its default (``bench.result.CellResult.from_dict``:
a key without ``mode`` is an ``infer`` cell).

Versions: 1, the first; 2 (``run --repeat``, ``bench.repeat``): a record's latency may come from several
processes (``samples.latency_process_ms``, one median per process; ``samples.latency_ms`` pools them), which
``compare`` tests per process. A reader of version 1 would take the pooled samples for one process's, so
the version says it cannot; a version-1 record is one process, as it stands (the step changes nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``version -> step``: a step takes a document of ``version`` and returns it in the form of ``version + 1``
#: (``schema_version`` updated). Steps see documents whose common fields were already checked.
STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: every record of a version-1 file measured latency in one process, as version 2 reads a
    record without ``samples.latency_process_ms``; nothing to change."""
    return doc


STEPS[1] = _v1_to_v2


def readable_versions(current: int) -> list[int]:
    """The schema versions this aigc-bench reads: the current one and every one a chain of steps upgrades."""
    versions = [current]
    while versions[0] - 1 in STEPS:
        versions.insert(0, versions[0] - 1)
    return versions


def upgrade(doc: dict[str, Any], current: int) -> dict[str, Any]:
    """``doc`` (of a readable version) in the current version's form, each step applied in turn."""
    version = doc["schema_version"]
    while version < current:
        doc = STEPS[version](doc)
        version += 1
        doc["schema_version"] = version
    return doc
