"""The documentation site in a real browser (slow; CI installs Debian's ``chromium``).

The site is built with ``mkdocs build --strict`` (the figures must exist: run
``python scripts/make_figures.py --out docs/figures`` first, as CI does), served on loopback, and
every page is opened in headless Chromium. A probe script injected at the top of each page records
console errors and uncaught exceptions; after the page has loaded it reports, as JSON in the
dumped DOM:

- every table that is wider than its container (a cut-off or scrolled-away column, at 1280 px);
- every image that did not load;
- every ``<math>`` element that has no size (not rendered) and any raw ``$…$`` LaTeX left over;

and every internal link (page and anchor) is resolved against the built files.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
REPORT = "pc-site-report"

PROBE = "<script>\n" + (Path(__file__).with_name("site_probe.js")).read_text() + "</script>"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        "the site test needs a headless Chromium: apt-get install chromium (CI installs it)"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site, with the probe injected into every page."""
    if not (REPO / "docs" / "figures").is_dir():
        raise AssertionError("run `python scripts/make_figures.py --out docs/figures` first")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _pages(site: Path) -> list[str]:
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    return [p for p in pages if not p.startswith(("assets/", "search/"))]


def _report(url: str, tmp: Path) -> dict:
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            f"--user-data-dir={tmp}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(rf'<pre id="{REPORT}">(.*?)</pre>', done.stdout, re.S)
    assert found, f"{url}: the page never finished loading ({done.stderr[-500:]})"
    return json.loads(html.unescape(found.group(1)))


def test_every_page_renders_in_a_browser(site: Path, server: str, tmp_path: Path) -> None:
    problems = []
    math_pages = 0
    for page in _pages(site):
        report = _report(f"{server}/{page}", tmp_path / "profile")
        for key in ("wide", "clipped", "images", "unrendered", "raw", "errors"):
            if report[key]:
                problems.append(f"{page}: {key}: {report[key]}")
        math_pages += report["math"] > 0
    assert not problems, "\n".join(problems)
    assert math_pages >= 2, "Concepts and Initializations should show rendered equations"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        for key in ("href", "src"):
            value = values.get(key)
            if value and tag in ("a", "img", "link", "script"):
                self.hrefs.append(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_internal_link_resolves(site: Path) -> None:
    broken = []
    parsed: dict[Path, _Links] = {}

    def links_of(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    for page in site.rglob("*.html"):
        if page.name == "404.html":  # served at any path: its links are absolute, by design
            continue
        links = links_of(page)
        for href in links.hrefs:
            if urlparse(href).scheme or href.startswith(("//", "mailto:", "data:")):
                continue
            target, anchor = urldefrag(href)
            path = (page.parent / unquote(target)).resolve() if target else page
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
                continue
            if anchor and path.suffix == ".html":
                ids = links_of(path).ids
                if anchor not in ids:
                    broken.append(f"{page.relative_to(site)}: {href} (no anchor #{anchor})")
    assert not broken, "\n".join(broken[:40])
