"""Executions as a cell axis (issue 14), without compiling: names and the combination rule, keys and ids that
stay those of eager runs, expansion, run settings, the report's execution column and compare's refusal.

Compiling and running models: ``test_execution_compile.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _runfiles import record, run_file

from bench import execution, runner
from bench.errors import UnknownNameError, UsageError
from bench.registry import get_suite
from bench.spec import CellKey, Profile, Suite, Tier, VariantSpec, freeze

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = sorted((ROOT / "results").glob("*/*.json"))

LIN = VariantSpec(family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4}))


def toy(executions: tuple[str, ...] = ("eager", "compile", "autocast"), dtypes: tuple[str, ...] = ("fp32",)) -> Suite:
    prof = Profile(name="quick", batch_sizes=(1, 2), dtypes=dtypes, executions=executions, metrics=("params",))
    tier = Tier(name="t", target_params=36, tolerance=10.0, input_shape=(8,), variants=(LIN,))
    return Suite(name="toy", description="toy", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")  # fmt: skip


# --- names and the combination rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name"), [("eager", "eager"), ("compile", "compile"),
                                            ("autocast+compile", "compile+autocast"),
                                            ("autocast+channels_last+compile-max", "compile-max+channels_last+autocast"),
                                            (" channels_last ", "channels_last")])  # fmt: skip
def test_names_are_canonical(text: str, name: str) -> None:
    assert execution.canonical(text) == name


@pytest.mark.parametrize(("text", "says"), [("eager+compile", "eager combines with nothing"),
                                            ("compile+compile-max", "at most one of"),
                                            ("compile+compile", "twice"), ("fast", "valid choices")])  # fmt: skip
def test_the_combination_rule_refuses_with_one_line(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as e:
        execution.parse(text)
    assert "\n" not in str(e.value)


def test_an_unknown_execution_names_the_close_match() -> None:
    with pytest.raises(UnknownNameError, match="compile"):
        execution.parse("compiled")


def test_autocast_cells_run_at_a_lower_precision_with_float32_weights() -> None:
    assert execution.cell_dtype("autocast", "fp32") == "bf16"
    assert execution.cell_dtype("compile+autocast", "fp16") == "fp16"
    assert execution.cell_dtype("compile", "fp32") == "fp32"
    assert execution.weights_dtype("autocast", "bf16") == "fp32"
    assert execution.weights_dtype("eager", "bf16") == "bf16"


def test_cuda_graphs_do_not_apply_on_cpu() -> None:
    with pytest.raises(execution.NotApplicable, match="CUDA only"):
        execution.check_applicable("reduce-overhead", "cpu")
    execution.check_applicable("compile-max", "cpu")


def test_the_first_call_runs_before_the_metrics_that_run_the_executed_model() -> None:
    order = execution.first_call_first(["params", "flops", "memory", "latency", "execution"])
    assert order == ["params", "flops", "execution", "memory", "latency"]
    assert execution.first_call_first(["params", "latency"]) == ["params", "latency"]


# --- keys, ids, hashes: eager stays what it was ---------------------------------------------------------------


def _key(**kw: object) -> CellKey:
    base = {"suite": "s", "tier": "t", "family": "f", "model": "m", "device": "cpu", "dtype": "fp32", "batch_size": 1,
            "input_shape": (3, 8, 8)}  # fmt: skip
    return CellKey(**{**base, **kw})  # type: ignore[arg-type]


def test_an_eager_key_keeps_its_id_and_stored_form() -> None:
    k = _key()
    assert k.id == "s/t/f/m/cpu/fp32/b1/3x8x8/infer"
    assert "execution" not in k.to_dict()
    assert CellKey.from_dict(k.to_dict()) == k


def test_another_execution_is_in_the_id_and_the_stored_key() -> None:
    k = _key(execution="compile+channels_last")
    assert k.id == "s/t/f/m/cpu/fp32/b1/3x8x8/infer/compile+channels_last"
    assert k.to_dict()["execution"] == "compile+channels_last"
    assert CellKey.from_dict(k.to_dict()) == k


def _covers(new: object, old: object) -> bool:
    """Whether ``new`` holds all of ``old``: objects key by key, lists of objects item by item (additions and
    changed descriptions allowed), anything else equal; a setting unset then (null, e.g. a profile's ``tiers``:
    every tier there was) may be set now."""
    if old is None:
        return True
    if isinstance(old, dict):
        return isinstance(new, dict) and all(
            k in new and _covers(new[k], v) for k, v in old.items() if k != "description"
        )
    if isinstance(old, list) and old and all(isinstance(x, dict) for x in old):
        return isinstance(new, list) and all(any(_covers(n, o) for n in new) for o in old)
    return new == old


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.parent.name)
def test_published_runs_keep_their_suite_hash_and_cell_ids(path: Path) -> None:
    """The executions profiles are left out of the stored definition: today's suites define everything a published
    run measured as it did (its tiers, resolved variants and profiles), so its cells keep their ids and sizes; a
    suite that gained families or profiles since (issue 17: cait, t2t, the seq tasks) hashes differently, and
    the same when it gained nothing."""
    doc = json.loads(path.read_text())
    suite = get_suite(doc["suite"])
    if doc["suite"] in ("cv-backbones", "seq-backbones"):  # they have an executions profile (pretraining has none)
        assert any(p.executions != ("eager",) for p in suite.profiles)
    assert runner.definition_hash(doc["suite_definition"]) == doc["suite_hash"]
    assert all("executions" not in p for p in doc["suite_definition"]["profiles"])
    current = runner.suite_definition(suite)
    assert _covers(current, doc["suite_definition"])
    assert (runner.definition_hash(current) == doc["suite_hash"]) == (current == doc["suite_definition"])
    from bench.result import CellResult

    for r in doc["records"][:5]:
        assert CellResult.from_dict(r).to_dict()["key"] == r["key"]


# --- expansion and settings -----------------------------------------------------------------------------------


def test_execution_is_the_innermost_axis_and_autocast_runs_at_bf16() -> None:
    cells = runner.expand(toy(), runner.RunSettings(devices=("cpu",)))
    assert [(c.key.batch_size, c.key.execution, c.key.dtype) for c in cells] == [
        (1, "eager", "fp32"), (1, "compile", "fp32"), (1, "autocast", "bf16"),
        (2, "eager", "fp32"), (2, "compile", "fp32"), (2, "autocast", "bf16"),
    ]  # fmt: skip


def test_autocast_asked_at_fp32_and_bf16_is_one_cell() -> None:
    cells = runner.expand(toy(("autocast",), ("fp32", "bf16")), runner.RunSettings(devices=("cpu",), batch_sizes=(1,)))
    assert [(c.key.execution, c.key.dtype) for c in cells] == [("autocast", "bf16")]


def test_the_execution_option_replaces_the_profile_s_and_is_checked() -> None:
    cells = runner.expand(toy(), runner.RunSettings(devices=("cpu",), executions=("channels_last+compile",)))
    assert {c.key.execution for c in cells} == {"compile+channels_last"}
    with pytest.raises(UsageError, match="eager combines with nothing"):
        runner.expand(toy(), runner.RunSettings(devices=("cpu",), executions=("eager+autocast",)))


def test_a_run_stores_its_executions_and_an_eager_run_stores_none(tmp_path: Path) -> None:
    def fake(cell, on_event=None):
        from bench.result import CellResult

        return CellResult.pending(cell, "ok").to_dict()

    settings = runner.RunSettings(devices=("cpu",), batch_sizes=(1,))
    mixed = runner.run(toy(), settings, tmp_path / "a", measure=fake)
    doc = json.loads(mixed.path.read_text())
    assert doc["settings"]["executions"] == ["eager", "compile", "autocast"]
    assert [r["key"].get("execution") for r in doc["records"]] == [None, "compile", "autocast"]
    eager = runner.run(toy(("eager",)), settings, tmp_path / "b", measure=fake)
    assert "executions" not in json.loads(eager.path.read_text())["settings"]


def test_scaling_fits_use_one_execution() -> None:
    recs = [{"key": {"execution": "compile"}}, {"key": {}}, {"key": {"execution": None}}]
    assert execution.one_execution(recs) == recs[1:]
    assert execution.one_execution(recs[:1]) == recs[:1]


# --- reports ----------------------------------------------------------------------------------------------------


def _ex(rec: dict, name: str) -> dict:
    rec["key"]["execution"] = name
    return rec


def test_the_main_table_shows_the_execution_and_the_speed_up_over_eager() -> None:
    from bench.report.frames import frame_from_records
    from bench.report.main_table import build_tables

    recs = [record("m1", (10.0,)), _ex(record("m1", (4.0,), compile_s=3.5, first_call_ms=3500.0), "compile"),
            record("m2", (20.0,), family="g")]  # fmt: skip
    (table,) = build_tables(frame_from_records(recs))
    assert table.label_headers == ("family", "model", "execution")
    rows = {r.labels: r for g in table.groups for r in g.rows}
    assert set(rows) == {("fam", "m1", "eager"), ("fam", "m1", "compile"), ("g", "m2", "eager")}
    col = [c.key for c in table.columns].index("cpu:vs_eager")
    assert rows[("fam", "m1", "compile")].cells[col].value == pytest.approx(2.5)  # 10 ms eager / 4 ms compiled
    assert rows[("fam", "m1", "eager")].cells[col].value != rows[("fam", "m1", "eager")].cells[col].value  # blank
    compile_col = [c.key for c in table.columns].index("cpu:compile_s")
    assert rows[("fam", "m1", "compile")].cells[compile_col].value == pytest.approx(3.5)
    assert "MACs are counted on the eager graph" in table.caption


def test_an_eager_only_table_and_csv_look_as_before() -> None:
    from bench.report.frames import frame_from_records
    from bench.report.main_table import build_tables
    from bench.report.tidy import tidy_frame

    frame = frame_from_records([record("m1"), record("m2")])
    (table,) = build_tables(frame)
    assert table.label_headers == ("family", "model")
    assert "execution" not in table.caption.lower() and "execution" not in tidy_frame(frame).columns
    mixed = frame_from_records([record("m1"), _ex(record("m1"), "channels_last")])
    assert list(tidy_frame(mixed)["execution"]) == ["eager", "channels_last"]


def test_autocast_rows_join_the_float32_table_with_their_dtype() -> None:
    from bench.report.frames import frame_from_records
    from bench.report.main_table import build_tables

    auto = _ex(record("m1", (5.0,)), "autocast")
    auto["key"]["dtype"] = "bf16"
    (table,) = build_tables(frame_from_records([record("m1", (10.0,)), auto]))
    assert "fp32" in table.title
    assert {r.labels[2] for g in table.groups for r in g.rows} == {"eager", "autocast (bf16)"}


# --- compare ----------------------------------------------------------------------------------------------------


def test_compare_refuses_to_judge_different_executions_unless_asked(tmp_path: Path) -> None:
    from bench.compare import compare, load_side

    base = load_side(run_file(tmp_path / "b", [record("m1", (10.0, 10.1, 9.9))]))
    cur = load_side(run_file(tmp_path / "c", [_ex(record("m1", (5.0, 5.1, 4.9)), "compile")]))
    with pytest.raises(UsageError, match="--allow-execution-change") as e:
        compare(base, cur)
    assert "\n" not in str(e.value) and "eager" in str(e.value) and "compile" in str(e.value)
    report = compare(base, cur, allow_execution_change=True)
    assert [c.status for c in report.cells] == ["compared"]
    assert any("execution changed" in n for n in report.notes)
    both = load_side(run_file(tmp_path / "d", [record("m1"), _ex(record("m1"), "compile")]))
    assert {c.status for c in compare(base, both).cells} == {"compared", "added"}  # sharing eager: joined as usual


def test_the_compare_command_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    b = run_file(tmp_path / "b", [record("m1")])
    c = run_file(tmp_path / "c", [_ex(record("m1"), "compile")])
    assert main(["compare", str(b), str(c)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-execution-change" in err
    assert main(["compare", str(b), str(c), "--allow-execution-change", "--format", "json"]) in (0, 1)
