"""Merging shard files: disjoint shards join into one valid run; anything else is refused with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runfiles import ENV, record, run_file

from bench.cli import main
from bench.errors import UsageError
from bench.merge import merge_files
from bench.spec import CellKey
from bench.store import load_results, load_run


def _shards(tmp_path: Path, n: int = 3, **kw) -> list[Path]:
    models = [f"m{i}" for i in range(7)]
    return [run_file(tmp_path / f"shard{k}", [record(m) for m in models[k - 1 :: n]], shard=f"{k}/{n}", **kw)
            for k in range(1, n + 1)]  # fmt: skip


def test_shards_merge_into_one_valid_run(tmp_path: Path) -> None:
    shards = _shards(tmp_path)
    other_env = {**ENV, "host": "ci-2"}
    shards.append(run_file(tmp_path / "extra", [record("x", family="other")], shard=None, env=other_env))
    out, doc, warnings = merge_files(shards, tmp_path / "merged" / "run.json")
    loaded = load_run(out)  # schema-valid
    ids = [CellKey.from_dict(r["key"]).id for r in loaded["records"]]
    assert ids == sorted(ids) and len(ids) == 8
    assert loaded["settings"]["shard"] is None and loaded["settings"]["cells"] == 8
    assert loaded["env"] == ENV  # the first shard's
    assert [m["shard"] for m in loaded["merged_from"]] == ["1/3", "2/3", "3/3", None]
    assert loaded["finished_at"] and loaded["run_id"].startswith("run-")
    assert len(load_results(out)) == 8
    assert not any("missing" in w for w in warnings)


def test_missing_shard_is_a_warning(tmp_path: Path) -> None:
    shards = _shards(tmp_path)
    _, doc, warnings = merge_files(shards[:2], tmp_path / "run.json")
    assert len(doc["records"]) == 5 and any("shards missing: 3/3" in w for w in warnings)


def test_overlapping_shards_are_refused(tmp_path: Path) -> None:
    shards = _shards(tmp_path)
    again = run_file(tmp_path / "again", [record("m1")], shard="2/3")
    with pytest.raises(UsageError, match=r"cell s/tiny/fam/m1/.* is in both .* \(overlapping shards\)"):
        merge_files([*shards, again], tmp_path / "run.json")
    with pytest.raises(UsageError, match="overlapping shards"):
        merge_files([shards[0], shards[0]], tmp_path / "run.json")
    assert not (tmp_path / "run.json").exists()


def test_different_suite_definitions_are_refused(tmp_path: Path) -> None:
    a = run_file(tmp_path / "a", [record("m1")], suite_hash="aaaa", shard="1/2")
    b = run_file(tmp_path / "b", [record("m2")], suite_hash="bbbb", shard="2/2")
    with pytest.raises(UsageError, match="different suite definitions"):
        merge_files([a, b], tmp_path / "run.json")
    c = run_file(tmp_path / "c", [record("m2")], suite_hash="aaaa", profile="default", shard="2/2")
    with pytest.raises(UsageError, match="different profiles"):
        merge_files([a, c], tmp_path / "run.json")


def test_existing_output_is_never_overwritten(tmp_path: Path, capsys) -> None:
    shards = _shards(tmp_path)
    out = tmp_path / "run.json"
    out.write_text("precious")
    args = ["merge", *map(str, shards), "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err
    assert out.read_text() == "precious"
    out.unlink()
    assert main(args) == 0 and len(load_run(out)["records"]) == 7


def test_names_from_files_print_literally_not_as_markup(tmp_path: Path, capsys) -> None:
    """Shard paths, environment strings and the output name used to be printed as rich markup: a folder named
    ``[bold red]x[/]`` lost its brackets, ``[link=...]`` became a live hyperlink."""
    hostile = tmp_path / "[bold red]x[/]"
    a = run_file(hostile / "a", [record("m1")], shard="1/2")
    b = run_file(hostile / "b", [record("m2")], shard="2/2", env={**ENV, "cpu_model": "[link=https://evil.example]cpu"})
    out = tmp_path / "[red]merged[link=https://evil.example].json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "'[link=https://evil.example]cpu'" in captured.err and "[bold red]x[/]" in captured.err
    assert str(out) in captured.out and "evil.example]" in captured.out
    assert len(captured.out.splitlines()) == 1 and len(captured.err.splitlines()) == 1  # long lines are not wrapped


def test_a_named_folder_without_run_files_is_refused(tmp_path: Path, capsys) -> None:
    """``merge shard1.json empty/`` used to write a merged run of shard 1 alone and exit 0."""
    (shard, _, _) = _shards(tmp_path)
    empty = tmp_path / "shard2.json"  # a download that made a folder where a file was meant
    empty.mkdir()
    assert main(["merge", str(shard), str(empty), "-o", str(tmp_path / "run.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"aigc-bench: error: {empty}: no aigc-bench run files found"
    assert not (tmp_path / "run.json").exists()


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    """``-o FILE/run.json`` where FILE is a file: it used to say "already exists; merge never overwrites"."""
    shards = _shards(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["merge", *map(str, shards), "-o", str(blocker / "run.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"aigc-bench: error: cannot create folder {blocker} for merged run") and "\n" not in err
