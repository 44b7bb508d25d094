"""Renderers: a :class:`~bench.report.document.Report` as GitHub Markdown, tidy CSV, LaTeX and HTML text.

Every renderer escapes every string it did not write itself (model names, errors, hosts, CPU names)
for its own format with the one helper of that format in ``bench.report.escape`` (result files are
untrusted: they come from pull requests). None of them reads the clock, so the same report always
renders to the same text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator

from bench.report.document import Report
from bench.report.escape import csv_text as frame_csv
from bench.report.escape import md_text, md_url, printable, tex_escape
from bench.report.model import Cell, Column, Table

__all__ = ["csv_text", "html_page", "latex", "markdown", "md_escape", "tex_escape"]

# ---------------------------------------------------------------------------------------------- shared


def _header_spans(columns: tuple[Column, ...]) -> Iterator[tuple[str, int]]:
    """Runs of consecutive columns with the same group: (group, count)."""
    i = 0
    while i < len(columns):
        j = i
        while j < len(columns) and columns[j].group == columns[i].group:
            j += 1
        yield columns[i].group, j - i
        i = j


def _status_line(report: Report) -> str:
    return ", ".join(f"{n} {s}" for s, n in report.status_counts) or "none recorded"


# ---------------------------------------------------------------------------------------------- Markdown


def md_escape(text: str) -> str:
    """Text that GitHub Markdown shows literally inside a table cell (``bench.report.escape.md_text``)."""
    return md_text(text)


def _md_cell(c: Cell) -> str:
    text = md_escape(c.text)
    if c.best:
        text = f"**{text}**"
    if c.notes:
        text += "<sup>" + ",".join(map(str, c.notes)) + "</sup>"
    return text


def markdown_table(t: Table) -> str:
    """One table as GitHub Markdown (bold = best in group; group rows in bold)."""
    heads = [*t.label_headers, *(f"{c.group} {c.header}".strip() for c in t.columns)]
    align = [":--"] * len(t.label_headers) + ["--:"] * len(t.columns)
    lines = ["| " + " | ".join(md_escape(h) for h in heads) + " |", "|" + "|".join(align) + "|"]
    width = len(heads)
    for g in t.groups:
        if g.label:
            lines.append("| " + " | ".join([f"**{md_escape(g.label)}**"] + [""] * (width - 1)) + " |")
        for r in g.rows:
            lines.append("| " + " | ".join([*(md_escape(x) for x in r.labels), *(_md_cell(c) for c in r.cells)]) + " |")
    out = [f"### {md_escape(t.title)}", ""]
    if t.caption:
        out += [md_escape(t.caption), ""]
    out += lines
    if t.notes:
        out += [""] + [f"<sup>{i}</sup> {md_escape(n)}  " for i, n in enumerate(t.notes, 1)]
    return "\n".join(out) + "\n"


def markdown(report: Report, stem: str) -> str:
    """The whole report as GitHub Markdown; figures are linked as ``<stem>.<slug>.png`` (and ``.svg``)."""
    out = [f"# {md_escape(report.title)}", "", f"Cells: {md_escape(_status_line(report))}.", ""]
    for t in report.tables:
        out.append(markdown_table(t))
    for t in report.scaling:
        out.append(markdown_table(t))
    for t in report.efficiency:
        out.append(markdown_table(t))
    for t in report.objectives:
        out.append(markdown_table(t))
    if report.figures:
        out += ["## Figures", ""]
        for f in report.figures:
            png, svg = md_url(f"{stem}.{f.slug}.png"), md_url(f"{stem}.{f.slug}.svg")
            out += [f"### {md_escape(f.title)}", "", f"![{md_escape(f.title)}]({png})", "",
                    f"{md_escape(f.caption)} ([SVG]({svg}))", ""]  # fmt: skip
    if report.figure_failures:  # a figure that could not be drawn is named, the tables stand
        out += ["## Figures not drawn", ""] + [f"- {md_escape(line)}" for line in report.figure_failures] + [""]
    if report.validity:  # invalid latency cells and busy starts (bench.validity)
        out += ["## Validity", ""] + [f"- {md_escape(line)}" for line in report.validity] + [""]
    out += ["## Environment", ""] + [f"- {md_escape(line)}" for line in report.environment]
    out += ["", "## Conventions", "", md_escape(report.convention), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- CSV


def csv_text(report: Report) -> str:
    """The tidy table (one row per stored cell, raw samples left out) as CSV with ``\\n`` line ends."""
    return frame_csv(report.tidy)


# ---------------------------------------------------------------------------------------------- LaTeX


def _tex_cell(c: Cell) -> str:
    text = tex_escape(c.text)
    if c.best:
        text = rf"\textbf{{{text}}}"
    if c.notes:
        text += r"\textsuperscript{" + ",".join(map(str, c.notes)) + "}"
    return text


def latex_table(t: Table) -> str:
    """One booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``) in a ``table`` float."""
    n_lab = len(t.label_headers)
    width = n_lab + len(t.columns)
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}", r"\small",
             r"\begin{tabular}{" + "l" * n_lab + "r" * len(t.columns) + "}", r"\toprule"]  # fmt: skip
    if t.has_column_groups:
        cells, rules, col = [""] * n_lab, [], n_lab + 1
        for group, n in _header_spans(t.columns):
            cells.append(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(group)}}}" if group else " & ".join([""] * n))
            if group:
                rules.append(rf"\cmidrule(lr){{{col}-{col + n - 1}}}")
            col += n
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(tex_escape(h) for h in [*t.label_headers, *(c.header for c in t.columns)]) + r" \\")
    for g in t.groups:
        lines.append(r"\midrule")
        if g.label:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{tex_escape(g.label)}}}}} \\")
        for r in g.rows:
            lines.append(" & ".join([*(tex_escape(x) for x in r.labels), *(_tex_cell(c) for c in r.cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    foot = [tex_escape(t.caption)] if t.caption else []
    foot += [rf"\textsuperscript{{{i}}}{tex_escape(n)}" for i, n in enumerate(t.notes, 1)]
    if foot:
        lines += [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize " + r" \\ ".join(foot) + "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def latex(report: Report) -> str:
    """The report's tables as a LaTeX fragment for ``\\input`` (needs ``\\usepackage{booktabs}``)."""
    out = [f"% {tex_escape(report.title)} -- generated by aigc-bench report; needs \\usepackage{{booktabs}}", ""]
    for t in [*report.tables, *report.scaling, *report.efficiency, *report.objectives]:
        out.append(latex_table(t))
    env = r" \\ ".join(tex_escape(line) for line in [*report.validity, *report.environment])
    out += [r"\begin{flushleft}\footnotesize", tex_escape(report.convention) + r" \\", env, r"\end{flushleft}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0; color: #1d2330; background: #fff; }
main { max-width: 1600px; margin: 0 auto; padding: 20px 20px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 6px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
p.caption, p.summary { color: #4a5263; font-size: 0.9rem; margin: 4px 0 10px; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.84rem; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 7px; white-space: nowrap; }
thead th { border-bottom: 1px solid #8a93a5; text-align: center; font-weight: 600; white-space: normal; vertical-align: bottom; }
thead tr:first-child th { border-top: 2px solid #1d2330; }
thead th.label { text-align: left; vertical-align: bottom; }
thead th.group { border-bottom: 1px solid #b9c0cc; }
thead th.blank { border-bottom: none; }
tbody tr.group th { text-align: left; font-style: italic; font-weight: 600; background: #f1f3f7; border-top: 1px solid #b9c0cc; }
tbody td.num { text-align: right; }
tbody:last-child tr:last-child td { border-bottom: 2px solid #1d2330; }
td.best strong { color: #0b6b2f; }
td.failed, td.timeout { color: #b3261e; }
td.skipped { color: #8a6d00; }
td.invalid { color: #b3261e; }
ol.notes { font-size: 0.8rem; color: #4a5263; margin: 6px 0 0; padding-left: 22px; }
ol.notes li { white-space: pre-wrap; word-break: break-word; }
figure { margin: 18px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ec; }
figcaption { font-size: 0.85rem; color: #4a5263; margin-top: 4px; }
ul.env { font-size: 0.85rem; padding-left: 20px; }
ul.env li { word-break: break-word; }
"""


def _h(text: str) -> str:
    # line breaks stay (notes show multi-line errors with pre-wrap); other controls are shown, not written
    return html.escape(printable(text, keep="\n"), quote=True)


def _html_cell(c: Cell) -> str:
    cls = ["num"] + (["best"] if c.best else []) + ([c.status] if c.status not in ("ok", "missing") else [])
    text = _h(c.text)
    if c.best:
        text = f"<strong>{text}</strong>"
    if c.notes:
        text += "<sup>" + ",".join(str(n) for n in c.notes) + "</sup>"
    return f'<td class="{" ".join(cls)}">{text}</td>'


def html_table(t: Table, table_id: str) -> str:
    """One table as an HTML section: two header rows when columns are grouped (by device)."""
    n_lab = len(t.label_headers)
    width = n_lab + len(t.columns)
    out = [f'<section class="report-table" id="{_h(table_id)}">', f"<h2>{_h(t.title)}</h2>"]
    if t.caption:
        out.append(f'<p class="caption">{_h(t.caption)}</p>')
    out += ['<div class="scroll"><table>', "<thead>"]
    if t.has_column_groups:
        row = [f'<th class="label" rowspan="2" scope="col">{_h(h)}</th>' for h in t.label_headers]
        for group, n in _header_spans(t.columns):
            if group:
                row.append(f'<th class="group" colspan="{n}" scope="colgroup">{_h(group)}</th>')
            else:
                row += ['<th class="blank"></th>'] * n
        out.append("<tr>" + "".join(row) + "</tr>")
        out.append("<tr>" + "".join(f'<th scope="col">{_h(c.header)}</th>' for c in t.columns) + "</tr>")
    else:
        heads = [f'<th class="label" scope="col">{_h(h)}</th>' for h in t.label_headers]
        out.append("<tr>" + "".join(heads + [f'<th scope="col">{_h(c.header)}</th>' for c in t.columns]) + "</tr>")
    out.append("</thead>")
    for g in t.groups:
        out.append("<tbody>")
        if g.label:
            out.append(f'<tr class="group"><th colspan="{width}" scope="rowgroup">{_h(g.label)}</th></tr>')
        for r in g.rows:
            out.append(
                "<tr>"
                + "".join(f"<td>{_h(x)}</td>" for x in r.labels)
                + "".join(_html_cell(c) for c in r.cells)
                + "</tr>"
            )
        out.append("</tbody>")
    out.append("</table></div>")
    if t.notes:
        out.append('<ol class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in t.notes) + "</ol>")
    out.append("</section>")
    return "\n".join(out)


def html_page(report: Report) -> str:
    """One self-contained HTML page: inline CSS, figures as base64 PNG, every outside string escaped."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="generator" content="aigc-bench report">',
           f"<title>{_h(report.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>",
           f"<h1>{_h(report.title)}</h1>", f'<p class="summary">Cells: {_h(_status_line(report))}.</p>']  # fmt: skip
    tables = [*report.tables, *report.scaling, *report.efficiency, *report.objectives]
    for i, t in enumerate(tables, 1):
        out.append(html_table(t, f"table-{i}"))
    if report.figures:
        out.append('<section class="figures">')
        out.append("<h2>Figures</h2>")
        for f in report.figures:
            data = base64.b64encode(f.png).decode("ascii")
            out.append(f'<figure id="fig-{_h(f.slug)}"><img src="data:image/png;base64,{data}" alt="{_h(f.title)}">'
                       f"<figcaption><strong>{_h(f.title)}.</strong> {_h(f.caption)}</figcaption></figure>")  # fmt: skip
        out.append("</section>")
    if report.figure_failures:
        items = "".join(f"<li>{_h(line)}</li>" for line in report.figure_failures)
        out.append(f'<section class="figures-failed"><h2>Figures not drawn</h2><ul class="env">{items}</ul></section>')
    if report.validity:  # invalid latency cells and busy starts (bench.validity)
        items = "".join(f"<li>{_h(line)}</li>" for line in report.validity)
        out.append(f'<section class="validity"><h2>Validity</h2><ul class="env">{items}</ul></section>')
    if report.history:  # `aigc-bench history` wrote its series and change points beside the reports
        out.append(f'<p class="history"><a href="{_h(report.history)}">History: series over runs and change '
                   "points</a></p>")  # fmt: skip
    out.append('<section class="environment"><h2>Environment</h2><ul class="env">')
    out += [f"<li>{_h(line)}</li>" for line in report.environment]
    out.append("</ul>")
    out.append(f'<p class="caption"><strong>FLOP convention.</strong> {_h(report.convention)}</p></section>')
    out += ["</main>", "</body>", "</html>", ""]
    return "\n".join(out)
