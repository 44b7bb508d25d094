"""Result files of older schema versions load through one step per version (``bench.store.migrate``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _published import V1_RUNS

from bench.errors import StoreError
from bench.result import CellResult
from bench.store import STEPS, load_results, load_run, readable_versions, schema

PUBLISHED = sorted((Path(__file__).resolve().parents[2] / "results").glob("*/*.json"))


@pytest.mark.parametrize("path", V1_RUNS, ids=lambda p: p.stem)
def test_files_of_version_1_load_as_written(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and schema.SCHEMA_VERSION == 2 and readable_versions(2) == [1, 2]
    doc = load_run(path)
    assert doc == raw | {"schema_version": 2}  # the step from 1 to 2 changes nothing else (one process per record)
    assert [CellResult.from_dict(r).to_dict() for r in doc["records"]] == raw["records"]


def _v1_to_v2(doc: dict) -> dict:
    """A made-up version 2 that renamed a metric: what a real step would look like."""
    for r in doc["records"]:
        if "throughput" in r["metrics"]:
            r["metrics"]["samples_per_s"] = r["metrics"].pop("throughput")
    return doc


def test_a_new_version_upgrades_older_files_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old.json"
    shutil.copy(PUBLISHED[0], old)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(STEPS, 2, _v1_to_v2)
    doc = load_run(old)
    assert doc["schema_version"] == 3
    assert all("throughput" not in r["metrics"] and "samples_per_s" in r["metrics"] for r in doc["records"])
    assert "samples_per_s" in load_results(old).columns
    newer = json.loads(old.read_text()) | {"schema_version": 4}
    old.write_text(json.dumps(newer))
    with pytest.raises(StoreError, match=r"schema_version 4 is not supported \(this aigc-bench reads 1, 2, 3\)"):
        load_run(old)


def test_versions_without_a_step_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "zero.json"
    f.write_text(json.dumps(json.loads(PUBLISHED[0].read_text()) | {"schema_version": 0}))
    with pytest.raises(StoreError, match=r"schema_version 0 is not supported \(this aigc-bench reads 1, 2\)$"):
        load_run(f)
