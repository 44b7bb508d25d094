"""The typed cell result (``bench.result``): stored records read back and written out unchanged."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from bench.result import BROKEN, KEY_FIELDS, STATUSES, CellResult, Status, key_of_row, results_of
from bench.spec import CellKey
from bench.store import load_run

PUBLISHED = sorted((Path(__file__).resolve().parents[2] / "results").glob("*/*.json"))


def test_status_values_are_the_schema_s() -> None:
    assert STATUSES == ("ok", "failed", "timeout", "skipped")
    assert Status("timeout") is Status.TIMEOUT and Status.OK == "ok" and str(Status.FAILED) == "failed"
    assert [s for s in Status if s.broken] == list(BROKEN) == [Status.FAILED, Status.TIMEOUT]
    assert json.dumps({"status": Status.SKIPPED}) == '{"status": "skipped"}'


def test_key_fields_are_the_cell_key_s() -> None:
    assert KEY_FIELDS == ("suite", "tier", "family", "model", "device", "dtype", "batch_size", "input_shape",
                          "seq_len", "mode", "execution")  # fmt: skip


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.parent.name)
def test_every_published_record_round_trips_unchanged(path: Path) -> None:
    doc = load_run(path)
    assert doc["records"]
    for rec in doc["records"]:
        result = CellResult.from_dict(rec)
        again = result.to_dict()
        assert again == rec and list(again) == list(rec)  # same fields, same order: the file would not change
        assert json.dumps(again) == json.dumps(rec)
        assert result.id == CellKey.from_dict(rec["key"]).id and result.status in Status


def test_results_are_frozen_and_their_mappings_read_only() -> None:
    r = CellResult.from_dict(_record())
    with pytest.raises(AttributeError):
        r.status = Status.FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.metrics["params"] = 1  # type: ignore[index]
    d = r.to_dict()
    d["metrics"]["params"] = 1  # to_dict hands out fresh containers
    assert r.metrics["params"] == 36
    assert pickle.loads(pickle.dumps(r)) == r  # crosses process boundaries through its JSON form


def test_older_records_get_today_s_defaults_and_unknown_fields_are_kept() -> None:
    old = _record()
    del old["key"]["mode"], old["started_at"], old["duration_s"]
    old["from_a_newer_writer"] = {"x": [1, 2]}
    r = CellResult.from_dict(old)
    assert r.key.mode == "infer" and r.started_at is None
    d = r.to_dict()
    assert d["key"]["mode"] == "infer" and d["from_a_newer_writer"] == {"x": [1, 2]}
    assert list(d)[-1] == "from_a_newer_writer"


def test_a_failed_record_keeps_its_traceback_after_the_known_fields() -> None:
    rec = {**_record(), "status": "failed", "error": "latency: RuntimeError: boom", "traceback": "Traceback ..."}
    d = CellResult.from_dict(rec).to_dict()
    assert d == rec and list(d)[-1] == "traceback"


def test_row_flattens_a_record_for_frames() -> None:
    r = CellResult.from_dict(_record())
    row = r.row({"run_id": "r1"})
    assert row["latency_samples"] == [1.0, 2.0] and row["speed_ref_ms_samples"] == [3.0]
    assert row["input_shape"] == (8,) and row["params"] == 36 and row["status"] == "ok" and row["run_id"] == "r1"
    assert key_of_row({**row, "batch_size": 1.0, "seq_len": float("nan")}) == r.key  # as pandas hands them back
    assert results_of([_record(), r]) == [r, r]


def _record() -> dict:
    return {
        "key": {"suite": "toy", "tier": "t", "family": "linear", "model": "Linear", "device": "cpu", "dtype": "fp32",
                "batch_size": 1, "input_shape": [8], "seq_len": None, "mode": "infer"},
        "variant": {"builder": "torch.nn:Linear", "model_args": {"in_features": 8}, "target_params": 36,
                    "achieved_params": 36, "tolerance": 50.0, "knob": None, "knob_value": None},
        "status": "ok", "error": None, "metrics": {"params": 36, "latency_p50_ms": 1.5},
        "samples": {"latency_ms": [1.0, 2.0], "speed_ref_ms": [3.0]}, "notes": ["a note"],
        "started_at": "2026-11-30T10:00:00Z", "duration_s": 0.5,
    }  # fmt: skip
