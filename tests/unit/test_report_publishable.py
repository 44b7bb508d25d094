"""Reports that do not mislead and figures a paper can take (issue 20): the newest run unless --combine,
``load_results`` without baseline copies, what a cell measured before its accuracy step failed, one seed shown
as n=1, no ranking across profiles, labelled and faceted figures, a terminal table with a notes column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import report_data as rd
from rich.console import Console

from bench.cli import main
from bench.report.frames import frame_from_runs
from bench.report.main_table import build_tables
from bench.store import load_results, load_runs


def _set(path: Path, **header: Any) -> Path:
    doc = json.loads(path.read_text())
    doc.update(header)
    path.write_text(json.dumps(doc))
    return path


def test_report_without_arguments_reports_the_newest_run_only(tmp_path: Path, monkeypatch, capsys) -> None:
    """The user's 1-seed quick run was combined with the committed default runs into ``combined-2runs-*``."""
    results = tmp_path / "results"
    old = rd.write_run(results, "cv-synth", rd.cv_records(), started="2026-01-02T03:04:05Z")
    new = rd.write_run(results, "cv-synth", rd.cv_records(), started="2026-02-02T03:04:05Z", host="mine")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--format", "md"]) == 0
    captured = capsys.readouterr()
    names = {p.name for p in (tmp_path / "reports" / "cv-synth").iterdir()}
    assert f"{new.stem}.md" in names and f"{old.stem}.md" not in names and not any("combined" in n for n in names)
    assert "1 older run(s) left out (--combine combines them)" in captured.err
    assert main(["report", "--format", "md", "--combine"]) == 0
    assert any(p.name.startswith("combined-2runs-") for p in (tmp_path / "reports" / "cv-synth").iterdir())


def test_load_results_counts_a_baseline_copy_once(tmp_path: Path) -> None:
    run = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records())
    (tmp_path / "results" / "baselines").mkdir()
    shutil.copy(run, tmp_path / "results" / "baselines" / "main.json")
    assert len(load_runs(tmp_path / "results")) == 2
    assert len(load_results(tmp_path / "results")) == len(rd.cv_records()) == 24


def _table(records: list[dict[str, Any]], folder: Path, **header: Any):
    run = _set(rd.write_run(folder, "cv-synth", records), **header)
    return build_tables(frame_from_runs(load_runs(run)))


def test_a_cell_failed_at_accuracy_shows_what_it_measured(tmp_path: Path) -> None:
    records = [r for r in rd.cv_records() if r["key"]["tier"] == "tiny" and r["key"]["device"] == "cpu"]
    vit = next(r for r in records if r["key"]["family"] == "vit" and r["key"]["batch_size"] == 1)
    vit["status"], vit["error"] = "failed", "accuracy: RuntimeError: CUDA error: device-side assert"
    for r in records:  # accuracy is measured in one cell per variant: vit's failed there
        if r["key"]["family"] == "vit":
            for k in ("accuracy_mean", "accuracy_std", "accuracy_seeds"):
                r["metrics"].pop(k)
    (t,) = _table(records, tmp_path)
    group = "tiny · b1"
    p50 = t.cell(group, "vit", "cpu:latency_p50_ms")
    assert p50.text == "18.0" and p50.notes and p50.status == "measured"  # shown, with the failure as a footnote
    assert t.cell(group, "vit", "macs").text == "1.26"
    acc = t.cell(group, "vit", "accuracy")
    assert acc.text == "failed" and acc.status == "failed"
    assert any("accuracy: RuntimeError: CUDA error" in n for n in t.notes)
    assert not p50.best  # a failed cell is never the best of its group


def test_one_seed_shows_n_and_no_spread(tmp_path: Path) -> None:
    records = rd.cv_records()
    for r in records:
        if "accuracy_seeds" in r["metrics"]:
            r["metrics"].update(accuracy_seeds=1, accuracy_std=0.0)
    t = _table(records, tmp_path)[0]
    text = t.cell("tiny · b1", "resnet", "accuracy").text
    assert text == "91.0 (n=1)" and "±" not in text
    assert "Accuracy: one seed (n=1, no spread)" in t.caption


def test_cells_of_different_profiles_are_never_ranked_together(tmp_path: Path) -> None:
    records = rd.cv_records()
    mine = [r for r in records if r["key"]["family"] == "vit"]  # the user's quick run of one family
    a = _set(rd.write_run(tmp_path / "a", "cv-synth", [r for r in records if r not in mine]), profile="default")
    b = _set(rd.write_run(tmp_path / "b", "cv-synth", mine, started="2026-02-02T03:04:05Z"), profile="quick")
    (t, *_rest) = build_tables(frame_from_runs(load_runs([a, b])))
    assert not any(c.best for g in t.groups for r in g.rows for c in r.cells)
    (alone, *_rest) = _table(records, tmp_path / "c", profile="default")
    assert any(c.best for g in alone.groups for r in g.rows for c in r.cells)


def test_a_profile_listing_accuracy_without_a_spec_is_refused_before_measuring(tmp_path, monkeypatch, capsys) -> None:
    from bench import registry, runner
    from bench.spec import Profile, Suite, Tier, VariantSpec, freeze

    lin = VariantSpec(
        family="linear", builder="torch.nn:Linear", model_args=freeze({"in_features": 8, "out_features": 4})
    )
    prof = Profile(name="quick", metrics=("params", "accuracy"))
    suite = Suite(name="no-spec", description="x", input_kind="image", profiles=(prof,), default_profile="quick",
                  tiers=(Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(lin,)),))  # fmt: skip
    registry.SUITES.names()
    monkeypatch.setitem(registry.SUITES._items, "no-spec", lambda: suite)
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("measured"))
    assert main(["run", "no-spec", "--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lists the accuracy metric but declares no accuracy spec" in err


def test_list_counts_the_cells_a_run_has(capsys) -> None:
    """``list cv-backbones`` said "36 cells, about 6 minutes" for the default profile; the run has 45."""
    from bench.eta import cell_kind
    from bench.registry import get_suite
    from bench.runner import RunSettings, expand

    cells = expand(get_suite("cv-backbones"), RunSettings(profile="default", devices=("cpu",)))
    n_train = sum(cell_kind(c).startswith("train") for c in cells)
    assert len(cells) >= 45 and n_train >= 9  # 2 tiers x 2 batches + the micro tier's training cells
    assert main(["list", "cv-backbones"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"profile default: {len(cells)} cells on CPU ({n_train} of them training; the cost cells at least" in out
    assert "36 cells" not in out


def test_each_subcommand_help_lists_only_its_exit_codes(capsys) -> None:
    for name, has in (("list", ()), ("env", ()), ("report", ()), ("run", ("3  run",)), ("compare", ("1  compare",))):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert "exit codes" in out and "2  usage" in out, name
        for line in ("1  compare", "3  run"):
            assert (line in out) == (line in has), (name, line)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "``" not in capsys.readouterr().out  # no literal RST


def test_flops_prints_params_and_what_a_suite_path_resolved_to(capsys) -> None:
    assert main(["flops", "timm:resnet18", "--input-shape", "3,32,32"]) == 0
    assert "params 11.690 M (11,689,512)" in capsys.readouterr().out
    assert main(["flops", "cv-backbones/micro/vit", "--depth", "0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "resolved to vit_p4d6[embed_dim=" in out and "(timm:vit_tiny_patch16_224(" in out and "params 0.4" in out


def test_terminal_table_fits_120_columns_with_names_whole_and_cross_checks_below() -> None:
    import io

    from bench.report.terminal import print_summary

    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    long = "deit_distilled_p16[embed_dim=408,num_heads=6]"
    print_summary(console, [r for r in rd.cv_records({"vit": long}) if r["key"]["device"] == "cpu"], "cv-synth")
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 120 and "…" not in text  # nothing cut, nothing cropped
    assert "cpu vs" in text and "resnet" in text  # the last column is there
    i = next(i for i, line in enumerate(lines) if long[:22] in line)
    at = lines[i].index(long[:22])
    assert "".join(line[at : at + 22].strip() for line in lines[i : i + 3]) == long  # folded onto the next lines, whole
    assert "4.60[1]" in text and "4.60 (fvcore" not in text
    assert f"MACs by other counters: {long}: fvcore 4.25" in " ".join(text.split())


def _figures(records: list[dict[str, Any]], tmp_path: Path, monkeypatch) -> dict[str, Any]:
    """Build the report's figures, keeping the matplotlib figures (not their bytes) by slug."""
    import bench.report.figures as figures
    from bench.report.plotting import FigureFile

    made: dict[str, Any] = {}

    def keep(fig, slug, title, caption):
        made[slug] = fig
        return FigureFile(slug, title, caption, b"", b"")

    monkeypatch.setattr(figures, "finish", keep)
    run = rd.write_run(tmp_path, records[0]["key"]["suite"], records)
    figures.build_figures(frame_from_runs(load_runs(run)))
    return made


def test_figures_label_points_and_use_the_points_markers(tmp_path: Path, monkeypatch) -> None:
    made = _figures(rd.cv_records(), tmp_path, monkeypatch)
    lat = made["latency-vs-params"]
    labels = [t.get_text() for ax in lat.axes for t in ax.get_yticklabels()]
    assert "resnet (5.83M)" in labels and "vit (22.7M)" in labels  # every point has its labelled row
    acc = made["accuracy-vs-latency"]
    ax = acc.axes[0]
    points = {line.get_marker() for line in ax.lines if line.get_linestyle() == "None"}
    handles = acc.legends[0].legend_handles
    fronts = [line for line in ax.lines if line.get_linestyle() not in ("None", "")]
    assert fronts and all(len(line.get_xdata()) >= 2 for line in fronts)  # a line, even for a one-point front
    assert points and all(not hasattr(h, "get_marker") or h.get_marker() in points | {"None", ""} for h in handles)


def test_accuracy_axis_spans_the_points_drawn(tmp_path: Path, monkeypatch) -> None:
    """Only the micro tier had accuracy: its points sat under 3.2 ms on an axis running to 100+ ms."""
    records = rd.cv_records()
    for r in records:
        if r["key"]["tier"] == "small":
            for k in ("accuracy_mean", "accuracy_std", "accuracy_seeds"):
                r["metrics"].pop(k, None)
    ax = _figures(records, tmp_path, monkeypatch)["accuracy-vs-latency"].axes[0]
    assert ax.get_xlim()[1] < 30  # the tiny tier's points reach 18 ms; the small tier's (30-45 ms) are not drawn


def test_peak_memory_gives_each_tier_its_axis_and_scaling_is_faceted(tmp_path: Path, monkeypatch) -> None:
    made = _figures(rd.cv_records(), tmp_path / "cv", monkeypatch)
    mem = made["peak-memory"]
    assert len(mem.axes) == 2 * 2  # (cpu, cuda) x (tiny, small), each its own scale
    made = _figures(rd.seq_records(), tmp_path / "seq", monkeypatch)
    fig = made["scaling-cpu"]
    titles = {ax.get_title() for ax in fig.axes}
    assert {"recurrent · latency ∝ T^k", "attention · latency ∝ T^k"} <= titles
    assert all("_" not in ax.get_ylabel() for ax in fig.axes)  # human labels, never raw field names


@pytest.mark.slow
def test_figures_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """The three-panel latency figure's SVG clip ids differed between two `report` runs of the published results:
    constrained layout's last bits vary with the process (hash seed), and the ids hash the floats."""
    import os
    import subprocess
    import sys

    results = Path(__file__).resolve().parents[2] / "results"  # the published runs, as the lead regenerates them
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "bench.cli", "report", str(results), "--out", str(out), "--format", "md"],
                       check=True, env=env, capture_output=True, cwd=tmp_path)  # fmt: skip
        outs.append({str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.svg")})
    assert outs[0].keys() == outs[1].keys() and all(outs[0][k] == outs[1][k] for k in outs[0]), [
        k for k in outs[0] if outs[0][k] != outs[1].get(k)
    ]


def test_encode_rounds_the_solved_layout_before_the_svg() -> None:
    """The SVG's clip ids hash the axes' float positions; their last bits varied between processes."""
    from bench.report.plotting import encode, new_figure

    fig, axes = new_figure(2, 7.0, 5.0, nrows=3, height_ratios=[2.39, 1.0, 3.17])
    for ax in axes:
        ax.plot([1, 2], [3, 4])
    encode(fig)
    assert all(abs(round(v, 6) - v) < 1e-12 for ax in axes for v in ax.get_position().bounds)


def test_figures_draw_an_invalid_latency_hollow_and_labelled(tmp_path: Path, monkeypatch) -> None:
    """A latency the validity checks reject is shown (never hidden), marked INVALID, and the caption says so."""
    import bench.report.figures as figures
    from bench.report.plotting import FigureFile
    from bench.validity import INVALID, annotate_frame

    records = rd.cv_records()
    bad = next(r for r in records if r["key"]["family"] == "resnet" and r["key"]["tier"] == "tiny"
               and r["key"]["device"] == "cpu" and r["key"]["batch_size"] == 1)  # fmt: skip
    bad["metrics"].update(latency_validity=INVALID, latency_validity_reasons="load: the machine was busy")
    captions: dict[str, str] = {}
    made: dict[str, Any] = {}

    def keep(fig, slug, title, caption):
        made[slug], captions[slug] = fig, caption
        return FigureFile(slug, title, caption, b"", b"")

    monkeypatch.setattr(figures, "finish", keep)
    run = rd.write_run(tmp_path, bad["key"]["suite"], records)
    figures.build_figures(annotate_frame(frame_from_runs(load_runs(run))))  # as build_report does
    for slug in ("latency-vs-params", "accuracy-vs-latency"):
        texts = [t.get_text() for ax in made[slug].axes for t in ax.texts]
        assert any("INVALID" in t for t in texts), slug
        assert figures.INVALID_NOTE in captions[slug]
    hollow = [c for ax in made["latency-vs-params"].axes for c in ax.collections if len(c.get_facecolors()) == 0]
    assert len(hollow) == 1  # the one invalid point, and only it
    clean = rd.cv_records()
    run = rd.write_run(tmp_path / "clean", clean[0]["key"]["suite"], clean)
    captions.clear()
    figures.build_figures(annotate_frame(frame_from_runs(load_runs(run))))  # as build_report does
    assert not any(figures.INVALID_NOTE in c for c in captions.values())
