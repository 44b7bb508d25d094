"""Hostile strings from result files are inert in every output (issue 12, "Injection through strings").

Result files come from pull requests: a corpus of hostile strings goes into every string field of a run
(suite, tier, family, model, device, error, notes, run id, profile, env values, string metrics), then
every output is rendered and read back with a real reader: Markdown with markdown-it (CommonMark +
tables), CSV with ``csv.reader``, HTML with ``html.parser``, LaTeX by its tokens, the terminal with
rich forced into colour mode, and the report's files must stay under ``--out``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import report_data as rd
from _runfiles import ENV, record, run_file
from markdown_it import MarkdownIt
from rich.console import Console

from bench.cli import main
from bench.compare import compare, load_side, to_markdown
from bench.errors import EXIT_USAGE
from bench.report import write_reports
from bench.report.escape import csv_cell, md_code, md_text, printable, safe_component, term, tex_escape
from bench.spec import CellKey

LONG = "L" * 20_000 + "<b>"
HOSTILE = [
    "effnet\r| INJECTED-ROW | x |",
    "fam$\\invalidcmd{$",
    "x[/bold]y",
    "[/bold]",
    "[link=http://evil.example/l]click[/link]",
    "\x1b]0;pwned-title\x07",
    "\x1b[2J\x1b[31mred",
    '=HYPERLINK("http://evil.example/h","x")',
    "=cmd|' /C calc'!A0",
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "\ttab",
    "\rcr",
    "<script>alert(1)</script>",
    "</td></tr><tr><td>x",
    "<img src=http://evil.example/i.png>",
    '<a href="http://evil.example/a">a</a>',
    "![img](http://evil.example/md.png)",
    "[link](http://evil.example/md)",
    "<http://evil.example/auto>",
    "http://evil.example/bare www.evil.example",
    "`tick",
    "``double`` `x",
    "@octocat and @org/team",
    "#123",
    "*em* _em_ **b** ~~s~~",
    "- list\n1. item\n# heading\n> quote",
    "    indented",
    "line\nbreak\x0bvt\x0cff\x1cfs\x85nel\u2028ls\u2029ps",
    "{} %s %(x)s {0}",
    "nul\x00byte",
    "rtl\u202eevil\u202c",
    "\\textbf{x}\\input{/etc/passwd}",
    "a&b_c%d$e#f{g}h~i^j",
    "[3cm] * ^^M",
    "a|b\\",
    "-0.5",
    LONG,
]
#: the tags each output may contain: whatever the template writes, nothing a string brought in
MD_TAGS = {"h1", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "strong", "sup", "ul", "li", "img",
           "a", "br"}  # fmt: skip
HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "section", "div", "table",
             "thead", "tbody", "tr", "th", "td", "strong", "sup", "ol", "ul", "li", "figure", "img", "figcaption"}  # fmt: skip
COMPARE_TAGS = {"p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "blockquote",
                "details", "summary"}  # fmt: skip
#: every line break Python knows besides \n (str.splitlines)
BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: what a terminal would execute: any escape sequence except colours (SGR), e.g. OSC titles and hyperlinks
NON_SGR = re.compile(r"\x1b(?!\[[0-9;]*m)")
FORMULA_START = tuple("=+-@\t\r")
SGR = re.compile(r"\x1b\[[0-9;]*m")
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[+-]?\d+)?$", re.I)

# ---------------------------------------------------------------------------------------------- readers


def _render_md(text: str) -> tuple[str, rd.TagCollector]:
    html = MarkdownIt("commonmark").enable("table").render(text)
    tags = rd.TagCollector()
    tags.feed(html)
    return html, tags


def _inline_texts(text: str, split_escapes: bool = False) -> list[str]:
    """The plain-text runs markdown-it sees (outside code spans and HTML); ``split_escapes``: a backslash
    escape ends a run, as it does for GFM's autolink scanner."""
    md = MarkdownIt("commonmark").enable("table")
    if split_escapes:
        md.disable("text_join")
    out = []
    for tok in md.parse(text):
        for child in tok.children or ():
            if child.type == "text":
                out.append(child.content)
    return out


def _code_spans(text: str) -> list[str]:
    out = []
    for tok in MarkdownIt("commonmark").enable("table").parse(text):
        out += [c.content for c in tok.children or () if c.type == "code_inline"]
    return out


def _table_lines(md: str) -> int:
    """Rows a Markdown source's tables have, counted on the source (every row is one line starting with |)."""
    return sum(1 for line in md.split("\n") if line.startswith("|") and not set(line) <= set("|:- "))


def _assert_inert_markdown(md: str, allowed_tags: set[str], own_links: set[str] = frozenset()) -> str:
    assert not BREAKS.search(md), "a line break other than \\n"
    assert "\x1b" not in md and "\x00" not in md
    html, tags = _render_md(md)
    names = {t for t, _ in tags.tags}
    assert names <= allowed_tags, names - allowed_tags
    for tag, attrs in tags.tags:
        for a, v in attrs.items():
            assert not a.startswith("on"), (tag, a)
            if a in ("src", "href"):
                assert v in own_links, (tag, a, v)  # only the figures the report links itself
    assert html.count("<tr>") == _table_lines(md), "a string added or removed a table row"
    texts = " ".join(_inline_texts(md))
    assert not re.search(r"(?<![\w\u200d])@[A-Za-z0-9]", texts), "an @mention would notify someone"
    assert not re.search(r"(?<!\w)#\d", texts), "a #123 reference would link an issue"
    for run in _inline_texts(md, split_escapes=True):  # text outside code spans, split where a \ escapes
        assert "$" not in run, "GitHub would render $...$ as math"
        assert not re.search(r"[A-Za-z0-9]://|\bwww\.", run, re.I), f"a bare URL GitHub would link: {run[:80]}"
    return html


# ---------------------------------------------------------------------------------------------- the run


def _hostile_records() -> list[dict[str, Any]]:
    """One cpu cell per hostile string (as tier, family and model); every third fails with it as its error;
    two cells on a device named by the string; the string as notes and as a string metric."""
    out = []
    for i, s in enumerate(HOSTILE):
        k = rd.key("cv-hostile", s if i % 4 == 0 else "tiny", s, s, "cpu", 1)
        if i in (1, 5):
            k["device"] = s  # a hostile device makes a column group and a figure panel
        metrics = {"params": 1e6 * (i + 1), "macs": 2e8 * (i + 1), "latency_p50_ms": 1.0 + i, "peak_memory_mb": 10.0 + i,
                   "accuracy_mean": 0.5 + i / 100, "accuracy_std": 0.01, "dataset": s, "delta_pct": -0.5}  # fmt: skip
        if i == 4:
            metrics[HOSTILE[7]] = 1.0  # a metric named like a formula becomes a CSV column
        r = rd.record(k, metrics, *(("failed", s) if i % 3 == 2 else ()))
        r["notes"] = [s]
        out.append(r)
    return out


def _hostile_run(folder: Path, suite: str = "cv-hostile", records: list[dict[str, Any]] | None = None) -> Path:
    """A run file with hostile records, run id, profile and env values, and ``suite`` as its suite."""
    path = rd.write_run(folder, "cv-hostile", records if records is not None else _hostile_records())
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.update(suite=suite, run_id=HOSTILE[4] + HOSTILE[2] + HOSTILE[5], profile=HOSTILE[26])
    doc["env"].update(host=HOSTILE[8], cpu_model=HOSTILE[14], torch=HOSTILE[0], gpu_name=HOSTILE[18],
                      git_commit=HOSTILE[6], timm=HOSTILE[24])  # fmt: skip
    for r in doc["records"]:
        r["key"]["suite"] = suite
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The hostile run and its report set (md, csv, tex, html and figures)."""
    root = tmp_path_factory.mktemp("hostile")
    run = _hostile_run(root / "results")
    written = write_reports(run, root / "reports")
    return run, {p.name.split(".", 1)[1]: p for p in written}


# ---------------------------------------------------------------------------------------------- helpers


def test_printable_shows_controls_and_folds_breaks() -> None:
    assert printable("a\r\nb\tc\u2028d") == "a  b c d"
    assert printable("\x1b[2J\x00\x7f\x9b\u202e\ud800") == "\\x1b[2J\\x00\\x7f\\x9b\\u202e\ufffd"
    assert printable("a\nb", keep="\n") == "a\nb"
    assert printable("plain résumé · ∝") == "plain résumé · ∝"


def test_terminal_escape_survives_rich() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=500, color_system="truecolor")
    for s in HOSTILE[:-1]:
        console.print(term(s))
    out = console.file.getvalue()
    assert not NON_SGR.search(out)
    out = SGR.sub("", out)  # the colours rich's highlighter adds
    assert "[/bold]" in out and "[link=http://evil.example/l]click[/link]" in out


def test_markdown_escape_of_each_string_is_literal() -> None:
    for s in HOSTILE:
        md = f"| a |\n|---|\n| {md_text(s)} |\n"
        _assert_inert_markdown(md, MD_TAGS)
        html, _ = _render_md(md)
        if s is not LONG and "\\" not in s:  # shown as written (up to folded line breaks and shown controls)
            shown = printable(s).strip()
            assert re.sub(r"\s+", " ", shown.replace("\u200d", "")) in re.sub(
                r"\s+", " ", _unescape(html).replace("\u200d", "")
            )


def _unescape(html: str) -> str:
    import html as h

    return h.unescape(re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("s", ["`tick", "a``b", "``", " x ", "@octocat", "<img src=x>", "a|b", "a\\"])
def test_code_span_never_ends_early(s: str) -> None:
    for in_table in (False, True):
        span = md_code(s, in_table)
        md = f"| c |\n|---|\n| {span} |\n" if in_table else f"- {span}\n"
        html, tags = _render_md(md)
        assert {t for t, _ in tags.tags} <= {"table", "thead", "tbody", "tr", "th", "td", "ul", "li", "code", "p"}
        assert _unescape(html).split() and s.strip() in _unescape(html)


def test_csv_cell_neutralises_formulas_but_not_numbers() -> None:
    assert csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert [csv_cell(s) for s in ("+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", " =1")] == [
        "'+1+2", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "' =1"]  # fmt: skip
    assert [csv_cell(v) for v in ("-0.5", "+3", "1e-05", -0.5, 7, None, "ok")] == ["-0.5", "+3", "1e-05", -0.5, 7, None,
                                                                                  "ok"]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["../../../escaped_suite", "/etc/passwd", "..", ".", ".hidden", "a/b", "a\\b", "\x00", "c" * 300, "-rf"]
)
def test_safe_component(name: str) -> None:
    safe = safe_component(name)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", safe), safe
    assert safe_component(name + "x") != safe  # different names never share a folder
    assert safe_component("cv_backbones") == "cv_backbones"  # ordinary names are kept


# ---------------------------------------------------------------------------------------------- report files


def test_report_markdown_is_inert(hostile: tuple[Path, dict[str, Path]]) -> None:
    _, files = hostile
    md = files["md"].read_text(encoding="utf-8")
    stem = files["md"].name.removesuffix(".md")
    links = {f"{stem}.{k}" for k in files if k.endswith((".png", ".svg"))}
    html = _assert_inert_markdown(md, MD_TAGS, links)
    assert "INJECTED-ROW" in html and "<td>INJECTED-ROW</td>" not in html
    assert "Figures not drawn" not in md  # "$\invalidcmd{$" is drawn as typed, not parsed as mathtext


def test_report_csv_reads_back_every_record(hostile: tuple[Path, dict[str, Path]]) -> None:
    _, files = hostile
    rows = list(
        csv.reader(io.StringIO(files["csv"].read_bytes().decode("utf-8"), newline=""))
    )  # no newline translation
    head, body = rows[0], rows[1:]
    assert len(body) == len(HOSTILE) and {len(r) for r in body} == {len(head)}
    for cell in [*head, *(c for r in body for c in r)]:
        assert not cell.startswith(FORMULA_START) or NUMBER.match(cell), cell
    model = [r[head.index("model")] for r in body]
    assert sorted(m.removeprefix("'") for m in model) == sorted(HOSTILE)  # kept verbatim, formulas defused
    assert "'" + HOSTILE[7] in head  # a formula as a column name too
    delta = {r[head.index("delta_pct")] for r in body}
    assert delta == {"-0.5", ""}  # a negative number stays a number (failed cells have none)
    assert {r[head.index("host")] for r in body} == {"'" + HOSTILE[8]}


def test_report_latex_is_inert(hostile: tuple[Path, dict[str, Path]]) -> None:
    _, files = hostile
    tex = files["tex"].read_text(encoding="utf-8")
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]", tex)
    allowed = {"textbackslash", "textasciitilde", "textasciicircum", "textless", "textgreater", "textbar",
               "textsuperscript", "textbf", "textit", "multicolumn", "cmidrule", "toprule", "midrule", "bottomrule",
               "begin", "end", "caption", "centering", "small", "footnotesize", "par", "smallskip", "parbox",
               "linewidth", "times", "pm", "cdot", "div", "propto", "geq", "leq"}  # fmt: skip
    body = "\n".join(line for line in tex.split("\n") if not line.startswith("%"))
    words = {m.group(1) for m in re.finditer(r"\\([A-Za-z]+|.)", body, re.S) if m.group(1).isalpha()}
    assert words <= allowed, words - allowed  # no \input, \write, \def, ... came in with a string
    depth = 0
    for m in re.finditer(r"\\.|[{}]", body, re.S):  # braces balance (escaped ones do not count)
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
        assert depth >= 0
    assert depth == 0
    assert not re.search(r"\\\\\s*[\[*]", body), "a row end followed by [ or * takes an argument"


def test_report_html_is_inert(hostile: tuple[Path, dict[str, Path]]) -> None:
    _, files = hostile
    page = files["html"].read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", page)
    p = rd.TagCollector()
    p.feed(page)
    names = {t for t, _ in p.tags}
    assert names <= HTML_TAGS, names - HTML_TAGS
    for tag, attrs in p.tags:
        assert set(attrs) <= {"lang", "charset", "name", "content", "class", "id", "rowspan", "colspan", "scope",
                              "src", "alt"}, (tag, attrs)  # fmt: skip
        if "src" in attrs:
            assert (attrs["src"] or "").startswith("data:image/png;base64,")
    assert "<script>alert(1)</script>" in "".join(p.text)  # shown as text


def test_report_figures_are_not_parsed_as_tex(hostile: tuple[Path, dict[str, Path]]) -> None:
    _, files = hostile
    assert {"latency-vs-params.png", "accuracy-vs-latency.png", "peak-memory.png"} <= set(files)
    svg = files["latency-vs-params.svg"].read_text(encoding="utf-8")
    assert "<script" not in svg and "\x1b" not in svg


@pytest.mark.parametrize("suite", ["../../../escaped_suite", "ABS", "..", "a/../../b", "x/./../../../y", "."])
def test_report_never_writes_outside_out(tmp_path: Path, suite: str) -> None:
    if suite == "ABS":
        suite = str(tmp_path / "abs_target")
    run = _hostile_run(tmp_path / "results", suite, rd.cv_records(accuracy=False)[:2])
    out = tmp_path / "deep" / "out"
    before = {p for p in tmp_path.rglob("*")}
    assert main(["report", str(run), "--out", str(out), "--format", "csv,md"]) == 0
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == out.parent or p.is_relative_to(out) for p in new), sorted(map(str, new))
    (folder,) = [p for p in out.iterdir()]
    assert folder.name == safe_component(suite) and folder.is_dir()


def test_a_device_name_never_becomes_a_path(tmp_path: Path) -> None:
    """The scaling figure's file name holds the device; a device like ``../../x`` stays one component."""
    records = rd.seq_records()
    for r in records:
        r["key"]["device"] = "../../../dev"
    run = rd.write_run(tmp_path / "results", "seq-synth", records)
    written = write_reports(run, tmp_path / "out", "md")
    assert all(p.is_relative_to(tmp_path / "out" / "seq-synth") for p in written)
    assert any(".scaling-dev-" in p.name for p in written)


def test_a_failing_figure_never_costs_the_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    import bench.report.figures as figures

    def boom(*a: Any, **k: Any) -> None:
        raise ValueError("Image size of 1x99999999 pixels is too large\nsecond line")

    monkeypatch.setattr(figures, "_peak_memory", boom)
    run = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records())
    written = write_reports(run, tmp_path / "out", "md,csv")
    names = {p.name.split(".", 1)[1] for p in written}
    assert {"md", "csv", "latency-vs-params.png"} <= names and "peak-memory.png" not in names
    md = next(p for p in written if p.suffix == ".md").read_text()
    assert "## Figures not drawn" in md and "peak-memory: ValueError: Image size of 1x99999999 pixels" in md
    assert "second line" not in md
    assert any("figure not drawn: peak-memory" in r.getMessage() for r in caplog.records)


def test_a_failing_roofline_is_named_and_logged_like_any_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog) -> None:  # fmt: skip
    import bench.report.roofline as roofline

    def boom(*a: Any, **k: Any) -> None:
        raise ValueError("bad \x1b[31mlimits\nsecond line")

    monkeypatch.setattr(roofline, "roofline_figures", boom)
    run = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records())
    md = next(p for p in write_reports(run, tmp_path / "out", "md") if p.suffix == ".md").read_text()
    assert "roofline: ValueError: bad" in md and "second line" not in md and "\x1b" not in md
    assert any("figure not drawn: roofline" in r.getMessage() for r in caplog.records)


def test_lone_surrogate_is_refused_or_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = rd.write_run(tmp_path / "results", "cv-synth", rd.cv_records(accuracy=False)[:2])
    text = path.read_text(encoding="utf-8").replace('"synth-host"', '"bad\\ud800host"')
    path.write_text(text, encoding="utf-8")
    code = main(["report", str(path), "--out", str(tmp_path / "out"), "--format", "md,csv,tex,html"])
    err = capsys.readouterr().err
    assert code in (0, EXIT_USAGE) and "Traceback" not in err
    if code == 0:  # the store let it through: every file is valid UTF-8
        for p in (tmp_path / "out").rglob("*.*"):
            p.read_bytes().decode("utf-8")


# ---------------------------------------------------------------------------------------------- compare


def _compare_sides(tmp_path: Path) -> tuple[Path, Path]:
    base, cur = [], []
    for i, s in enumerate(HOSTILE):
        fam = HOSTILE[(i + 1) % len(HOSTILE)]
        base.append(record(s, (10.0, 10.1, 9.9) * 8, family=fam))
        slow = record(s, (13.0, 13.1, 12.9) * 8, family=fam, status="failed" if i % 5 == 0 else "ok")
        if i % 5 == 0:
            slow["error"] = s
        cur.append(slow)
    base.append(record(HOSTILE[19] + "-gone"))
    cur.append(record(HOSTILE[18] + "-new"))
    b = run_file(tmp_path / "b", base, run_id=HOSTILE[2] + HOSTILE[4], profile=HOSTILE[24],
                 env={**ENV, "host": HOSTILE[8]})  # fmt: skip
    c = run_file(tmp_path / "c", cur, run_id=HOSTILE[5] + HOSTILE[16], profile=HOSTILE[17], suite_hash=HOSTILE[20],
                 env={**ENV, "host": HOSTILE[6], "cpu_model": HOSTILE[2] + HOSTILE[18], "torch": HOSTILE[22]})  # fmt: skip
    return b, c


def test_compare_markdown_is_inert(tmp_path: Path) -> None:
    b, c = _compare_sides(tmp_path)
    report = compare(load_side(b), load_side(c), allow_env_change=True)
    assert report.regressions and report.with_status("failed") and report.env_changes and report.notes
    md = to_markdown(report)
    html = _assert_inert_markdown(md, COMPARE_TAGS)
    assert html.count("<details>") == 1 and html.count("<summary>") == 1
    assert "<img" not in html and "<a " not in html and "<script" not in html
    labels = {printable(x.key.id.split("/", 1)[1]) for x in report.cells}
    for span in _code_spans(md):  # every code span is a whole label, a side's name or an env change: none broke
        assert span.strip() in labels or span.strip() in {str(b), str(c), "--allow-env-change"} or "->" in span, span


def test_compare_cli_terminal_and_md(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    b, c = _compare_sides(tmp_path)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for fmt in ("table", "md"):
        code = main(["compare", str(b), str(c), "--format", fmt, "--allow-env-change", "-o", str(tmp_path / fmt)])
        out, err = capsys.readouterr()
        assert code == 1 and "Traceback" not in err and not err.strip(), err
        assert not NON_SGR.search(out + err), "an escape sequence reached the terminal"
        assert "x[/bold]y" in SGR.sub("", out)
        assert "\x1b]" not in (tmp_path / fmt).read_text(encoding="utf-8")
    assert "x[/bold]y" in (tmp_path / "table").read_text(encoding="utf-8")


def test_baseline_list_and_run_summary_on_a_terminal(tmp_path: Path, capsys, monkeypatch) -> None:
    from bench.report.terminal import ProgressView, print_summary

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("NO_COLOR", raising=False)
    run = _hostile_run(tmp_path / "results", "[/bold]" + HOSTILE[5])
    bdir = tmp_path / "baselines"
    assert main(["baseline", "save", str(run), "--name", "main", "--dir", str(bdir), "--force"]) == 0
    assert main(["baseline", "list", "--dir", str(bdir)]) == 0
    out, err = capsys.readouterr()
    assert not NON_SGR.search(out + err) and "[/bold]" in SGR.sub("", out) and not err

    console = Console(file=io.StringIO(), force_terminal=True, width=400, color_system="truecolor")
    records = [r for r in json.loads(run.read_text(encoding="utf-8"))["records"] if len(r["key"]["model"]) < 100]
    print_summary(console, records, HOSTILE[2])
    shown = console.file.getvalue()
    assert not NON_SGR.search(shown) and "INJECTED-ROW" in SGR.sub("", shown) and "x[/bold]y" in SGR.sub("", shown)

    console = Console(file=io.StringIO(), force_terminal=True, width=400, color_system="truecolor")
    with ProgressView(console, total=3) as view:
        for i, s in enumerate((HOSTILE[3], HOSTILE[4], HOSTILE[5])):
            key = CellKey("s", s, s, s, s, "fp32", 1, (3,), None, s)
            cell = SimpleNamespace(key=key)
            view.on_event("start", cell, None)
            view.on_event("phase", cell, s)
            view.on_event("done", cell, {"status": ("failed", "skipped", "ok")[i], "error": s})
    shown = console.file.getvalue()  # the live bar moves the cursor (its own escapes); nothing from the strings
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown and "\x1b]8;" not in shown
    shown = SGR.sub("", shown)
    assert "click[/link]" in shown and "\\x1b]0;pwned-title\\x07" in shown


def test_report_cli_paths_and_errors_are_one_printable_line(tmp_path: Path, capsys) -> None:
    run = _hostile_run(tmp_path / "results", HOSTILE[5] + "/../x\n\\input{/etc/passwd}")
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--format", "csv,tex"]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and out.count("report: ") == 3
    (tex,) = (tmp_path / "out").rglob("*.tex")
    assert not re.search(r"^\\input", tex.read_text(encoding="utf-8"), re.M)  # the title comment stays one line
    code = main(["report", str(run), "--out", str(tmp_path / "out"), "--reference-family", HOSTILE[5] + "\nx"])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE and "\x1b" not in err and len(err.strip().splitlines()) == 1


def test_latex_escape_holds_for_the_corpus() -> None:
    for s in HOSTILE:
        t = tex_escape(s)
        assert not re.search("[\x00-\x1f\x7f-\x9f]", t)
        rest = re.sub(r"\\text[a-z]+\{\}|\\[&%$#_{}]|\{[\[\]*]\}", "", t)  # without the escapes, no special is left
        assert not re.search(r"[\\&%$#_^~{}\[\]*]", rest), rest[:80]
