"""The result store: schema validation, atomic writes, never overwriting, load_results."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import store
from bench.errors import StoreError
from bench.report.escape import safe_component
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
    assert a != b and a.parent == tmp_path / "s"
    assert not a.exists() and not b.exists()  # claimed by a hidden lock file: no empty .json before the first write
    RunWriter(a, _header())
    assert reserve_path(tmp_path, "s", host="h") not in (a, b)


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
    with pytest.raises(StoreError, match=r"records\[0\]\.key lacks"):
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


# --------------------------------------------------------------------------- crash safety and modes


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


_KILLED_IN_FIRST_WRITE = """
import os, sys, time
from pathlib import Path
import bench.store as store

folder, marker = Path(sys.argv[1]), Path(sys.argv[2])
path = store.reserve_path(folder, "s", host="h")
def stuck(fd):  # the first write of the run file hangs after its temporary file exists: killed there
    marker.write_text(str(path))
    time.sleep(60)
os.fsync = stuck
store.RunWriter(path, {"run_id": "r", "suite": "s", "suite_hash": "abc", "profile": "quick", "env": {}})
"""


def test_a_run_killed_in_its_first_write_leaves_no_json(tmp_path: Path) -> None:
    """kill -9 in the first milliseconds used to leave a 0-byte .json (and a stray .tmp) that broke every scan."""
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IN_FIRST_WRITE, str(tmp_path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the writer never got to its first write"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    folder = tmp_path / "s"
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []  # no .json at all
    leftovers = _hidden(folder)
    assert any(n.endswith(".tmp") for n in leftovers) and any(n.endswith(".json.lock") for n in leftovers)
    assert len(load_results(tmp_path)) == 0  # the folder still loads: nothing half-written in it
    new = reserve_path(tmp_path, "s", host="h")  # the next run cleans what the killed one left
    assert _hidden(folder) == [f".{new.name}.lock"]


def test_stale_temporary_files_are_cleaned_on_resume(tmp_path: Path) -> None:
    path = reserve_path(tmp_path, "s", host="h")
    RunWriter(path, _header()).add(_record("m1"))
    host = store.files._host_tag()
    dead = path.with_name(f".{path.name}.{host}.{_dead_pid()}.0123abcd.tmp")
    live = path.with_name(f".{path.name}.{host}.{os.getpid()}.89abcdef.tmp")  # a writer still at work: kept
    other = path.with_name(f".{path.name}.otherhost.{_dead_pid()}.01234567.tmp")  # another machine's: kept
    for p in (dead, live, other):
        p.write_text("{")
    w = RunWriter.resume(path)
    assert not dead.exists() and live.exists() and other.exists()
    assert len(w.records) == 1


def test_write_new_json_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "merged.json"
    store.write_new_json(path, {"a": 1})
    with pytest.raises(FileExistsError):
        store.write_new_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["merged.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_says(umask: int, mode: int, tmp_path: Path, capsys) -> None:
    """mkstemp made every results, merge, baseline and export file 0600; now they are 0o666 & ~umask."""
    from _runfiles import record, run_file

    from bench.cli import main

    old = os.umask(umask)
    try:
        run = run_file(tmp_path / "runs", [record("m1", (10.0, 10.1, 9.9, 10.0, 10.2, 9.8))])
        assert main(["merge", str(run), "-o", str(tmp_path / "merged.json")]) == 0
        assert main(["baseline", "save", str(run), "--name", "main", "--dir", str(tmp_path / "bl")]) == 0
        assert main(["export", "--format", "pytest-benchmark", str(run), "-o", str(tmp_path / "export.json")]) == 0
        atomic_write_json(tmp_path / "plain.json", {"a": 1})
    finally:
        os.umask(old)
    for p in (run, tmp_path / "merged.json", tmp_path / "bl" / "main.json", tmp_path / "export.json",
              tmp_path / "plain.json"):  # fmt: skip
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


# --------------------------------------------------------------------------- two resumes at once

_RESUMER = """
import sys, time
from pathlib import Path
from bench import runner
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.worker import base_record

mode, out, family, ready = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))
WIDE = VariantSpec(family="wide", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 5}))
prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), warmup_s=0.05, min_run_time_s=0.05)
tier = Tier(name="t", target_params=40, tolerance=10.0, input_shape=(8,), variants=(LIN, WIDE))
suite = Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
              default_profile="quick")
first = [True]

def fake(cell, on_event):
    if first[0] and mode == "resume":  # wait until both processes have read the file: then both write to it
        first[0] = False
        (ready / family).touch()
        deadline = time.time() + 60
        while len(list(ready.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.01)
    time.sleep(0.01)
    rec = base_record(cell, "ok")
    rec["metrics"] = {"params": 1}
    return rec

if mode == "init":
    res = runner.run(suite, runner.RunSettings(devices=("cpu",), families=("linear",)), out, measure=fake)
    print(res.path)
else:
    settings = runner.RunSettings(devices=("cpu",), families=(family,), batch_sizes=(1, 2, 3, 4, 5, 6))
    runner.run(suite, settings, out, resume=sorted((out / "toy").glob("*.json"))[0], measure=fake)
"""


@pytest.mark.slow  # two fresh processes import torch (the runner sizes models and fingerprints the machine)
def test_two_concurrent_resumes_keep_every_cell(tmp_path: Path, monkeypatch) -> None:
    """``run --resume FILE --family linear`` and ``--family wide`` at once: both used to exit 0 while the
    file kept only one process's cells (each rewrote the whole file from its own copy)."""
    script = tmp_path / "resumer.py"
    script.write_text(_RESUMER)
    out, ready = tmp_path / "out", tmp_path / "ready"
    ready.mkdir()
    monkeypatch.setattr(sys, "argv", [str(script), "init", str(out), "-", str(ready)])
    runpy.run_path(str(script), run_name="__main__")  # the file to resume: one cell, written in this process
    (path,) = (out / "toy").glob("*.json")
    procs = [subprocess.Popen([sys.executable, str(script), "resume", str(out), fam, str(ready)],
                              stderr=subprocess.PIPE, text=True) for fam in ("linear", "wide")]  # fmt: skip
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    doc = load_run(path)
    cells = sorted((r["key"]["family"], r["key"]["batch_size"]) for r in doc["records"])
    assert cells == sorted((f, b) for f in ("linear", "wide") for b in range(1, 7))  # 12 cells, each once
    assert doc["finished_at"] is not None
    assert "another aigc-bench process" in "".join(errs)  # said once, on stderr, by whoever met the other's cells
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no lock or temporary file left


def test_add_merges_what_another_writer_wrote_and_replaces_a_recorded_cell(tmp_path: Path) -> None:
    path = reserve_path(tmp_path, "s", host="h")
    a = RunWriter(path, _header())
    a.add(_record("m1"))
    b = RunWriter.resume(path)
    b.add(_record("m2"))
    a.add(_record("m3"))  # a's copy lacks m2: it is merged from the file, not lost
    b.add(_record("m1", status="failed"))  # the same cell again (--retry-failed): replaced, not duplicated
    a.finish(analyse=lambda records: {"cells": len(records)})  # derived results see every process's cells
    doc = load_run(path)
    assert [(r["key"]["model"], r["status"]) for r in doc["records"]] == [("m1", "failed"), ("m2", "ok"), ("m3", "ok")]
    assert doc["analysis"] == {"cells": 3} and doc["finished_at"] is not None


# --------------------------------------------------------------------------- names from files as path components


@pytest.mark.parametrize(
    "name",
    ["../../../escaped_suite", "/etc/passwd", "..", ".", "", ".hidden", "-rf", "a\nb", "x\x00y", "C:\\x", "CON",
     "nul.json", "a" * 300, "é/ü", "\u202etxt.exe", "\ud800"],
)  # fmt: skip
def test_safe_component_stays_one_component_inside_its_folder(name: str, tmp_path: Path) -> None:
    c = safe_component(name)
    assert c and len(c) <= 100 and c == safe_component(name)  # deterministic: report names stay stable
    assert "/" not in c and "\\" not in c and not c.startswith((".", "-")) and c.isascii() and c.isprintable()
    assert (tmp_path / c).resolve().parent == tmp_path.resolve()
    assert c.split(".")[0].split("-")[0].upper() not in ("CON", "NUL")


def test_safe_component_keeps_ordinary_names_and_separates_different_ones() -> None:
    for ok in ("cv-backbones", "resnet50", "vit_b.16"):
        assert safe_component(ok) == ok
    # one implementation, the report's (bench.store's own kept "+"): the safer, smaller alphabet wins
    assert not hasattr(store, "safe_component") and re.fullmatch(r"seq-1-[0-9a-f]{8}", safe_component("seq+1"))
    names = ["a/b", "a-b", "a:b", "a b", "a\\b", "../a-b", "a+b"]
    assert len({safe_component(n) for n in names}) == len(names)
