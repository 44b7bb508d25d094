"""Suite knowledge the report and the analysis read from ``Suite``: the reference family and crossover pairs.

Also: those fields stay out of the stored definition (so its hash, which resume, merge and compare check,
is the one of the published runs), and ``write_reports`` reads each result file once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import report_data as rd
from _published import published

from bench import registry, store
from bench.errors import UnknownNameError
from bench.report import write_reports
from bench.report.tables import build_tables, frame_from_records
from bench.spec import Suite, Tier, VariantSpec

REPO = Path(__file__).resolve().parents[2]


def _suite(name: str, families: tuple[str, ...], **fields: object) -> Suite:
    variants = tuple(VariantSpec(family=f, builder="torch.nn:Linear") for f in families)
    tier = Tier(name="t", target_params=1, variants=variants, input_shape=())
    return Suite(name=name, description="toy", input_kind="image", tiers=(tier,), profiles=(), **fields)


def _register(monkeypatch: pytest.MonkeyPatch, suite: Suite) -> None:
    registry.SUITES.names()  # load the built-in suites first
    monkeypatch.setitem(registry.SUITES._items, suite.name, lambda: suite)
    monkeypatch.setitem(registry._suite_cache, suite.name, suite)


@pytest.mark.parametrize("name", ["cv-backbones", "seq-backbones"])
def test_the_stored_definition_of_a_built_in_suite_is_unchanged(name: str) -> None:
    """The declaration part of the published run's ``suite_definition`` (what its hash covers, with the
    resolved variants, which these fields do not touch) is what the suite declares today."""
    stored = json.loads(published(name).read_text(encoding="utf-8"))["suite_definition"]
    suite = registry.get_suite(name)
    assert suite.reference_family is not None
    declared = json.loads(json.dumps(suite.to_dict(), default=repr))
    assert declared == {k: v for k, v in stored.items() if k != "resolved"}


def test_view_fields_stay_out_of_the_definition() -> None:
    plain = _suite("toy", ("a", "b"))
    viewed = _suite("toy", ("a", "b"), reference_family="a", crossovers=(("b", "a"),))
    assert viewed.to_dict() == plain.to_dict()
    assert not set(Suite.VIEW_FIELDS) & set(viewed.to_dict())


@pytest.mark.parametrize("fields", [{"reference_family": "resnt"}, {"crossovers": (("a", "c"),)}])
def test_a_suite_names_only_its_own_families(fields: dict[str, object]) -> None:
    with pytest.raises(UnknownNameError, match="family of suite 'toy'"):
        _suite("toy", ("a", "b"), **fields)


def test_the_ratio_columns_follow_the_suites_reference_family(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = frame_from_records(rd.cv_records())
    (t,) = build_tables(frame)
    assert {c.header for c in t.columns if c.key == "cpu:ratio"} == {"vs resnet"}  # unknown suite: the fallback
    _register(monkeypatch, _suite("cv-synth", ("resnet", "vit", "convnext"), reference_family="vit"))
    (t,) = build_tables(frame)
    assert {c.header for c in t.columns if c.key == "cpu:ratio"} == {"vs vit"}
    assert t.cell("tiny · b1", "vit", "cpu:ratio").text == "1.00×"
    _register(monkeypatch, _suite("cv-synth", ("resnet", "vit", "convnext")))  # declares none: no ratios
    (t,) = build_tables(frame)
    assert not [c for c in t.columns if c.key.endswith(":ratio")]


def test_write_reports_reads_each_result_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records(), started=f"2026-01-0{d}T03:04:05Z")
            for d in (1, 2)]  # fmt: skip
    reads: list[Path] = []
    loader = sys.modules[store.load_runs.__module__]  # where load_run and load_runs look read_json up
    real = loader.read_json

    def counting(path: Path | str) -> object:
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(loader, "read_json", counting)
    write_reports(tmp_path / "results", tmp_path / "out", "csv")
    assert sorted(reads) == sorted(runs)
