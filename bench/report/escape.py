"""One escaper per output format for strings that come from result files (names, run ids, hosts, errors).

Result files come from pull requests in CI: every string in them is untrusted. Whatever is written
(a Markdown report or PR comment, a CSV opened in a spreadsheet, a LaTeX table, a terminal, a file
path) goes through the one helper of its format here, so that no string can add a table row, a
link, an image, a mention, a formula, a terminal escape sequence, rich markup or a path component.

- ``printable``: the base of every text format: line breaks and tabs become spaces, other control
  characters (C0, DEL, C1) and bidirectional overrides are shown as ``\\x1b`` / ``\\u202e``, lone
  surrogates as U+FFFD.
- ``term``: for rich (``printable`` + markup escaped).
- ``md_text`` / ``md_code`` / ``md_url``: CommonMark/GFM inline text, code spans and link targets.
- ``tex_escape``: LaTeX table cells and paragraphs.
- ``csv_text``: a frame as CSV with formulas neutralised and every record on its own line.
- ``safe_component``: a name from a file as one safe path component.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "csv_cell", "csv_text", "inside", "md_code", "md_text", "md_url", "printable", "safe_component", "tex_escape", "term",
]  # fmt: skip

# ---------------------------------------------------------------------------------------------- plain text

#: line and paragraph breaks (CommonMark's and Unicode's) and tabs: folded into one space
_BREAKS = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
#: shown as an escape: the other C0 controls (ESC, NUL, BEL, ...), DEL, C1 controls, bidirectional
#: embeddings/overrides/isolates (they reorder what a reader sees) and lone surrogates
_HIDDEN = re.compile(
    "[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _show(m: re.Match[str]) -> str:
    ch = m.group()
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"  # a lone surrogate cannot be encoded at all
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def printable(text: Any, keep: str = "") -> str:
    """``text`` as one line with nothing hidden: breaks and tabs -> a space, other controls -> ``\\x1b``-style text.

    Characters in ``keep`` (e.g. ``"\\n"`` for HTML, which shows line breaks itself) are left alone.
    """
    s = str(text)
    s = "".join(" " if ch in _BREAKS and ch not in keep else ch for ch in s) if any(c in s for c in _BREAKS) else s
    return _HIDDEN.sub(_show, s)


# ---------------------------------------------------------------------------------------------- terminal


def term(text: Any) -> str:
    """``text`` for rich's ``Console.print`` / ``Table.add_row``: no markup tag, link or escape sequence survives."""
    from rich.markup import escape

    return escape(printable(text))


# ---------------------------------------------------------------------------------------------- Markdown

# Backslash-escaped: emphasis, code, links/images ([ ]), tables (|), headings (#), strikethrough (~),
# GitHub math ($). With [ and ] escaped, ( ) and ! can no longer form a link or an image, so they are kept
# readable. <, > and & become entities (no HTML, no autolink <http://...>).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~$])")
#: GFM autolinks bare URLs (scheme://, www.) and e-mail addresses; an escaped ':' or '.' stops them
_MD_AUTOLINK = re.compile(r"(?<=[A-Za-z0-9])(:)(?=//)|(?<=\b[wW]{3})(\.)")
#: GitHub links @user mentions and #123 references in text (a backslash does not stop that): a zero-width
#: joiner after the sign breaks them and is invisible when read
_MD_MENTION = re.compile(r"([@#])(?=[A-Za-z0-9])")
#: a text that starts like a bullet or ordered list item or a thematic break (``- x``, ``+``, ``---``, ``1. x``)
#: would open a block inside a list item or paragraph; numbers (``-0.5``, ``1.25``) are left alone
_MD_BLOCK_START = re.compile(r"^(?:[-+](?=[\s-]|$)|\d{1,9}(?=[.)](?:\s|$)))")


def md_text(text: Any) -> str:
    """``text`` as literal inline Markdown (CommonMark + GFM tables): no emphasis, code, link, image, HTML,
    mention, table cell or line break can come out of it."""
    s = printable(text).strip()  # one line; no leading indentation (it would make a code block)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = html.escape(s, quote=False)
    s = _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), s)
    s = _MD_MENTION.sub("\\1\u200d", s)
    if m := _MD_BLOCK_START.match(s):
        s = (s[: m.end()] + "\\" + s[m.end() :]) if m.group()[0].isdigit() else "\\" + s
    return s


def md_code(text: Any, in_table: bool = False) -> str:
    """``text`` as a Markdown code span whose fence is longer than any backtick run inside.

    In a table cell a ``|`` must be escaped even inside code, and renderers disagree about a backslash
    before it; such text is written as escaped plain text instead.
    """
    s = printable(text)
    if not s.strip():
        return md_text(s)
    if in_table and ("|" in s or "\\" in s):
        return md_text(s)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_url(path: str) -> str:
    """A relative file name as a Markdown link destination (percent-encoded: spaces, parentheses, anything)."""
    from urllib.parse import quote

    return quote(str(path), safe="/._-")


# ---------------------------------------------------------------------------------------------- LaTeX

_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "×": r"$\times$", "±": r"$\pm$", "–": "--", "·": r"$\cdot$", "÷": r"$\div$",
    "∝": r"$\propto$", "²": r"\textsuperscript{2}", "≥": r"$\geq$", "≤": r"$\leq$",
    # after \\ (a table row's end) LaTeX reads [..] as a length and * as a modifier, even across the newline
    "[": "{[}", "]": "{]}", "*": "{*}",
}  # fmt: skip


def tex_escape(text: Any) -> str:
    """Text safe inside a LaTeX table cell or paragraph (specials escaped, our symbols in math mode, one line)."""
    return "".join(_TEX.get(ch, ch) for ch in printable(text))


# ---------------------------------------------------------------------------------------------- CSV

#: a spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection"), also after
#: leading blanks; full-width forms too (some locales convert them)
_FORMULA = re.compile(r"^[\s]*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def csv_cell(value: Any) -> Any:
    """A string cell that a spreadsheet would run as a formula gets a leading ``'`` (shown, never evaluated).

    Numbers, and strings that are plain numbers (``-0.5``), are left as they are; lone surrogates (not
    encodable) become U+FFFD.
    """
    if not isinstance(value, str):
        return value
    s = _SURROGATE.sub("\ufffd", value)
    if _FORMULA.match(s) and not _NUMBER.match(s):
        return "'" + s
    return s


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV with ``\\n`` line ends: one line per record, fields holding a quote, comma, ``\\r`` or
    ``\\n`` quoted, string cells (and headers) neutralised by ``csv_cell``; numeric columns untouched."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    df = frame.copy()
    df.columns = [csv_cell(str(c)) for c in df.columns]
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        if not (is_numeric_dtype(col.dtype) or is_bool_dtype(col.dtype)):  # numeric columns keep their numbers
            df.isetitem(i, col.map(csv_cell).astype(object))
    # pandas formats the values; with \r\n as terminator its csv writer quotes any field holding \r or \n
    # (with \n alone a bare \r is written unquoted and readers split the record there)
    text = df.to_csv(index=False, lineterminator="\r\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    lines = []
    for row in csv.reader(io.StringIO(text, newline="")):
        buf.seek(0)
        buf.truncate()
        writer.writerow(row)
        lines.append(buf.getvalue()[:-2])  # the record without its terminator; records end with \n
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- paths

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_COMPONENT = 100
#: device names Windows refuses as a file or folder name, with or without an extension (``nul.json``);
#: results and reports folders get copied around, so no component may be one of them
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
)


def safe_component(name: Any) -> str:
    """A name from a result file (a suite, a family, a device, a run id) as one safe path component.

    The one implementation (``bench.store`` has none): names from files never become path components as
    they are (``"../../x"``, ``"/etc"``, a NUL, a newline). Letters, digits, ``.``, ``_``, ``-`` are kept,
    anything else becomes ``-``; no leading dot or dash (no ``..``, hidden file or option-like name), no
    trailing dot or dash; never a name Windows reserves (``CON``, ``nul.json``: prefixed with ``_``);
    never empty; at most 100 characters. A name that is already safe is kept (``cv-backbones``); any other
    gets a short hash of the original, so two different names never share a folder and the same name
    always maps to the same one (``../../x`` -> ``x-9cdf6a50``).
    """
    raw = str(name)
    safe = _UNSAFE.sub("-", raw).lstrip(".-")[:_MAX_COMPONENT].rstrip(".-")
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = "_" + safe
    if safe == raw and safe:
        return safe
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[: _MAX_COMPONENT - 9]}-{digest}" if safe else f"x-{digest}"


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` stays under ``folder`` once ``..`` and relative parts are resolved (lexically)."""
    p = os.path.normpath(os.path.abspath(path))
    f = os.path.normpath(os.path.abspath(folder))
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)
