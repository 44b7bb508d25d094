"""Join the shard files of one run (``aigc-bench run --shard K/N``) into one run file.

Shards must be disjoint runs of the same suite definition and profile; the merged file is a valid
run file (schema version 1) with the first shard's environment, ``settings.shard`` null and the
records sorted by cell id. An existing file is never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.env import COMPARABLE
from bench.errors import StoreError, UsageError
from bench.result import CellResult, results_of


def merge_runs(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """Merge validated run documents, each given with its name (for errors).

    Returns the merged document (``run_id`` is the first shard's until ``merge_files`` names the file)
    and warnings a user should see (missing shards, shards run on different machines or settings).
    Raises ``UsageError`` when the shards cannot be one run.
    """
    if not runs:
        raise UsageError("merge needs at least one run file")
    first_name, first = runs[0]
    for name, doc in runs[1:]:
        for field, what in (("suite", "suites"), ("suite_hash", "suite definitions"), ("profile", "profiles")):
            if doc[field] != first[field]:
                raise UsageError(f"cannot merge {first_name} and {name}: different {what} "
                                 f"({field} {first[field]!r} vs {doc[field]!r}); rerun the stale shard")  # fmt: skip
    owner: dict[str, str] = {}
    results: list[CellResult] = []
    for name, doc in runs:
        for r in results_of(doc["records"]):
            if r.id in owner:
                where = "twice in " + name if owner[r.id] == name else f"in both {owner[r.id]} and {name}"
                raise UsageError(f"cannot merge: cell {r.id} is {where} (overlapping shards); merge each shard once")
            owner[r.id] = name
            results.append(r)
    records = [r.to_dict() for r in sorted(results, key=lambda r: r.id)]

    warnings = _warnings(runs)
    settings = {**(first.get("settings") or {}), "shard": None, "cells": len(records)}
    starts = [d.get("started_at") for _, d in runs if d.get("started_at")]
    ends = [d.get("finished_at") for _, d in runs]
    merged: dict[str, Any] = {
        "schema_version": first["schema_version"],
        "kind": first["kind"],
        "run_id": first["run_id"],
        "suite": first["suite"],
        "suite_hash": first["suite_hash"],
        "suite_definition": first.get("suite_definition", {}),
        "profile": first["profile"],
        "settings": settings,
        "env": first["env"],
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends and all(ends) else None,  # an unfinished shard leaves the run unfinished
        "merged_from": [
            {
                "run_id": d["run_id"],
                "shard": (d.get("settings") or {}).get("shard"),
                "host": (d.get("env") or {}).get("host"),
                "cells": len(d["records"]),
            }
            for _, d in runs
        ],  # fmt: skip
        "records": records,
    }
    if any("analysis" in d for _, d in runs):
        from bench.runner import analyse_run

        analysis = analyse_run(records)  # a fit over every length needs the union of the shards
        if analysis:
            merged["analysis"] = analysis
    return merged, warnings


def _warnings(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    out: list[str] = []
    first_name, first = runs[0]
    shards = [(d.get("settings") or {}).get("shard") for _, d in runs]
    parsed = [tuple(int(x) for x in s.split("/")) for s in shards if isinstance(s, str) and "/" in s]
    if parsed:
        ns = {n for _, n in parsed}
        if len(ns) > 1:
            out.append(f"shards of different splits: {', '.join(sorted(s for s in shards if s))}")
        else:
            (n,) = ns
            have = {k for k, _ in parsed}
            missing = [k for k in range(1, n + 1) if k not in have]  # n <= bench.store.MAX_SHARDS
            if missing:
                shown = ", ".join(f"{k}/{n}" for k in missing[:20]) + (
                    f" and {len(missing) - 20} more" if len(missing) > 20 else ""
                )
                out.append(f"shards missing: {shown} (the merged run is partial)")
    if not all(d.get("finished_at") for _, d in runs):
        unfinished = [name for name, d in runs if not d.get("finished_at")]
        out.append(f"unfinished (killed?) shard files: {', '.join(unfinished)}")
    for name, doc in runs[1:]:
        env = doc.get("env") or {}
        diff = [
            f"{f} {first['env'].get(f)!r} vs {env.get(f)!r}" for f in COMPARABLE if env.get(f) != first["env"].get(f)
        ]
        if diff:
            out.append(
                f"{name} ran in another environment than {first_name} ({'; '.join(diff)}); the merged file keeps the first"
            )
        keys = ("devices", "dtypes", "batch_sizes", "threads", "tiers", "families")
        s0, s1 = first.get("settings") or {}, doc.get("settings") or {}
        other = [k for k in keys if s0.get(k) != s1.get(k)]
        if other:
            out.append(f"{name} was run with other settings than {first_name} ({', '.join(other)})")
    return out


def merge_files(paths: Sequence[Path | str], out: Path | str) -> tuple[Path, dict[str, Any], list[str]]:
    """Merge run files (or the run files under folders) into ``out``, which must not exist.

    Every input is read and validated once, before anything is written; a malformed file, even in a
    folder, is a ``StoreError`` (never skipped). ``out`` appears complete or not at all (mode
    ``0o666 & ~umask``). Returns the path, the document and warnings.
    """
    from bench.store import create_json, load_runs, refuse_existing, show_path

    out = Path(out)
    taken = f"{show_path(out)} already exists; merge never overwrites a file, choose another -o"
    refuse_existing(out, taken)  # before reading every shard
    if not paths:
        raise UsageError("merge needs at least one run file")
    runs: list[tuple[str, dict[str, Any]]] = []
    for given in paths:  # a shard that yields nothing (an empty folder) must not leave the merge partial unseen
        found = load_runs(given)
        if not found:
            raise StoreError(f"{show_path(given)}: no aigc-bench run files found")
        runs += [(show_path(p), doc) for p, doc in found]
    doc, warnings = merge_runs(runs)
    doc["run_id"] = f"{out.stem}-{doc['suite_hash'][:6]}"
    create_json(out, doc, exists=taken, what="merged run")
    return out, doc, warnings
