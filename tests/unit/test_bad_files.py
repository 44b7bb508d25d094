"""Malformed result files x every entry point: exit 2 with one line naming the file, never a traceback, never skipped.

A corpus of bad files is generated per test (``CORPUS``: each case writes one bad file, or a link, FIFO or
folder in its place). Every case is crossed with every command that reads result files -- ``report``,
``compare`` (either side), ``merge``, ``export``, ``baseline save``, ``run --resume`` -- and with
``load_results``; both named directly and inside a folder next to a good file (a good shard and a
truncated one must fail, not compare one cell).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _runfiles import record, run_file

from bench import runner
from bench.cli import main
from bench.errors import StoreError
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze
from bench.store import MAX_DEPTH, load_results, load_run, show_path

#: enough steady samples for a VALID latency (bench.validity): baseline save refuses fewer, which would mask a test
SAMPLES = (10.0, 10.1, 9.9, 10.0, 10.2, 9.8)


def _good_doc(tmp_path: Path) -> dict[str, Any]:
    path = run_file(tmp_path / "_template", [record("m1", SAMPLES), record("m2", status="failed")])
    doc = json.loads(path.read_text())
    path.unlink()
    return doc


def _with(mutate: Callable[[dict[str, Any]], None]) -> Callable[[Path, dict[str, Any]], str]:
    """A case: the good document changed by ``mutate``, as JSON text."""

    def make(_: Path, doc: dict[str, Any]) -> str:
        mutate(doc)
        return json.dumps(doc)

    return make


def _rec(field: str, value: Any, sub: str | None = None) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc["records"][0] if sub is None else doc["records"][0][sub]
        target[field] = value

    return mutate


def _text(fn: Callable[[str], str]) -> Callable[[Path, dict[str, Any]], str]:
    """A case made by editing the good file's text (for what json.dumps cannot write)."""
    return lambda _, doc: fn(json.dumps(doc))


def _deep_free(doc: dict[str, Any]) -> None:
    nested: Any = 1
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    doc["suite_definition"] = {"x": nested}


# name -> text of the bad file (a str), or a callable that makes the bad path itself (returns None)
CORPUS: dict[str, Callable[[Path, dict[str, Any]], str | None]] = {
    "truncated": lambda _, doc: json.dumps(doc, indent=1)[:300],
    "empty": lambda _, doc: "",
    "deep_200k": lambda _, doc: "[" * 200_000 + "]" * 200_000,
    "int_5000_digits": _text(lambda t: t.replace('"params": 25557032', '"params": ' + "9" * 5000, 1)),
    "int_huge_4000_digits": _text(lambda t: t.replace('"batch_size": 1', '"batch_size": ' + "9" * 4000, 1)),
    "lone_surrogate": _text(lambda t: t.replace('"model": "m1"', '"model": "m\\ud800"', 1)),
    "not_utf8": lambda _, doc: json.dumps(doc).replace("m1", "m\udcff", 1),  # written with surrogateescape below
    "top_level_list": lambda _, doc: "[1, 2]",
    "schema_version_str": _with(lambda d: d.update(schema_version="1")),
    "env_str": _with(lambda d: d.update(env="x")),
    "env_host_int": _with(lambda d: d["env"].update(host=5)),
    "run_id_int": _with(lambda d: d.update(run_id=12345)),
    "records_str": _with(lambda d: d.update(records="x")),
    "shard_huge": _with(lambda d: d["settings"].update(shard="2/99999999999")),
    "shard_text": _with(lambda d: d["settings"].update(shard="a/b")),
    "settings_list": _with(lambda d: d.update(settings=[1])),
    "finished_at_int": _with(lambda d: d.update(finished_at=5)),
    "input_shape_int": _with(_rec("input_shape", 5, "key")),
    "family_int": _with(_rec("family", 7, "key")),
    "batch_size_str": _with(_rec("batch_size", "one", "key")),
    "batch_size_bool": _with(_rec("batch_size", True, "key")),
    "seq_len_str": _with(_rec("seq_len", "x", "key")),
    "key_missing_field": _with(lambda d: d["records"][0]["key"].pop("model")),
    "variant_str": _with(_rec("variant", "x")),
    "status_unknown": _with(_rec("status", "weird")),
    "error_list": _with(_rec("error", ["x"])),
    "notes_str": _with(_rec("notes", "x")),
    "metrics_str": _with(_rec("metrics", "x")),
    "metric_latency_str": _with(_rec("latency_p50_ms", "abc", "metrics")),
    "metric_list": _with(_rec("odd", [1, 2], "metrics")),
    "metric_inf": _text(lambda t: t.replace('"latency_p50_ms": 10.0', '"latency_p50_ms": Infinity', 1)),
    "samples_null": _with(_rec("latency_ms", None, "samples")),
    "samples_str": _with(_rec("latency_ms", "abc", "samples")),
    "sample_str": _with(_rec("latency_ms", [10.0, "abc"], "samples")),
    "sample_nan": _text(lambda t: t.replace('"latency_ms": [10.0,', '"latency_ms": [NaN,', 1)),
    "sample_inf": _text(lambda t: t.replace('"latency_ms": [10.0,', '"latency_ms": [Infinity,', 1)),
    "sample_1e400": _text(lambda t: t.replace('"latency_ms": [10.0,', '"latency_ms": [1e400,', 1)),
    "sample_negative": _with(_rec("latency_ms", [10.0, -1.0], "samples")),
    "deep_free_form": _with(_deep_free),
}


def _special(kind: str) -> Callable[[Path, dict[str, Any]], None]:
    def make(path: Path, _: dict[str, Any]) -> None:
        if kind == "dev_zero":
            path.symlink_to("/dev/zero")
        elif kind == "dangling":
            path.symlink_to(path.parent / "nowhere.json")
        elif kind == "loop":
            path.symlink_to(path.name)  # a link to itself
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "proc_mem":
            path.symlink_to("/proc/self/mem")

    return make


for _kind in ("dev_zero", "dangling", "loop", "fifo", "proc_mem"):
    CORPUS[_kind] = _special(_kind)


def _make_bad(tmp_path: Path, case: str) -> Path:
    """The bad file of ``case`` at ``tmp_path/bad/<case>.json`` (alone in its folder)."""
    folder = tmp_path / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case}.json"
    text = CORPUS[case](path, _good_doc(tmp_path))
    if text is not None:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def _folder_with_good(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """A folder holding a good shard and the bad file: (folder, bad file)."""
    bad = _make_bad(tmp_path, case)
    run_file(bad.parent, [record("m3", SAMPLES)])  # a good run file next to it (in bad/s/)
    return bad.parent, bad


def _good(tmp_path: Path) -> Path:
    return run_file(tmp_path / "good", [record("m1", SAMPLES)])


def _one_error_line(capsys: pytest.CaptureFixture[str], code: int, bad: Path | None) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aigc-bench: error: ")
    if bad is not None:
        assert show_path(bad) in lines[0], lines[0]
    return lines[0]


ENTRY_POINTS = ("report", "compare_baseline", "compare_current", "merge", "export", "baseline_save")


def _cli(entry: str, target: Path, tmp_path: Path) -> int:
    good = str(_good(tmp_path))
    out = tmp_path / "out"
    argv = {
        "report": ["report", str(target), "--out", str(out)],
        "compare_baseline": ["compare", str(target), good, "--baselines-dir", str(tmp_path / "bl")],
        "compare_current": ["compare", good, str(target), "--baselines-dir", str(tmp_path / "bl")],
        "merge": ["merge", str(target), good, "-o", str(out / "merged.json")],
        "export": ["export", "--format", "pytest-benchmark", str(target), "-o", str(out / "export.json")],
        "baseline_save": ["baseline", "save", str(target), "--name", "main", "--dir", str(out / "baselines")],
    }[entry]
    code = main(argv)
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), "nothing is written from a bad file"
    return code


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_file_named_directly(case: str, entry: str, tmp_path: Path, capsys) -> None:
    bad = _make_bad(tmp_path, case)
    capsys.readouterr()
    _one_error_line(capsys, _cli(entry, bad, tmp_path), bad)


FOLDER_ENTRY_POINTS = ("report", "compare_baseline", "compare_current", "merge", "baseline_save")


@pytest.mark.parametrize("entry", FOLDER_ENTRY_POINTS)
@pytest.mark.parametrize("case", sorted(set(CORPUS) - {"top_level_list"}))
def test_bad_file_in_a_folder_is_never_skipped(case: str, entry: str, tmp_path: Path, capsys) -> None:
    """A good shard next to a bad one: the command fails naming the bad one (it used to go on with one)."""
    folder, bad = _folder_with_good(tmp_path, case)
    capsys.readouterr()
    _one_error_line(capsys, _cli(entry, folder, tmp_path), bad)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_load_results_raises_store_error(case: str, tmp_path: Path) -> None:
    bad = _make_bad(tmp_path, case)
    with pytest.raises(StoreError) as e:
        load_results([bad])
    assert show_path(bad) in str(e.value) and "\n" not in str(e.value)
    if case != "top_level_list":  # a JSON list in a folder is some other tool's file
        folder, bad = _folder_with_good(tmp_path / "f", case)
        with pytest.raises(StoreError, match="bad"):
            load_results(folder)


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("env_str", "env: expected an object, got the string 'x'"),
        ("input_shape_int", "records[0].key.input_shape: expected a list of integers, got 5"),
        ("samples_null", "records[0].samples.latency_ms: expected a list of numbers, got null"),
        ("variant_str", "records[0].variant: expected an object or null"),
        ("family_int", "records[0].key.family: expected a non-empty string, got 7"),
        ("run_id_int", "run_id: expected a non-empty string, got 12345"),
        ("batch_size_str", "records[0].key.batch_size: expected an integer >= 1, got the string 'one'"),
        ("metric_latency_str", "records[0].metrics.latency_p50_ms: expected a finite number or NaN or null"),
        ("sample_nan", "records[0].samples.latency_ms[0]: expected a finite number of milliseconds, got nan"),
        ("sample_1e400", "records[0].samples.latency_ms[0]: expected a finite number of milliseconds, got inf"),
        ("lone_surrogate", "records[0].key.model: a string holds a lone UTF-16 surrogate"),
        ("deep_200k", "nested too deeply"),
        ("int_5000_digits", "Exceeds the limit (4300 digits)"),
        ("dev_zero", "not a regular file"),
        ("fifo", "not a regular file"),
        ("dangling", "broken symbolic link"),
        ("loop", "symbolic link loop"),
        ("proc_mem", "cannot read"),
        ("empty", "empty file"),
        ("truncated", "not valid JSON"),
        ("shard_huge", "settings.shard"),
        ("deep_free_form", f"suite_definition: expected JSON nested at most {MAX_DEPTH} deep"),
    ],
)
def test_the_error_names_the_field(case: str, field: str, tmp_path: Path) -> None:
    bad = _make_bad(tmp_path, case)
    with pytest.raises(StoreError) as e:
        load_run(bad)
    assert field in str(e.value)


def test_proc_self_mem_named_directly(tmp_path: Path, capsys) -> None:
    """``/proc/self/mem`` is a regular file that says size 0 and cannot be read: one line, exit 2."""
    mem = Path("/proc/self/mem")
    if not mem.exists():
        pytest.skip("no /proc")
    for argv in (["report", str(mem), "--out", str(tmp_path)], ["export", "--format", "pytest-benchmark", str(mem)]):
        _one_error_line(capsys, main(argv), mem)


def test_size_limit_is_checked_before_reading(tmp_path: Path, monkeypatch, capsys) -> None:
    good = _good(tmp_path)
    monkeypatch.setenv("AIGC_BENCH_MAX_FILE_BYTES", "100")
    line = _one_error_line(capsys, main(["export", "--format", "pytest-benchmark", str(good)]), good)
    assert "limit" in line and "AIGC_BENCH_MAX_FILE_BYTES" in line
    monkeypatch.setenv("AIGC_BENCH_MAX_FILE_BYTES", "lots")
    assert main(["export", "--format", "pytest-benchmark", str(good)]) == 2
    monkeypatch.delenv("AIGC_BENCH_MAX_FILE_BYTES")
    assert main(["export", "--format", "pytest-benchmark", str(good)]) == 0


def test_folder_scan_skips_foreign_json_and_follows_no_folder_links(tmp_path: Path) -> None:
    """Reports and exports (JSON of another kind) are skipped, and a link to a parent folder (a loop) is not
    followed."""
    folder = tmp_path / "results"
    run_file(folder, [record("m1")])
    (folder / "export.json").write_text('{"benchmarks": []}')
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)
    assert len(load_results(folder)) == 1


@pytest.mark.parametrize("entry", FOLDER_ENTRY_POINTS)
@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_folder_named_like_a_run_file_in_a_scan_is_an_error(kind: str, entry: str, tmp_path: Path, capsys) -> None:
    """A folder (or a link to one) named x.json next to a good shard: walked as a folder, it added the run files
    inside it (or, a link, dropped them) without a word. It is an error naming it; named directly it is
    searched, as any folder is."""
    folder, _ = _folder_with_good(tmp_path, "truncated")
    (folder / "truncated.json").unlink()
    inner = tmp_path / "elsewhere" / "x.json"
    run_file(inner, [record("m9", SAMPLES)])
    odd = folder / "x.json"
    if kind == "folder":
        inner.rename(odd)
    else:
        odd.symlink_to(inner, target_is_directory=True)
    capsys.readouterr()
    line = _one_error_line(capsys, _cli(entry, folder, tmp_path), odd)
    assert "a folder named like a run file" in line
    with pytest.raises(StoreError, match="a folder named like a run file"):
        load_results(folder)
    assert len(load_results(odd)) == 1  # named directly: searched


def test_a_file_with_an_unknown_kind_named_directly_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "export.json"
    other.write_text('{"benchmarks": []}')
    with pytest.raises(StoreError, match="not an aigc-bench results file"):
        load_results([other])


def test_a_path_with_a_newline_stays_one_line(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "a\nb"
    folder.mkdir()
    bad = folder / "x\x1b[2J.json"
    bad.write_text("{")
    line = _one_error_line(capsys, main(["report", str(folder), "--out", str(tmp_path / "o")]), None)
    assert "a\\nb" in line and "x\\x1b[2J.json" in line


def test_good_files_pass_every_entry_point(tmp_path: Path, capsys) -> None:
    """The control: the same commands on good files succeed (so the failures above are the bad files')."""
    good = _good(tmp_path)
    assert main(["report", str(good), "--out", str(tmp_path / "r"), "--format", "csv"]) == 0
    assert main(["compare", str(good), str(good), "--format", "json"]) == 0
    assert main(["merge", str(good), "-o", str(tmp_path / "m.json")]) == 0
    assert main(["export", "--format", "pytest-benchmark", str(good), "-o", str(tmp_path / "e.json")]) == 0
    assert main(["baseline", "save", str(good), "--name", "main", "--dir", str(tmp_path / "bl")]) == 0
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- run --resume

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))


def toy_suite() -> Suite:
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("params",), warmup_s=0.05, min_run_time_s=0.05)
    tier = Tier(name="t", target_params=36, tolerance=10.0, input_shape=(8,), variants=(LIN,))
    return Suite(name="toy", description="toy suite", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


def _never(cell, on_event):  # pragma: no cover - must not be reached
    raise AssertionError("a cell was measured although the resumed file is bad")


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_resume_refuses_a_bad_file_before_measuring(case: str, tmp_path: Path) -> None:
    bad = _make_bad(tmp_path, case)
    with pytest.raises(StoreError) as e:
        runner.run(toy_suite(), runner.RunSettings(devices=("cpu",)), tmp_path / "out", resume=bad, measure=_never)
    assert show_path(bad) in str(e.value) and "\n" not in str(e.value)
    assert not list(bad.parent.glob(".*.lock")), "no lock file left behind"


@pytest.mark.parametrize("case", ["truncated", "batch_size_str", "sample_nan", "dev_zero"])
def test_run_resume_cli_exits_2_naming_the_file(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    import bench.env
    import bench.registry

    monkeypatch.setattr(bench.registry, "get_suite", lambda name: toy_suite())
    monkeypatch.setattr(bench.env, "busy_warning", lambda threads: None)  # a loaded test machine must not add a line
    bad = _make_bad(tmp_path, case)
    capsys.readouterr()
    code = main(["run", "toy", "--resume", str(bad), "--out", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # the progress display may print its (empty) bar first
    assert last.startswith("aigc-bench: error: ") and show_path(bad) in last
