"""The documentation site in a real browser (slow; CI installs Debian's ``chromium``).

The site is built with ``mkdocs build --strict`` (the figures must exist: run
``python scripts/make_figures.py --out docs/figures`` first, as CI does), served on loopback, and
every page is opened in headless Chromium. A probe script injected at the top of each page records
console errors and uncaught exceptions; after the page has loaded it reports, as JSON in the
dumped DOM:

- every table that is wider than its container (a cut-off or scrolled-away column, at 1280 px),
  and every table that needs its sideways scroll bar there (``scrolled``: split, wrap or
  transpose it);
- every image that did not load;
- every ``<math>`` element that has no size (not rendered) and any raw ``$…$`` LaTeX left over;
- anything laid out past the right edge of the content column (a table, code block, image), and
  a page that scrolls sideways;

and every request the page makes to another host is recorded from Chromium's network log (other
hosts resolve to nothing, so the test never reaches the network). The step-slider pages of the
energy-flow animations (``figures/*.html``) are opened too. Every internal link (page and
anchor) is resolved against the built files.
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

# every host but the loopback server resolves to nothing (nothing leaves the machine), and
# Chromium's own background requests (updates, sync, autofill) are off, so that the network log
# holds only what the page asked for
OFFLINE = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-features=AutofillServerCommunication,SpellcheckService,OptimizationHints",
)

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


def _slider_pages(site: Path) -> list[str]:
    """The step-slider pages of the animations (``animate_flow``'s .html), linked from pages."""
    return sorted(p.relative_to(site).as_posix() for p in site.glob("figures/*.html"))


def _other_hosts(net_log: Path, origin: str) -> list[str]:
    """URLs on other hosts that the page at ``origin`` asked for, from Chromium's network log.

    Only requests whose initiator is the page count: Chromium's own background requests
    (updates, accounts) have none.
    """
    if not net_log.is_file():
        return []
    try:
        events = json.loads(net_log.read_text(errors="replace")).get("events", [])
    except json.JSONDecodeError:  # a log cut short: read what the text holds
        events = []
    urls = {
        str(e["params"]["url"])
        for e in events
        if isinstance(e.get("params"), dict)
        and "url" in e["params"]
        and str(e["params"].get("initiator", "")).startswith(origin)
    }
    return sorted(u for u in urls if not u.startswith((origin, "data:", "blob:")))


def _report(url: str, tmp: Path, net_log: Path | None = None) -> dict:
    extra = [f"--log-net-log={net_log}"] if net_log else []
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            f"--user-data-dir={tmp}",
            *OFFLINE,
            *extra,
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
    math_pages = tutorial_images = 0
    for k, page in enumerate(_pages(site)):
        net_log = tmp_path / f"net-{k}.json"
        report = _report(f"{server}/{page}", tmp_path / "profile", net_log)
        for key in (
            "wide", "scrolled", "clipped", "overflow", "images", "unrendered", "raw", "errors"
        ):  # fmt: skip
            if report[key]:
                problems.append(f"{page}: {key}: {report[key]}")
        other = _other_hosts(net_log, server)
        if other:
            problems.append(f"{page}: requests to other hosts: {other}")
        math_pages += report["math"] > 0
        if page.startswith("tutorials/") and page != "tutorials/index.html":
            tutorial_images += report["imageCount"]
    assert not problems, "\n".join(problems)
    assert tutorial_images >= 5, "the tutorials should show the figures their code draws"
    assert math_pages >= 2, "Concepts and Initializations should show rendered equations"


def test_slider_pages_fit_and_load_nothing_from_other_hosts(
    site: Path, server: str, tmp_path: Path
) -> None:
    sliders = _slider_pages(site)
    assert sliders, "the site has no figures/*.html slider pages (make_figures.py writes them)"
    problems = []
    for k, page in enumerate(sliders):
        net_log = tmp_path / f"net-{k}.json"
        url = f"{server}/{page}"
        done = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}",
             *OFFLINE, f"--log-net-log={net_log}", "--virtual-time-budget=5000",
             "--run-all-compositor-stages-before-draw",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "<img" in done.stdout, f"{page}: no frame shown ({done.stderr[-300:]})"
        other = _other_hosts(net_log, server)
        if other:
            problems.append(f"{page}: requests to other hosts: {other}")
        if "max-width: 100%" not in (site / page).read_text(encoding="utf-8"):
            problems.append(f"{page}: its frames are not scaled to the window")
    assert not problems, "\n".join(problems)


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
