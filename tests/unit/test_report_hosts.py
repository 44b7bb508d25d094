"""Reports of a run measured on several hosts (Ray, issue 15): one set of tables per host, the host in each title
and in the CSV, the hosts named in the environment; a run on one host is reported as before."""

from __future__ import annotations

import copy

from _published import published

from bench.report.document import build_report
from bench.report.frames import frame_from_runs
from bench.store import load_run

CV = published("cv-backbones")


def _two_hosts() -> dict:
    doc = copy.deepcopy(load_run(CV))
    doc["records"] = [r for r in doc["records"] if r["key"]["tier"] == "tiny"]
    for r in doc["records"]:
        r["host_env"] = {"host": "node-1" if r["key"]["batch_size"] == 1 else "<b>node-2</b>", "cpu_model": "X"}
    return doc


def test_each_host_gets_its_own_tables_and_the_environment_names_them() -> None:
    doc = _two_hosts()
    report = build_report(frame_from_runs([(None, doc)]), [doc], figures=False)
    titles = [t.title for t in report.tables]
    assert titles == ["cv-backbones · fp32 · infer · host node-1", "cv-backbones · fp32 · infer · host <b>node-2</b>"]
    one, two = report.tables
    assert [g.label for g in one.groups] == ["tiny · b1"] and [g.label for g in two.groups] == ["tiny · b8"]
    n1 = sum(r["key"]["batch_size"] == 1 for r in doc["records"])
    assert f"cells measured on 2 hosts: node-1 ({n1} cells)" in report.environment[-1]
    assert set(report.tidy["host"]) == {"node-1", "<b>node-2</b>"}
    from bench.report.render import html_page, markdown

    assert "<b>node-2</b>" not in html_page(report) and "<b>node-2</b>" not in markdown(report, "run")


def test_a_run_on_one_host_keeps_its_tables() -> None:
    doc = load_run(CV)
    report = build_report(frame_from_runs([(CV, doc)]), [doc], figures=False)
    assert all("· host" not in t.title for t in report.tables)
    assert not any("hosts:" in line for line in report.environment)
