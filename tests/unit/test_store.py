"""The result store: schema validation, atomic writes, never overwriting, load_results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.errors import StoreError
from bench.store import COLUMNS, RunWriter, atomic_write_json, load_results, load_run, reserve_path


def _record(model: str, status: str = "ok", p50: float = 10.0, batch: int = 1) -> dict:
    return {
        "key": {"suite": "s", "tier": "tiny", "family": "fam", "model": model, "device": "cpu", "dtype": "fp32",
                "batch_size": batch, "input_shape": [3, 8, 8], "seq_len": None, "mode": "infer"},
        "variant": {"builder": "x:y", "model_args": {}, "target_params": 100, "achieved_params": 98},
        "status": status,
        "error": None if status == "ok" else "boom",
        "metrics": {"params": 98, "macs": 1000, "flops": 2000, "latency_p50_ms": p50, "throughput": batch / p50 * 1e3},
        "samples": {"latency_ms": [p50 - 1, p50, p50 + 1]},
        "notes": [],
    }  # fmt: skip


def _header() -> dict:
    return {"run_id": "r1", "suite": "s", "suite_hash": "abc", "suite_definition": {}, "profile": "quick",
            "settings": {}, "env": {"host": "h"}, "started_at": "2026-01-01T00:00:00Z"}  # fmt: skip


def test_reserve_path_never_reuses_a_name(tmp_path: Path) -> None:
    a = reserve_path(tmp_path, "s", host="h")
    b = reserve_path(tmp_path, "s", host="h")
    assert a != b and a.exists() and b.exists()
    assert a.parent == tmp_path / "s"


def test_round_trip_and_columns(tmp_path: Path) -> None:
    path = reserve_path(tmp_path, "s", host="h")
    w = RunWriter(path, _header())
    w.add(_record("m1", p50=10.0))
    w.add(_record("m2", status="failed"))
    w.finish()
    doc = load_run(path)
    assert doc["finished_at"] is not None and len(doc["records"]) == 2
    df = load_results(tmp_path)  # a folder, searched recursively
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(df) == 2
    row = df[df.model == "m1"].iloc[0]
    assert row.latency_p50_ms == 10.0 and row.latency_samples == [9.0, 10.0, 11.0]
    assert row.input_shape == (3, 8, 8) and row.status == "ok" and row.run_id == "r1"
    assert df[df.model == "m2"].iloc[0].error == "boom"


def test_each_record_is_on_disk_before_the_next(tmp_path: Path) -> None:
    """A killed run keeps every finished cell: the file is complete after each add()."""
    path = reserve_path(tmp_path, "s", host="h")
    w = RunWriter(path, _header())
    for i in range(3):
        w.add(_record(f"m{i}"))
        assert len(json.loads(path.read_text())["records"]) == i + 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})  # not serialisable: fails half-way
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["run.json"]


def test_resume_keeps_records(tmp_path: Path) -> None:
    path = reserve_path(tmp_path, "s", host="h")
    w = RunWriter(path, _header())
    w.add(_record("m1"))  # killed here: finished_at stays null
    w2 = RunWriter.resume(path)
    assert len(w2.done_keys()) == 1
    w2.add(_record("m2"))
    w2.finish()
    assert [r["key"]["model"] for r in load_run(path)["records"]] == ["m1", "m2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level is not an object"),
        ('{"kind": "pytest-benchmark"}', "not an aigc-bench results file"),
        ('{"kind": "aigc-bench/run", "schema_version": 1}', "missing"),
    ],
)
def test_malformed_or_foreign_files_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(StoreError, match=message) as e:
        load_results([bad])
    assert str(bad) in str(e.value)


def test_bad_record_and_schema_version(tmp_path: Path) -> None:
    doc = {
        **_header(),
        "schema_version": 1,
        "kind": "aigc-bench/run",
        "records": [{"key": {"suite": "s"}, "status": "ok"}],
    }
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="record 0 key lacks"):
        load_run(p)
    doc["schema_version"] = 99
    p.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="schema_version 99"):
        load_run(p)


def test_folders_skip_foreign_json_but_missing_paths_fail(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"kind": "something-else"}')
    w = RunWriter(reserve_path(tmp_path, "s", host="h"), _header())
    w.add(_record("m1"))
    assert len(load_results(tmp_path)) == 1
    with pytest.raises(StoreError, match="no such file"):
        load_results(tmp_path / "missing.json")


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")  # a file where a folder should be: fails even for root
        target = blocker
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    with pytest.raises(StoreError, match="cannot"):
        reserve_path(target, "s")
