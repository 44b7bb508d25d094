"""The HTML report renders in headless Chromium: tables and figures present, user strings shown as text.

Skips when no Chromium is installed (Debian: ``apt-get install -y chromium``; or set ``CHROMIUM`` to a binary).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import report_data as rd  # noqa: E402

from bench.report import write_reports  # noqa: E402

pytestmark = pytest.mark.slow  # about 10 s: two report renders and two browser starts

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium binary; skips the module's tests (before any report is rendered) when there is none."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and (found := shutil.which(name)):
            return found
    pytest.skip("Chromium is not installed (apt-get install -y chromium, or set CHROMIUM=/path/to/binary)")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    rd.write_run(root / "results", "cv-synth", rd.cv_records({"vit": rd.XSS}),
                 env={"host": "<b>evil-host</b>", "cpu_model": "CPU & <i>co</i>", "threads": 2, "torch": "2.14.1"})  # fmt: skip
    written = write_reports(root / "results", root / "reports", "html")
    return next(p for p in written if p.suffix == ".html")


def _run(browser: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_dom_has_tables_figures_and_escaped_names(browser: str, page: Path, tmp_path: Path) -> None:
    done = _run(browser, page, tmp_path, "--dump-dom")
    assert done.returncode == 0 and "<table" in done.stdout, done.stderr[-2000:]
    dom = rd.TagCollector()
    dom.feed(done.stdout)
    tags = [t for t, _ in dom.tags]
    assert "script" not in tags  # the model named <script>alert(1)</script> did not become an element
    assert "b" not in tags and "i" not in tags  # nor did the host and CPU names' markup
    # the main table and the efficiency table (issue 16), four row groups each
    assert tags.count("table") == 2 and tags.count("tbody") == 8
    imgs = [a.get("src") or "" for t, a in dom.tags if t == "img"]
    assert len(imgs) == 3 and all(s.startswith("data:image/png;base64,") for s in imgs)
    text = "".join(dom.text)
    assert rd.XSS in text and "<b>evil-host</b>" in text and "CPU & <i>co</i>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in done.stdout


def test_screenshot_shows_the_page(browser: str, page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    done = _run(browser, page, tmp_path, f"--screenshot={shot}", "--window-size=1400,3000")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (3000, 1400)
    dark = img[..., :3].mean(axis=2) < 0.5  # text, table rules and plot lines
    rows = dark.any(axis=1).nonzero()[0]
    assert dark.mean() > 0.005 and rows.max() - rows.min() > 1500  # content from the title down past the figures
