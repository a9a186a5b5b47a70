"""Both books, built from the executed notebooks, checked in headless Chromium: the smoke book
(``mimlib reproduce --profile smoke``: minutes on two cores, unchanged chapters are skipped;
``MIMLIB_BOOK_HTML`` may name an already built ``_build/html`` folder instead) and the real one,
as a fresh clone builds it from the committed results.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.book]


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver packages")
    pytest.importorskip("selenium")
    return browser, driver


@pytest.fixture(scope="module", params=["smoke", "cifar10-cpu"])
def html_root(request, tmp_path_factory) -> Path:
    """Both books: the smoke book (the pipeline check, computed from scratch, in a copy of the
    project so that the developer's own executed pages and build stay as they were; the copy
    keeps the smoke store and pages, so unchanged chapters are skipped) and the real one as a
    fresh clone builds it from the committed results (what readers see)."""
    _chromium()
    if request.param == "cifar10-cpu":
        clone = request.getfixturevalue("committed_book")
        assert clone.returncode == 0, clone.output
        return clone.root / "_build" / "html"
    given = os.environ.get("MIMLIB_BOOK_HTML")
    if given:
        return Path(given).resolve()
    copy = tmp_path_factory.mktemp("smoke-book") / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "_build", "__pycache__", "*.egg-info", ".pytest_cache", "cifar10-cpu"))
    # what a killed run leaves beside the pages must not break the strict build
    stale = copy / "book" / "executed" / ".09_ablation_training.1.running.ipynb"
    stale.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "notebooks" / "09_ablation_training.ipynb", stale)
    proc = subprocess.run([sys.executable, "-m", "mimlib.companion.run.cli", "reproduce", "--profile",
                           "smoke", "--quiet"], cwd=copy, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return copy / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="mimlib-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(service=Service(driver_path), options=options)
    drv.set_window_size(1400, 1000)  # a reader's wide browser window
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, page: Path) -> None:
    assert page.is_file(), f"{page} was not built"
    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_renders_its_figures_and_tables(browser, html_root: Path, chapter: str) -> None:
    _open(browser, html_root / "book" / "executed" / f"{chapter}.html")
    # every image has loaded (a broken one has naturalWidth 0)
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    assert broken == []
    text = browser.execute_script("return document.querySelector('main').innerText")
    assert "Traceback (most recent call last)" not in text
    errors = browser.execute_script(
        "return document.querySelectorAll('.output.traceback, .output.error, .stderr').length")
    assert errors == 0
    # numbered, captioned tables and figures, each naming the profile or run that produced it
    tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('table caption'))"
        ".map(c => c.textContent.trim())")  # textContent: folded tables count too
    figures = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure')).map(f => f.innerText)")
    assert tables, "no captioned table"
    assert all(t.startswith("Table ") for t in tables)
    # a table wider than the page scrolls sideways, its caption wraps to the page (book CSS)
    too_wide = browser.execute_script(
        "return Array.from(document.querySelectorAll('table caption'))"
        ".filter(c => c.offsetWidth > 0 && c.offsetWidth > c.closest('table')"
        ".parentElement.clientWidth + 1).map(c => c.textContent.slice(0, 60))")
    assert too_wide == []
    # the profile or a committed run that made it
    makers = ("SMOKE PROFILE", "profile cifar10-cpu", "GPU run on", "benchmarks.run on")
    for caption in tables + figures:
        assert any(maker in caption for maker in makers), caption
    assert all(f.startswith("Fig. ") for f in figures)
    # each figure and table carries the one line a report pastes: number, label, page, git
    for figure in figures:
        number = figure.split(" ", 2)[1].rstrip(".:")
        assert f"Cite as: mimlib book, Fig. {number} (label fig-" in figure, figure
        assert f"page {chapter}, profile " in figure and ", git " in figure
    everything = browser.execute_script("return document.querySelector('main').textContent")
    assert everything.count("Cite as: mimlib book, Table ") == len(tables)  # folded ones too
    # readers' words: no spec, checksum, registry key or result id in a table header, a
    # table's caption or anything under a figure (the provenance table keeps them, the CSV's
    # first line and the files' metadata too; figure titles, legends and ticks are drawn into
    # the image: tests/test_labels.py checks them where matplotlib sets them); labels short
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('main table th')).map(h => h.textContent)")
    provenance = browser.execute_script(
        "return Array.from(document.querySelectorAll('main table caption'))"
        ".filter(c => c.textContent.includes('Provenance of this page')).length")
    assert provenance <= 1
    shown = [t for t in tables if "Provenance of this page" not in t]
    for label in headers + shown + figures:
        assert not any(word in label for word in ("folder:", "sha256", "registry:", "id=")), label
    names = browser.execute_script(
        "return Array.from(document.querySelectorAll('main table[id], main figure[id]'))"
        ".map(e => e.id)")
    assert all(len(n) <= 40 and not re.search(r"[0-9a-f]{8}", n) for n in names), names
    # each table and figure carries the command that re-runs its own page
    assert everything.count(f"mimlib run {chapter}") >= len(tables) + len(figures)
    # each table links its CSV and each figure its PDF, copied into the built book
    for kind, selector, suffix in (("table", "table caption", ".csv"), ("figure", "figure", ".pdf")):
        hrefs = browser.execute_script(
            f"return Array.from(document.querySelectorAll('{selector}'))"
            ".map(e => (e.querySelector('a.download') || {}).href || null)")
        assert all(h and h.endswith(suffix) for h in hrefs), f"a {kind} without its {suffix}: {hrefs}"
        assert all(Path(urllib.parse.urlparse(h).path).stat().st_size > 0 for h in hrefs)
    # the page leads with its result: no code is shown above its first table or figure (code
    # cells are folded behind a toggle, the parameters too)
    code_above = browser.execute_script(
        "const first = document.querySelector('main table, main figure');"
        "return Array.from(document.querySelectorAll('main .cell_input'))"
        ".filter(e => !e.closest('details:not([open])') && e.offsetHeight > 0 && first &&"
        " (e.compareDocumentPosition(first) & Node.DOCUMENT_POSITION_FOLLOWING)).length")
    assert code_above == 0
    # legible at the page's width: each figure's smallest text (its PNG says which, in
    # points at 150 dpi) is at least the body text's size where the page shows the image
    body = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)")
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure img'))"
        ".map(i => [i.src, i.clientWidth, i.naturalWidth])")
    from PIL import Image

    for src, width, natural in shown:
        smallest = float(Image.open(urllib.parse.urlparse(src).path).text["MinFontPt"])
        px = smallest * 150 / 72 * width / natural
        assert px >= 0.95 * body, (src, f"{px:.1f} px text against a {body} px body")
    # every figure the notebook glues is rendered as an image (no missing glue)
    source = (ROOT / "notebooks" / f"{chapter}.ipynb").read_text()
    expected = source.count("{glue:figure}")
    images = browser.execute_script("return document.querySelectorAll('figure img').length")
    assert images >= expected and len(figures) >= expected


def test_the_claims_page_opens_with_the_forest_plot(browser, html_root: Path) -> None:
    """The verdict a reader takes in at a glance: the first figure of the claims page, before
    its table, an image with a caption that names the comparison."""
    _open(browser, html_root / "book" / "executed" / "15_claims.html")
    first = browser.execute_script(
        "const f = document.querySelector('main figure'), t = document.querySelector('main table');"
        "return [f.id, f.querySelector('img').naturalWidth, f.innerText,"
        " !!(f.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING)]")
    assert first[0] == "fig-claims-forest" and first[1] > 0 and first[3], first
    assert "MIM minus its control" in first[2] and "MIM minus the best post-hoc baseline" in first[2]


def test_front_matter_and_bibliography(browser, html_root: Path) -> None:
    _open(browser, html_root / "book" / "intro.html")
    text = browser.execute_script("return document.body.innerText")
    assert "MIM in one page" in text and "Choi" in text  # a resolved citation
    # the landing page opens with the result: the paper's claim, ours, a link to the claims
    headline = browser.execute_script(
        "const h = document.querySelector('.mimlib-headline'); return h && h.innerText")
    assert headline and "The paper's claim:" in headline and "What we measure" in headline
    # the verdict as a forest plot, its caption naming the comparison; then the count per
    # protocol
    figure = browser.execute_script(
        "const f = document.querySelector('.mimlib-headline figure');"
        "return f && [f.querySelector('img').naturalWidth, f.innerText,"
        " f.compareDocumentPosition(document.querySelector('.mimlib-headline ul'))"
        " & Node.DOCUMENT_POSITION_FOLLOWING]")
    assert figure and figure[0] > 0 and figure[2], figure
    assert "MIM minus its control" in figure[1] and "best post-hoc baseline" in figure[1]
    assert "corrected:" in headline and "faithful:" in headline
    assert headline.count("The paper's claims that hold here: ") >= 2
    link = browser.execute_script(
        "return document.querySelector('.mimlib-headline a').href")
    assert link.endswith("executed/15_claims.html")
    assert Path(urllib.parse.urlparse(link).path).is_file()
    # the formulas are typeset by the MathJax shipped inside the book (no CDN, works offline)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return document.querySelectorAll('mjx-container').length"))
    assert "\\frac" not in browser.execute_script("return document.body.innerText")
    _open(browser, html_root / "book" / "bibliography.html")
    entries = browser.execute_script("return document.querySelectorAll('.citation').length")
    assert entries >= 10
    _open(browser, html_root / "book" / "own_model.html")
    assert "multi_input_mixup" in browser.execute_script("return document.body.innerText")
