"""Golden verdicts: ``compare`` on published runs and deterministic perturbations of them, frozen.

``data/compare_golden/golden.json`` was written by ``bench/compare.py`` as it stood before it became a
package (issue 13), over the cases below: the published cv-backbones run with itself, with copies
perturbed cell by cell (latency x1.10 / x1.02 / with the machine, memory +6%, counts moved, accuracy
-2 points, failed / removed / added cells, threads and allocator changes) and a real quick run. Every
verdict, p-value (to 1e-9), exit status, the Markdown and the terminal table must stay as they were.

Regenerate only on purpose, after a change that is meant to move a verdict (say which in the commit):

    python tests/unit/test_compare_golden.py            # rewrite golden.json from the fixtures
    python tests/unit/test_compare_golden.py --fixtures PUBLISHED.json QUICK.json   # re-cut the fixtures
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data" / "compare_golden"
#: 18 of the 45 records of results/cv-backbones/20261129T131522Z-vm.json, unchanged (see ``KEEP``)
PUBLISHED = DATA / "cv-backbones-published.json"
#: a real quick run of cv-backbones (9 cells, batch 1) on another day and commit, as written
QUICK = DATA / "cv-backbones-quick.json"
GOLDEN = DATA / "golden.json"
#: published records kept: tiny vgg..efficientnet at batch 1 and 8, small vgg at 1 and 8, micro vgg..convnext
KEEP = (*range(10), 18, 19, *range(36, 42))

Doc = dict[str, Any]


# --------------------------------------------------------------------------- perturbations (deterministic)


def _scale_latency(rec: Doc, factor: float, ref: float | None = None) -> None:
    """Every latency sample (and the stored median) times ``factor``; the speed reference times ``ref``."""
    rec["samples"]["latency_ms"] = [x * factor for x in rec["samples"]["latency_ms"]]
    rec["metrics"]["latency_p50_ms"] *= factor
    if ref is not None:
        rec["samples"]["speed_ref_ms"] = [x * ref for x in rec["samples"]["speed_ref_ms"]]
        rec["metrics"]["speed_ref_ms"] *= ref


def latency(d: Doc) -> Doc:
    r = d["records"]
    _scale_latency(r[0], 1.10)  # +10%: regressed
    _scale_latency(r[1], 1.02)  # +2%: significant, within the threshold
    _scale_latency(r[2], 1.10, ref=1.10)  # the machine slowed down with it: the machine's
    _scale_latency(r[3], 1.10, ref=1.04)  # the machine moved 4%: inside the sensitivity band
    _scale_latency(r[4], 0.85)  # improved
    _scale_latency(r[5], 1.10)
    r[5]["metrics"]["speed_ref_drift"] = 0.2  # the reference moved during the measurement
    s = r[6]["samples"]["latency_ms"]
    r[6]["samples"]["latency_ms"] = [x * (1.6 if i % 3 == 0 else 1.1) for i, x in enumerate(s)]  # unstable
    r[7]["samples"]["latency_ms"] = r[7]["samples"]["latency_ms"][:2]  # too few samples for any test
    r[8]["samples"] = {}  # no raw samples: the stored median alone
    r[8]["metrics"]["latency_p50_ms"] *= 1.10
    _scale_latency(r[9], 1.10)
    r[9]["metrics"]["speed_ref_kind"] = "refnet fp32 cpu 1t v1"  # a reference of another kind: not used
    return d


def memory_base(d: Doc) -> Doc:
    d["records"][2]["metrics"]["memory_method"] = "cuda_max_allocated"  # an allocator's peak: no RSS floor
    return d


def memory(d: Doc) -> Doc:
    r = memory_base(d)["records"]
    r[0]["metrics"]["peak_memory_mb"] *= 1.06  # +6% of ~40 MB: within the CPU RSS noise floor
    r[11]["metrics"]["peak_memory_mb"] *= 1.06  # +6% of ~448 MB: regressed
    r[1]["metrics"]["peak_memory_mb"] *= 0.70  # improved
    r[2]["metrics"]["peak_memory_mb"] *= 1.06  # no floor: regressed
    del r[3]["metrics"]["peak_memory_mb"]  # only in the baseline
    return d


def counts(d: Doc) -> Doc:
    r = d["records"]
    r[0]["metrics"]["macs"] += 64
    r[1]["metrics"]["macs"] = round(r[1]["metrics"]["macs"] * 1.01)
    r[2]["metrics"]["params"] += 1000
    r[3]["metrics"]["macs"] = round(r[3]["metrics"]["macs"] * 0.99)
    return d


def accuracy_base(d: Doc) -> Doc:
    m = d["records"][17]["metrics"]  # stored in percent rather than as a fraction
    m["accuracy_mean"] *= 100
    m["accuracy_ci95"] *= 100
    return d


def accuracy(d: Doc) -> Doc:
    r = accuracy_base(d)["records"]
    r[12]["metrics"]["accuracy_mean"] -= 0.02  # -2 pt with a narrow CI: regressed
    r[13]["metrics"]["accuracy_mean"] -= 0.02
    r[13]["metrics"]["accuracy_ci95"] = 0.05  # a wide CI: too noisy
    r[14]["metrics"]["accuracy_mean"] -= 0.02
    del r[14]["metrics"]["accuracy_ci95"]  # no CI on one side: the threshold alone
    r[15]["metrics"]["accuracy_mean"] -= 0.005  # within the threshold
    r[16]["metrics"]["accuracy_mean"] += 0.05  # +5 pt (0.62 -> 0.67), beyond its CI: improved
    r[17]["metrics"]["accuracy_mean"] -= 2.0  # in percent on both sides
    return d


def _fail(rec: Doc, status: str, error: str) -> None:
    rec.update(status=status, error=error, metrics={}, samples={})


def cells_base(d: Doc) -> Doc:
    r = d["records"]
    _fail(r[4], "skipped", "skipped: needs cuda")  # not ok in the baseline: not compared
    _fail(r[5], "failed", "RuntimeError: boom")  # failed on both sides: not newly failing
    del r[3]  # only in current: added
    return d


def cells(d: Doc) -> Doc:
    r = d["records"]
    _fail(r[0], "failed", "RuntimeError: out of memory\nsecond line")
    _fail(r[1], "timeout", "timed out after 300 s")
    _fail(r[5], "failed", "RuntimeError: boom")
    del r[2]  # only in the baseline: removed
    return d


def threads(d: Doc) -> Doc:
    d["env"]["threads"] = 1
    return latency(d)


def system_malloc(d: Doc) -> Doc:
    for r in d["records"]:
        if r["status"] == "ok":
            r["metrics"]["latency_malloc"] = "default"  # system malloc, the published run's is steady
    return latency(d)


def same(d: Doc) -> Doc:
    return d


#: name -> (baseline file, its change, current file, its change, compare keywords)
CASES: dict[str, tuple[Path, Callable[[Doc], Doc], Path, Callable[[Doc], Doc], dict[str, Any]]] = {
    "published-aa": (PUBLISHED, same, PUBLISHED, same, {}),
    "latency": (PUBLISHED, same, PUBLISHED, latency, {}),
    "latency-bh": (PUBLISHED, same, PUBLISHED, latency, {"correction": "bh"}),
    "latency-no-speed-adjust": (PUBLISHED, same, PUBLISHED, latency, {"speed_adjust": False}),
    "latency-1pct-alpha-0.01": (PUBLISHED, same, PUBLISHED, latency, {"fail_on": "latency:1%", "alpha": 0.01}),
    "memory": (PUBLISHED, memory_base, PUBLISHED, memory, {}),
    "counts": (PUBLISHED, same, PUBLISHED, counts, {}),
    "counts-macs-2pct": (PUBLISHED, same, PUBLISHED, counts, {"fail_on": "latency:5%,macs:2%"}),
    "accuracy": (PUBLISHED, accuracy_base, PUBLISHED, accuracy, {}),
    "cells": (PUBLISHED, cells_base, PUBLISHED, cells, {}),
    "threads": (PUBLISHED, same, PUBLISHED, threads, {}),
    "threads-allowed": (PUBLISHED, same, PUBLISHED, threads, {"allow_env_change": True}),
    "allocator": (PUBLISHED, same, PUBLISHED, system_malloc, {}),
    "published-vs-quick": (PUBLISHED, same, QUICK, same, {}),
    "quick-vs-published": (QUICK, same, PUBLISHED, same, {}),
    "quick-aa": (QUICK, same, QUICK, same, {}),
}


# --------------------------------------------------------------------------- the outcome of one case


def _rounded(x: Any) -> Any:
    """Floats to 1e-9 (p-values, changes, intervals), recursively."""
    if isinstance(x, float):
        return round(x, 9)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


def _render_table(report: Any) -> str:
    from bench.compare import table_text

    return table_text(report)


def outcome(name: str, folder: Path) -> dict[str, Any]:
    """Write the case's two files into ``folder`` (the working directory) and compare them as the CLI does."""
    from bench.compare import compare, load_side, parse_fail_on, to_markdown

    bsrc, bfn, csrc, cfn, kw = CASES[name]
    kw = dict(kw)
    thresholds = parse_fail_on(kw.pop("fail_on", None))
    sides = []
    for label, src, fn in (("baseline.json", bsrc, bfn), ("current.json", csrc, cfn)):
        doc = fn(copy.deepcopy(json.loads(src.read_text(encoding="utf-8"))))
        (folder / label).write_text(json.dumps(doc), encoding="utf-8")
        sides.append(load_side(label))  # relative: labels and paths do not name the temporary folder
    report = compare(*sides, thresholds=thresholds, **kw)
    return {
        "exit_code": report.exit_code,
        "verdicts": {c.key.id: {m.metric: m.verdict.value for m in c.metrics} or c.status for c in report.cells},
        "report": _rounded(report.to_dict()),
        "markdown": to_markdown(report),
        "table": _render_table(report),
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(CASES))
def test_verdicts_match_the_golden_file(name: str, golden: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    got, want = json.loads(json.dumps(outcome(name, tmp_path), ensure_ascii=False)), golden[name]
    assert got["verdicts"] == want["verdicts"]  # the readable diff first: verdict per cell per metric
    assert got["exit_code"] == want["exit_code"]
    assert got["report"] == want["report"]  # every value, p-value and note of to_dict()
    assert got["markdown"] == want["markdown"]
    assert got["table"] == want["table"]


def test_the_golden_cases_cover_every_verdict_and_cell_status(golden: dict[str, Any]) -> None:
    """The fixture is only a proof if it exercises each outcome (a guard against a trimmed, toothless file)."""
    verdicts = {v for case in golden.values() for cell in case["verdicts"].values() if isinstance(cell, dict)
                for v in cell.values()}  # fmt: skip
    statuses = {c["status"] for case in golden.values() for c in case["report"]["cells"]}
    assert verdicts == {"improved", "regressed", "unchanged", "too noisy"}
    assert statuses == {"compared", "added", "removed", "failed", "not compared"}
    assert {case["exit_code"] for case in golden.values()} == {0, 1}
    assert golden["published-aa"]["exit_code"] == 0 and golden["latency"]["exit_code"] == 1


# --------------------------------------------------------------------------- regeneration (on purpose only)


def _cut_fixtures(published: Path, quick: Path) -> None:
    doc = json.loads(published.read_text(encoding="utf-8"))
    doc["records"] = [doc["records"][i] for i in KEEP]
    DATA.mkdir(parents=True, exist_ok=True)
    PUBLISHED.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    QUICK.write_text(quick.read_text(encoding="utf-8"), encoding="utf-8")


def _regenerate() -> None:
    import os
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        here = os.getcwd()
        os.chdir(tmp)
        try:
            for name in CASES:
                out[name] = outcome(name, Path(tmp))
        finally:
            os.chdir(here)
    GOLDEN.write_text(json.dumps(out, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fixtures"]:
        _cut_fixtures(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        _regenerate()
