"""Tables and figures from stored results.

``write_reports(paths, out_dir, formats)`` (the ``aigc-bench report`` command) and
``write_run_reports(run_path)`` (called by ``aigc-bench run`` when it finishes) write, per suite,
``<out_dir>/<suite>/<stem>.{md,csv,tex,html}``, figures ``<stem>.<figure>.{png,svg}`` and
``<stem>.manifest.json``. ``<stem>`` is the run file's stem for one run, ``combined-<N>runs-<hash>``
for several. Same inputs give the same names and byte-identical files (see docs/reports.md).

Existing files are replaced only when they are ours: identical to the new bytes, or listed with
their current sha256 in the set's manifest (written by an earlier report of the same stem and not
edited since). Anything else is a conflict: an error (``ReportExistsError``), a new numbered stem,
or an overwrite, as the caller chooses.

Result files are untrusted (they come from pull requests): the suite name becomes a folder only
through ``bench.report.escape.safe_component`` (``../../x`` -> ``x-<hash>``), and nothing is written
whose path leaves the output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import UnknownNameError, UsageError

__all__ = ["FORMATS", "ReportExistsError", "parse_formats", "write_reports", "write_run_reports"]

#: report formats, in the order files are written; ``tex`` is accepted for ``latex``
FORMATS = ("md", "csv", "latex", "html")
_ALIASES = {"tex": "latex", "markdown": "md", "htm": "html"}
MANIFEST_KIND = "aigc-bench/report-manifest"
#: what to do when a report file exists and is not ours: raise, pick ``<stem>-N``, or replace it
CONFLICT_POLICIES = ("error", "suffix", "overwrite")


class ReportExistsError(UsageError):
    """A report file exists that this report did not write; nothing was written."""


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"md,html"`` (or a list) -> known format names in ``FORMATS`` order; unknown names raise."""
    names = [x.strip().lower() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    out = set()
    for n in names:
        n = _ALIASES.get(n, n)
        if n not in FORMATS:
            raise UnknownNameError("report format", n, FORMATS)
        out.add(n)
    if not out:
        raise UsageError(f"no report format given; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in out)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render_files(report: Any, stem: str, formats: Sequence[str], run_ids: Sequence[str] = ()) -> dict[str, bytes]:
    """File name -> bytes for one report set (manifest last)."""
    from bench.report import render

    files: dict[str, bytes] = {}
    if "md" in formats:
        files[f"{stem}.md"] = render.markdown(report, stem).encode()
    if "csv" in formats:
        files[f"{stem}.csv"] = render.csv_text(report).encode()
    if "latex" in formats:
        files[f"{stem}.tex"] = render.latex(report).encode()
    if "html" in formats:
        files[f"{stem}.html"] = render.html_page(report).encode()
    if "md" in formats or "html" in formats:
        for f in report.figures:
            files[f"{stem}.{f.slug}.png"] = f.png
            files[f"{stem}.{f.slug}.svg"] = f.svg
    manifest = {"kind": MANIFEST_KIND, "suite": report.suite, "runs": sorted(run_ids),
                "files": {name: _sha(data) for name, data in files.items()}}  # fmt: skip
    files[f"{stem}.manifest.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return files


def _owned(folder: Path, stem: str) -> dict[str, str]:
    """name -> sha256 of the files an earlier report with this stem wrote (from its manifest)."""
    try:
        doc = json.loads((folder / f"{stem}.manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND or not isinstance(doc.get("files"), dict):
        return {}
    return {str(k): str(v) for k, v in doc["files"].items()}


def _clashes(folder: Path, stem: str, files: Mapping[str, bytes]) -> list[Path]:
    owned = _owned(folder, stem)
    manifest = f"{stem}.manifest.json"
    out = []
    for name, data in files.items():
        p = folder / name
        if not p.exists():
            continue
        try:
            current = p.read_bytes()
        except OSError:
            out.append(p)
            continue
        ours = current == data or owned.get(name) == _sha(current) or (name == manifest and bool(owned))
        if not ours:
            out.append(p)
    return out


def _write_bytes(path: Path, data: bytes) -> None:
    """Write atomically (temporary file + rename) so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_set(
    folder: Path,
    stem: str,
    report: Any,
    formats: Sequence[str],
    run_ids: Sequence[str],
    on_conflict: str,
    root: Path | None = None,
) -> list[Path]:
    from bench.report.escape import inside, printable

    if root is not None and not inside(folder, root):
        raise UsageError(f"report folder {printable(folder)} is outside the output folder {printable(root)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create report folder {folder}: {e.strerror or e}") from None
    for n in range(1000):
        s = stem if n == 0 else f"{stem}-{n}"
        files = render_files(report, s, formats, run_ids)
        clash = _clashes(folder, s, files)
        if not clash or on_conflict == "overwrite":
            break
        if on_conflict == "error":
            names = ", ".join(str(p) for p in clash)
            raise ReportExistsError(f"report files exist that this report did not write: {names}; "
                                    "use --force to replace them or --out for another folder")  # fmt: skip
    else:
        raise UsageError(f"too many reports named {stem}-N in {folder}")
    stale = {k: v for k, v in _owned(folder, s).items() if k not in files}
    outside = [name for name in files if Path(name).name != name or not inside(folder / name, folder)]
    if outside:  # every name is ours or sanitised; this is the last guard before writing
        raise UsageError(f"report file name leaves the report folder: {printable(outside[0])}")
    try:
        for name, data in files.items():
            p = folder / name
            if not (p.exists() and p.read_bytes() == data):  # an identical file is left alone (and its mtime)
                _write_bytes(p, data)
        for name, sha in stale.items():  # a figure the new data no longer supports: ours, unedited, so remove it
            p = folder / name
            if Path(name).name == name and inside(p, folder) and p.is_file() and _sha(p.read_bytes()) == sha:
                p.unlink()
    except OSError as e:
        raise UsageError(f"cannot write reports in {folder}: {e.strerror or e}") from None
    return [folder / name for name in files]


def _unique_runs(runs: Sequence[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """One file per run id (``bench.store.unique_runs``: a baseline copy counts once), sorted by run id."""
    from bench.store.load import unique_runs

    return sorted(unique_runs(runs), key=lambda fd: str(fd[1]["run_id"]))


def write_reports(
    paths: str | Path | Iterable[str | Path] = "results",
    out_dir: str | Path = "reports",
    formats: str | Iterable[str] = FORMATS,
    reference_family: str | None = None,
    on_conflict: str = "error",
    newest_only: bool = False,
    left_out: list[str] | None = None,
) -> list[Path]:
    """Write one report set per suite found in ``paths`` (files or folders) under ``out_dir/<suite>/``.

    Several runs of a suite (shards, reruns) make one combined report; a cell measured by more than
    one run shows the latest run's record in the tables, while the CSV keeps every record. With
    ``newest_only`` (``aigc-bench report`` without ``--combine``) only the newest run of each profile of a suite is reported (one set each),
    and a line per suite saying how many older runs were left out is appended to ``left_out``.
    ``on_conflict`` is one of ``CONFLICT_POLICIES``. Returns the paths of the set's files.
    """
    from bench.store import load_runs

    if on_conflict not in CONFLICT_POLICIES:
        raise UnknownNameError("conflict policy", on_conflict, CONFLICT_POLICIES)
    fmts = parse_formats(formats)
    loaded = load_runs(paths)  # each file read and validated once
    if not loaded:
        shown = [str(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
        raise UsageError(f"no aigc-bench result files in {', '.join(shown) or '(nothing given)'}")
    by_suite: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for f, doc in loaded:
        by_suite.setdefault(str(doc["suite"]), []).append((f, doc))
    families = {str(r["key"]["family"]) for runs in by_suite.values() for _, d in runs for r in d["records"]}
    if reference_family is not None and reference_family not in families:
        raise UnknownNameError("reference family", reference_family, families)
    written: list[Path] = []
    for suite in sorted(by_suite):
        for runs in _report_groups(suite, _unique_runs(by_suite[suite]), newest_only, left_out):
            written += _write_suite(runs, suite, out_dir, fmts, reference_family, on_conflict)
    return written


def _report_groups(suite: str, runs: list[tuple[Path, dict[str, Any]]], newest_only: bool,
                   left_out: list[str] | None) -> list[list[tuple[Path, dict[str, Any]]]]:  # fmt: skip
    """The runs of one suite, as the report sets to write: all of them in one, or (``newest_only``) the newest
    run of each profile in its own set -- a quick run of one's own never joins a published default run, and a
    published executions run is reported beside the default one, not instead of it."""
    if not newest_only or len(runs) < 2:
        return [runs]
    by_profile: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for fd in runs:
        by_profile.setdefault(str(fd[1].get("profile")), []).append(fd)
    groups = []
    for profile in sorted(by_profile):
        found = by_profile[profile]
        newest = max(found, key=lambda fd: (str(fd[1].get("started_at") or ""), str(fd[1]["run_id"])))
        if len(found) > 1 and left_out is not None:
            left_out.append(f"{suite} ({profile} profile): reporting the newest run, {newest[1]['run_id']}; "
                            f"{len(found) - 1} older run(s) left out (--combine combines them)")  # fmt: skip
        groups.append([newest])
    return groups


def _write_suite(runs: list[tuple[Path, dict[str, Any]]], suite: str, out_dir: str | Path, fmts: Any,
                 reference_family: str | None, on_conflict: str) -> list[Path]:  # fmt: skip
    """One report set of ``runs`` (of ``suite``) under ``out_dir/<suite>/``."""
    from bench.report.document import build_report, run_stem
    from bench.report.escape import safe_component
    from bench.report.frames import frame_from_runs

    frame = frame_from_runs(runs)
    report = build_report(frame, [d for _, d in runs], reference_family, figures="md" in fmts or "html" in fmts)
    run_ids = [str(d["run_id"]) for _, d in runs]
    stem = run_stem([f for f, _ in runs], run_ids)
    folder = Path(out_dir) / safe_component(suite)  # the suite name comes from the file: never a path
    if (Path(out_dir) / "history" / "history.md").is_file():  # `aigc-bench history -o <out_dir>/history`
        report = replace(report, history="../history/history.md")
    return _write_set(folder, stem, report, fmts, run_ids, on_conflict, Path(out_dir))


def write_run_reports(
    run_path: str | Path,
    out_dir: str | Path | None = None,
    formats: str | Iterable[str] = FORMATS,
    reference_family: str | None = None,
) -> list[Path]:
    """Reports of one run file, written when ``aigc-bench run`` finishes: ``<out_dir>/<suite>/<run stem>.*``.

    ``out_dir`` defaults to ``./reports``. Rewriting a run's own reports (after ``--resume``) replaces
    them; a clash with files the report did not write never fails the finished run: the set goes to
    ``<run stem>-N.*`` instead.
    """
    return write_reports(
        [Path(run_path)], Path("reports") if out_dir is None else out_dir, formats, reference_family, "suffix"
    )
