"""Report files: byte-identical regeneration, escaping per format, file ownership, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import report_data as rd

import bench
from bench.cli import main
from bench.errors import EXIT_USAGE
from bench.report import ReportExistsError, write_reports, write_run_reports
from bench.report.render import md_escape, tex_escape
from bench.report.tables import KEY

TEX_NASTY = "a&b_c%d$e#f{g}h~i^j\\k"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cv run (a model named like an XSS attack, one failure, flagged FLOPs) and a seq run with analysis."""
    root = tmp_path_factory.mktemp("results")
    rd.write_run(root, "cv-synth", rd.cv_records({"vit": rd.XSS, "convnext": TEX_NASTY}))
    analysis = {"scaling": [{"family": "lstm", "metric": "latency_p50_ms", "exponent": 1.01, "r2": 0.999}]}
    rd.write_run(root, "seq-synth", rd.seq_records(), analysis=analysis)
    return root


@pytest.fixture(scope="module")
def reports(results: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("reports")
    return out, write_reports(results, out)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_results_give_byte_identical_reports(
    results: Path, reports: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    first, written = reports
    # the second generation runs in another process with another hash seed: no set or dict order leaks out
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(bench.__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "bench.cli", "report", str(results), "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    a, b = _files(first), _files(tmp_path)
    assert sorted(a) == sorted(b) and len(a) == len(written)
    for name in a:
        assert a[name] == b[name], f"{name} differs between two generations"
    # writing into the same folder again is fine: the files are this report's own
    assert write_reports(results, first) == written
    assert _files(first) == a


def test_file_names_and_kinds(reports: tuple[Path, list[Path]]) -> None:
    out, written = reports
    stem = "20260102T030405Z-synth-host"
    names = {str(p.relative_to(out)) for p in written}
    for suffix in ("md", "csv", "tex", "html", "manifest.json", "latency-vs-params.png", "latency-vs-params.svg",
                   "accuracy-vs-latency.png", "peak-memory.svg"):  # fmt: skip
        assert f"cv-synth/{stem}.{suffix}" in names
    assert f"seq-synth/{stem}.scaling-cpu.png" in names
    assert f"seq-synth/{stem}.accuracy-vs-latency.png" not in names  # no accuracy in the seq run
    png = (out / "cv-synth" / f"{stem}.peak-memory.png").read_bytes()
    svg = (out / "cv-synth" / f"{stem}.peak-memory.svg").read_text()
    assert png.startswith(b"\x89PNG") and b"Software" not in png
    assert "<dc:date>" not in svg and "<svg" in svg


def test_markdown_escapes_and_marks_best(reports: tuple[Path, list[Path]]) -> None:
    out, _ = reports
    md = next((out / "cv-synth").glob("*.md")).read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "**10.0**" in md  # resnet's cpu p50, the best of tiny · b1
    assert "4.60 (fvcore 4.25)<sup>1</sup>" in md
    assert "failed<sup>2</sup>" in md and "CUDA out of memory" in md
    assert "](20260102T030405Z-synth-host.latency-vs-params.png)" in md
    assert "MAC = multiply-accumulate; FLOPs = 2 × MACs" in md and "Synthetic CPU" in md
    assert md_escape("a|b*c_d") == r"a\|b\*c\_d"


def test_latex_is_booktabs_and_escaped(reports: tuple[Path, list[Path]]) -> None:
    out, _ = reports
    tex = next((out / "cv-synth").glob("*.tex")).read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr)"):
        assert rule in tex
    assert r"\textbf{10.0}" in tex
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex
    nasty = r"a\&b\_c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    assert tex_escape(TEX_NASTY) == nasty and nasty in tex
    assert "1.80$\\times$" in tex and "±" not in tex and "×" not in tex
    body = tex.split(r"\begin{tabular}", 1)[1].split(r"\end{tabular}", 1)[0]
    widths = {
        len(re.findall(r"(?<!\\)&", line))
        for line in body.splitlines()
        if line.endswith(r"\\") and "multicolumn" not in line
    }
    assert len(widths) == 1  # every row has the same number of cells


def test_html_is_self_contained_and_escaped(reports: tuple[Path, list[Path]]) -> None:
    out, _ = reports
    page = next((out / "cv-synth").glob("*.html")).read_text()
    p = rd.TagCollector()
    p.feed(page)
    tags = [t for t, _ in p.tags]
    assert "script" not in tags and "link" not in tags  # nothing executable, nothing fetched
    assert tags.count("table") == 2  # the main table and the efficiency table (docs/efficiency.md)
    imgs = [a["src"] or "" for t, a in p.tags if t == "img"]
    assert len(imgs) == 3 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert rd.XSS in "".join(p.text)  # shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<strong>10.0</strong>" in page
    assert 'class="num failed">failed<sup>2</sup>' in page
    seq = next((out / "seq-synth").glob("*.html")).read_text()
    assert "from the run&#x27;s analysis" in seq and "1.01" in seq  # the stored exponent


def test_csv_is_tidy(reports: tuple[Path, list[Path]]) -> None:
    out, _ = reports
    df = pd.read_csv(io.StringIO(next((out / "cv-synth").glob("*.csv")).read_text()))
    # An all-eager run's CSV keeps the key columns it had before the execution axis (issue 14): no execution column.
    key = [k for k in KEY if k != "execution"]
    assert len(df) == 24 and list(df.columns[: len(key)]) == key and "execution" not in df.columns
    assert "latency_samples" not in df.columns and "path" not in df.columns
    assert set(df["status"]) == {"ok", "failed"}
    assert df.loc[df["model"] == rd.XSS, "model"].size == 8  # strings are kept verbatim in data


def test_foreign_file_is_never_overwritten(results: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cv-synth"
    folder.mkdir()
    mine = folder / "20260102T030405Z-synth-host.tex"
    mine.write_text("my notes\n")
    with pytest.raises(ReportExistsError, match="--force"):
        write_reports(results / "cv-synth", tmp_path, "latex")
    assert mine.read_text() == "my notes\n" and len(list(folder.iterdir())) == 1  # nothing written
    written = write_reports(results / "cv-synth", tmp_path, "latex", on_conflict="suffix")
    assert written[0].name == "20260102T030405Z-synth-host-1.tex" and mine.read_text() == "my notes\n"
    write_reports(results / "cv-synth", tmp_path, "latex", on_conflict="overwrite")
    assert mine.read_text() != "my notes\n"


def test_own_unedited_reports_are_replaced_edited_ones_are_not(tmp_path: Path) -> None:
    run = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records()[:12])
    out = tmp_path / "reports"
    first = write_run_reports(run, out, formats="latex,csv")
    doc = json.loads(run.read_text())
    doc["records"] += rd.cv_records()[12:]  # as after `run --resume`
    run.write_text(json.dumps(doc))
    second = write_run_reports(run, out, formats="latex,csv")
    assert [p.name for p in second] == [p.name for p in first]  # replaced in place
    csv = next(p for p in second if p.suffix == ".csv")
    assert len(pd.read_csv(csv)) == 24
    # a file an earlier set listed but the new one does not: removed if unedited, kept if edited
    folder = out / "cv-synth"
    manifest_path = folder / f"{run.stem}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name, text in (("old.png", "unedited"), ("edited.png", "original")):
        (folder / f"{run.stem}.{name}").write_text(text)
        manifest["files"][f"{run.stem}.{name}"] = hashlib.sha256(text.encode()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    (folder / f"{run.stem}.edited.png").write_text("changed by someone")
    write_run_reports(run, out, formats="latex,csv")
    assert not (folder / f"{run.stem}.old.png").exists() and (folder / f"{run.stem}.edited.png").exists()
    csv.write_text(csv.read_text() + "edited,by,hand\n")
    with pytest.raises(ReportExistsError):
        write_reports(run, out, "latex,csv")
    third = write_run_reports(run, out, formats="latex,csv")  # the end of a run never fails on this
    assert third[0].name.endswith("-1.csv")
    manifest = json.loads((out / "cv-synth" / f"{run.stem}-1.manifest.json").read_text())
    assert manifest["kind"] == "aigc-bench/report-manifest" and set(manifest["files"]) == {p.name for p in third[:-1]}


def test_combined_report_of_several_runs(tmp_path: Path) -> None:
    recs = rd.cv_records()
    rd.write_run(tmp_path / "r", "cv-synth", recs[:12], started="2026-01-01T00:00:00Z")
    rd.write_run(tmp_path / "r", "cv-synth", recs[12:], started="2026-01-01T01:00:00Z")
    written = write_reports(tmp_path / "r", tmp_path / "out", "latex")
    assert written[0].name.startswith("combined-2runs-") and written[0].suffix == ".tex"
    tex = written[0].read_text()
    assert tex.count("run 20260101T0") == 2 and r"failed\textsuperscript{" in tex


def test_cli_report(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "report",
            str(results / "seq-synth"),
            "--out",
            str(tmp_path),
            "--format",
            "csv,tex",
            "--reference-family",
            "transformer",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "seq-synth").iterdir()) == [
        "20260102T030405Z-synth-host.csv", "20260102T030405Z-synth-host.manifest.json", "20260102T030405Z-synth-host.tex"]  # fmt: skip
    assert "vs transformer" in (tmp_path / "seq-synth" / "20260102T030405Z-synth-host.tex").read_text()
    assert "report: " in capsys.readouterr().out
    assert main(["report", str(results), "--out", str(tmp_path), "--format", "pdf"]) == EXIT_USAGE
    assert "unknown report format 'pdf'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing-here"), "--out", str(tmp_path)]) == EXIT_USAGE


def test_a_copied_run_file_counts_once(tmp_path: Path) -> None:
    """``baseline save`` copies run files under results/: the report is still the run's own."""
    run = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records())
    (tmp_path / "results" / "baselines").mkdir()
    (tmp_path / "results" / "baselines" / "main.json").write_bytes(run.read_bytes())
    written = write_reports(tmp_path / "results", tmp_path / "reports", "latex")
    assert written[0].name == f"{run.stem}.tex"
    assert written[0].read_text().count("run 20260102T030405Z-synth-host-abc123") == 1
