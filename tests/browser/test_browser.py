"""The course in a real browser (Debian's Chromium driven by Playwright): JupyterLab runs a
chapter and shows its widget, a RISE slide fits 1280x720, the static site's index and a chapter
page load with their links, formulas and figures.

Run with ``make test-browser`` (CI runs it after ``make test``). They need Playwright (the
``browser`` extra) and a Chromium executable (``CHROMIUM``, default ``/usr/bin/chromium``;
``apt-get install chromium``): when either is missing they are skipped, unless
``COURSE_REQUIRE_BROWSER=1`` (set by .ci/run), where that is a failure. Screenshots go to
``tests/browser/screenshots/`` (git-ignored).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "browser" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHAPTER = "02-exponentially-weighted-averages.ipynb"  # the smallest chapter, with the beta slider
sys.path.insert(0, str(ROOT / "tests"))
from test_lab import api, free_port, stop  # noqa: E402

if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
    import playwright.sync_api as sync_api  # noqa: E402  (required: an ImportError fails the run)
else:
    sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    yield page
    page.close()


def start_jupyter(root_dir: Path):
    """JupyterLab on ``root_dir`` (with the app exposed to scripts) on a free port."""
    port, token = free_port(), "browsertest"
    command = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            api(port, token, "/api/status")
            return proc, f"http://127.0.0.1:{port}", token
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                pytest.fail("JupyterLab did not start")
            time.sleep(0.5)


def run_all(page, url: str) -> None:
    """Open a notebook in JupyterLab, wait for its kernel, run every cell."""
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')", timeout=90_000)
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90_000)
    page.evaluate("async () => { await window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def test_jupyterlab_runs_a_chapter_and_its_slider_renders(page, tmp_path):
    from course_lib.teaching.student_copies import make_working_copy

    make_working_copy(ROOT / "notebooks", tmp_path)  # what `make lab` opens
    proc, base, token = start_jupyter(tmp_path)
    try:
        run_all(page, f"{base}/lab/tree/{CHAPTER}?token={token}")
        slider = page.wait_for_selector(".jp-OutputArea .widget-slider", timeout=180_000)
        slider.scroll_into_view_if_needed()
        page.wait_for_selector(".jp-OutputArea .widget-interact .jp-OutputArea-output img", timeout=60_000)
        page.screenshot(path=SHOTS / "lab-slider.png")
        # the slider is a widget, not its text
        texts = page.evaluate("() => Array.from(document.querySelectorAll('.jp-OutputArea-output pre')).map(e => e.innerText)")
        assert not any(t.startswith("interactive(") for t in texts)
        # moving it redraws the figure
        before = page.evaluate("() => document.querySelector('.widget-interact .jp-OutputArea-output img').src")
        page.click(".widget-slider .noUi-handle")
        page.keyboard.press("End")  # beta = 0.99
        page.wait_for_function("(b) => { const i = document.querySelector('.widget-interact .jp-OutputArea-output img');"
                               " return i && i.src !== b; }", arg=before, timeout=60_000)  # fmt: skip
        assert page.inner_text(".widget-slider .widget-readout").strip() == "0.99"
        page.screenshot(path=SHOTS / "lab-slider-moved.png")
        errors = page.evaluate("() => document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]').length")
        assert errors == 0
    finally:
        stop(proc)


def test_a_rise_slide_fits_1280x720_and_widgets_fall_back_to_the_figure(page, tmp_path):
    from course_lib.teaching.slides import write_presentation

    write_presentation(ROOT / "notebooks", tmp_path)  # what `make slides` opens
    proc, base, token = start_jupyter(tmp_path)
    try:
        run_all(page, f"{base}/lab/tree/{CHAPTER}?token={token}")
        page.wait_for_selector(".jp-OutputArea .widget-slider", timeout=180_000)
        page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
        time.sleep(2)
        page.goto(f"{base}/rise/{CHAPTER}?token={token}")
        page.wait_for_selector(".reveal .slides section.present", timeout=90_000)
        time.sleep(2)
        page.screenshot(path=SHOTS / "rise-title.png")
        box = page.evaluate("""() => { const s = document.querySelector('.reveal .slides section.present');
            const r = s.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
            scroll: s.scrollHeight, client: s.clientHeight}; }""")
        assert box["top"] >= 0 and box["left"] >= 0 and box["bottom"] <= 720 and box["right"] <= 1280, box
        assert box["scroll"] <= box["client"], box  # the title slide needs no scrolling
        footers = page.evaluate("() => Array.from(document.querySelectorAll('.jp-Notebook-footer')).filter(e => e.offsetParent !== null).length")
        assert footers == 0  # no "Click to add a cell" box
        sections = page.evaluate("() => Array.from(document.querySelectorAll('.reveal .slides > section')).map(s => s.innerText)")
        assert sum("Summary" in s.split("\n", 1)[0] for s in sections) == 1
        shown_solutions = page.evaluate("""() => Array.from(document.querySelectorAll('.reveal .jp-Cell')).filter(
            c => c.textContent.includes('np.log(0.5)') && getComputedStyle(c).display !== 'none').length""")
        assert shown_solutions == 0  # the solution cell is in the page, hidden (skip)
        headings = page.evaluate("""() => Array.from(document.querySelectorAll('.reveal .slides > section')).map(
            s => (s.querySelector('h2') || {textContent: ''}).textContent)""")
        n = next(i for i, h in enumerate(headings) if h.startswith("Try it"))
        page.evaluate(f"() => {{ window.location.hash = '#/{n}'; }}")
        page.wait_for_function("""() => { const h = document.querySelector('.reveal .slides section.present h2');
            return h && h.textContent.startsWith('Try it'); }""", timeout=30_000)
        time.sleep(1)
        page.screenshot(path=SHOTS / "rise-explorer.png")
        present = "document.querySelector('.reveal .slides section.present')"
        assert page.evaluate(f"() => {present}.querySelectorAll('img').length") >= 1  # the fallback figure
        assert "interactive(children" not in page.evaluate(f"() => {present}.innerText")
        overflow = page.evaluate(f"() => getComputedStyle({present}).overflowY")
        tall = page.evaluate(f"() => {present}.scrollHeight > {present}.clientHeight")
        assert not tall or overflow in ("auto", "scroll"), (tall, overflow)  # too tall: it scrolls
    finally:
        stop(proc)


def test_the_site_index_and_a_chapter_page(page, tmp_path):
    from course_lib.teaching import site

    chapters = site.build_site(ROOT / "notebooks", tmp_path, fast=True, only=["01-gradient-descent.ipynb", CHAPTER],
                               log=lambda *_: None)  # fmt: skip
    assert all(c.error is None for c in chapters)
    page.goto((tmp_path / "index.html").as_uri())
    page.screenshot(path=SHOTS / "site-index.png", full_page=True)
    rows = page.locator("table tr")
    assert rows.count() == 3
    assert "**" not in page.inner_text("table")
    page.click(f"text={chapters[1].title}")
    page.wait_for_load_state()
    assert page.url.endswith(chapters[1].page)
    assert page.locator("img").count() >= chapters[1].figures
    page.screenshot(path=SHOTS / "site-chapter.png")
    nav = page.locator("nav.course-nav").first
    assert nav.locator("a[rel=prev]").get_attribute("href") == chapters[0].page
    nav.locator("a", has_text="course index").click()
    page.wait_for_load_state()
    assert page.url.endswith("index.html")
