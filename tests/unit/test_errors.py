"""Every exit code the CLI can end with is a named constant, documented in bench.errors, --help and the README."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import bench.errors as errors
from bench.cli import EPILOG

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_exit_code_is_named_and_documented_everywhere() -> None:
    """130 and 143 (Ctrl-C, SIGTERM) were missing from bench.errors, and the stall timeout from its table."""
    assert (errors.EXIT_INTERRUPTED, errors.EXIT_TERMINATED) == (128 + signal.SIGINT, 128 + signal.SIGTERM)
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert codes == {0, 1, 2, 3, 130, 143}
    doc = errors.__doc__ or ""
    readme = README.read_text(encoding="utf-8")
    for code in codes:
        assert re.search(rf"^\* {code} -- ", doc, re.M), code
        assert re.search(rf"(^|\s|, ){code}(,|\s)", EPILOG, re.M), code
        assert re.search(rf"^\| ({code}|[0-9, ]*\b{code}\b[0-9, ]*) \|", readme, re.M), code
    assert "stall timeout" in doc and "timeout_s" in doc
