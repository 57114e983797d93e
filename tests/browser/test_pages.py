"""The HTML reader's experience, checked in Chromium on every page of the table of contents, offline."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from site_pages import HTML, SCREENSHOTS, config, offline_context, open_page, screenshot_path, toc_pages

PAGES = toc_pages()


def test_every_toc_page_was_built(toc_page):
    assert toc_page.html.exists(), f"{toc_page.docname} is in _toc.yml but {toc_page.html} was not built"


def test_no_console_errors_and_no_network(toc_page, inspected, light_context):
    report = inspected(toc_page)
    assert report["console_errors"] == [], f"{toc_page.docname}: {report['console_errors']}"
    assert light_context.blocked == [], f"pages asked for the network: {sorted(set(light_context.blocked))[:5]}"


def test_math_is_rendered_by_mathjax(toc_page, inspected):
    report = inspected(toc_page)
    assert report["mathUnrendered"] == [], f"{toc_page.docname}: math left unrendered: {report['mathUnrendered'][:3]}"
    assert report["mathErrors"] == 0, f"{toc_page.docname}: MathJax reported {report['mathErrors']} errors"
    assert report["rawMath"] == [], f"{toc_page.docname}: raw TeX delimiters in the text: {report['rawMath'][:3]}"


def test_every_image_loads(toc_page, inspected):
    report = inspected(toc_page)
    assert report["brokenImages"] == [], f"{toc_page.docname}: images that did not load: {report['brokenImages']}"


def test_outputs_hold_no_tracebacks_or_dead_widgets(toc_page, inspected):
    report = inspected(toc_page)
    assert report["tracebacks"] == 0, f"{toc_page.docname}: an output cell shows a traceback"
    assert report["widgetViews"] == 0, f"{toc_page.docname}: an ipywidgets view with nothing to render it"
    dead = [t[:60] for t in report["outputText"]
            if re.match(r"\s*(interactive|HBox|VBox|Output|\w*(Slider|Dropdown|Button|Progress))\(", t)
            or "Widget" in t and "Javascript" in t]
    assert dead == [], f"{toc_page.docname}: widget placeholders in the outputs: {dead}"


def test_long_text_outputs_scroll(toc_page, inspected):
    assert inspected(toc_page)["tallTextOutputs"] == 0, f"{toc_page.docname}: a long text output neither scrolls nor collapses"


def test_colab_launch_link_on_notebook_page(toc_page, inspected):
    repo = config()["repository"]
    org_repo = urlsplit(repo["url"]).path.strip("/").removesuffix(".git")
    path_to_book = (repo.get("path_to_book") or "").strip("/")
    notebook = "/".join(filter(None, [path_to_book, f"{toc_page.docname}.ipynb"]))
    expected = f"https://colab.research.google.com/github/{org_repo}/blob/{repo.get('branch', 'main')}/{notebook}"
    assert expected in inspected(toc_page)["links"], f"{toc_page.docname}: no Colab link {expected}"


def _resolve_internal(page_html: Path, href: str) -> tuple[Path, str] | None:
    parts = urlsplit(href)
    if parts.scheme or href.startswith("//") or href.startswith("mailto:"):
        return None
    target = page_html if parts.path == "" else (page_html.parent / unquote(parts.path)).resolve()
    return target, unquote(parts.fragment)


def test_internal_links_resolve(toc_page, inspected):
    report = inspected(toc_page)
    problems = []
    for href in report["links"]:
        resolved = _resolve_internal(toc_page.html, href)
        if resolved is None:
            continue
        target, fragment = resolved
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"{href} -> missing file")
            continue
        if fragment and target.suffix == ".html":
            ids = report["ids"] if target == toc_page.html.resolve() else re.findall(r'\bid="([^"]+)"', target.read_text())
            if fragment not in ids:
                problems.append(f"{href} -> no anchor #{fragment}")
    assert problems == [], f"{toc_page.docname}: broken internal links: {problems[:5]}"


def test_title_and_previous_next_navigation(toc_page, inspected):
    report = inspected(toc_page)
    assert report["title"].strip() and report["h1"].strip(), f"{toc_page.docname}: page has no title"
    position = [p.docname for p in PAGES].index(toc_page.docname)
    if position > 0:
        assert report["prev"], f"{toc_page.docname}: no link to the previous page"
    if position < len(PAGES) - 1:
        assert report["next"], f"{toc_page.docname}: no link to the next page"


def test_explorers_have_a_static_figure_below_them(toc_page, inspected):
    source = toc_page.source.read_text() if toc_page.is_notebook else ""
    report = inspected(toc_page)
    if "explorer(" in source:
        assert report["explorers"], f"{toc_page.docname}: the explorer cell is not on the page"
    for explorer in report["explorers"]:
        assert not explorer["hasOwnOutput"], f"{toc_page.docname}: explorer cell shows a dead control (tag it remove-output)"
        assert explorer["figureBelow"], f"{toc_page.docname}: explorer has no static small-multiples figure below it"


def test_figures_are_opaque_for_dark_mode(toc_page, inspected):
    """A transparent figure with dark text vanishes on the dark theme: every output image is opaque."""
    from PIL import Image

    for src in inspected(toc_page)["figureSources"]:
        path = (toc_page.html.parent / unquote(src)).resolve()
        if path.suffix.lower() != ".png":
            continue
        with Image.open(path) as image:
            if "A" in image.getbands():
                assert image.getchannel("A").getextrema()[0] == 255, f"{toc_page.docname}: {path.name} is transparent"


def test_chapter_starts_with_learning_goals_chapter_page(toc_page, inspected):
    text = inspected(toc_page)["firstParagraphs"]
    assert re.search(r"learning goals|you will learn|you will be able", text, re.I), \
        f"{toc_page.docname}: the chapter does not open with its learning goals"


def test_figure_plumbing_is_folded_chapter_page(toc_page, inspected):
    """Code that only draws a figure sits behind a toggle (tag hide-input); checks stay visible."""
    shown = inspected(toc_page)["figureCellsShowingCode"]
    assert shown == [], f"{toc_page.docname}: figure-only cells not tagged hide-input: {shown}"


def test_proofs_and_exercises_render_with_collapsed_solutions(toc_page, inspected):
    source = toc_page.source.read_text()
    report = inspected(toc_page)
    if "{prf:" in source:
        assert report["proofBlocks"] > 0, f"{toc_page.docname}: prf: directives in the source, no proof blocks on the page"
    n_exercises = source.count("{exercise}")
    assert report["exercises"] == n_exercises, f"{toc_page.docname}: {n_exercises} exercises in the source, {report['exercises']} on the page"
    assert report["solutions"] == source.count("{solution}")
    assert report["openSolutions"] == 0, f"{toc_page.docname}: {report['openSolutions']} solutions are not collapsed"


def test_front_page_lists_every_chapter(inspected):
    front = PAGES[0]
    links = {(front.html.parent / unquote(urlsplit(h).path)).resolve() for h in inspected(front)["links"]
             if _resolve_internal(front.html, h) and urlsplit(h).path}
    missing = [p.docname for p in PAGES if p.is_chapter and p.html.resolve() not in links]
    assert missing == [], f"the front page does not link to: {missing}"


def test_dark_mode_screenshots(browser):
    """One page in each mode; the dark one must really be dark, and both are saved for a maintainer to look at."""
    page_with_figure = next((p for p in PAGES if p.is_notebook), PAGES[0])
    for mode in ("light", "dark"):
        context = offline_context(browser, dark=(mode == "dark"))
        page, errors = open_page(context, page_with_figure.html.as_uri())
        assert page.evaluate("document.documentElement.dataset.theme") == mode
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot_path(page_with_figure, f"--{mode}")), full_page=True)
        assert errors == []
        context.close()


SEARCH_TERMS = {"chapters/03_synflow": "SynFlow", "chapters/08_interest_rates": "zero-coupon"}


def _search_terms():
    terms = []
    for page in PAGES:
        if not page.is_chapter:
            continue
        if page.docname in SEARCH_TERMS:
            terms.append((SEARCH_TERMS[page.docname], page))
        else:  # the longest word of the chapter's source title, a term that chapter surely contains
            source = page.source.read_text()
            title = re.search(r"^# (.+?)(?:\\n|\n|\"|$)", source, re.M)
            words = re.findall(r"[A-Za-z][A-Za-z-]{4,}", title.group(1) if title else page.docname)
            terms.append((max(words, key=len), page))
    return terms


@pytest.mark.parametrize("term, page", _search_terms(), ids=[f"{t}@{p.docname}" for t, p in _search_terms()])
def test_search_finds_each_chapter(term, page, light_context):
    search, errors = open_page(light_context, (HTML / "search.html").as_uri() + f"?q={term}")
    search.wait_for_function("/Search finished|did not match/.test(document.querySelector('#search-results')?.innerText || '')",
                             timeout=20_000)
    hits = search.eval_on_selector_all("#search-results li a", "els => els.map(e => e.getAttribute('href'))")
    search.close()
    assert errors == []
    assert any(h.split("#")[0].split("?")[0] == f"{page.docname}.html" for h in hits), f"search for {term!r}: {hits}"


def _network_available() -> bool:
    try:
        socket.create_connection(("arxiv.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _external_links() -> list[str]:
    links = set()
    repo_url = config()["repository"]["url"].rstrip("/")
    for page in toc_pages():
        if page.html.exists():
            links |= set(re.findall(r'href="(https?://[^"#]+)', page.html.read_text()))
    # launch buttons and repository links point where the book is published; they are not prose links
    skip = ("colab.research.google.com", "mybinder.org", repo_url, "github.com/executablebooks", "jupyterbook.org")
    return sorted(l for l in links if not any(s in l for s in skip))


@pytest.mark.skipif(not _network_available(), reason="EXTERNAL LINK CHECK SKIPPED: no network")
def test_external_links_answer():
    bad = []
    for url in _external_links():
        try:
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "book-link-check"})
            with urllib.request.urlopen(request, timeout=15) as response:
                if response.status >= 400:
                    bad.append(f"{url}: {response.status}")
        except Exception as exc:  # noqa: BLE001 - any failure is a broken link to report
            bad.append(f"{url}: {exc}")
    assert bad == [], f"broken external links: {bad}"


def test_animated_explorers_move_offline(toc_page, inspected):
    """Every explorer player (utils.widgets.animation) changes its frame when its slider moves."""
    source = toc_page.source.read_text() if toc_page.is_notebook else ""
    report = inspected(toc_page)
    players, errors = report["players"], report["console_errors"]
    if "animation(" in source:
        assert players, f"{toc_page.docname}: animation() in the notebook, no player on the page"
    bad = [p["why"] for p in players if not p["ok"]]
    assert bad == [] and errors == [], f"{toc_page.docname}: {bad or errors}"


def test_page_weight_within_budget(toc_page, inspected):
    """A chapter page with its images stays under 8 MB (animations embed their frames)."""
    images = {(toc_page.html.parent / unquote(src)).resolve() for src in inspected(toc_page)["figureSources"]
              if not src.startswith("data:")}  # embedded frames are counted in the page itself
    weight = toc_page.html.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())
    assert weight <= 8 * 2**20, f"{toc_page.docname}: {weight / 2**20:.1f} MB with its images"


def test_code_and_outputs_fit_the_column(toc_page, inspected):
    """At 1280 px no code cell or printed output scrolls sideways (80 characters fit)."""
    wide = inspected(toc_page)["wideBlocks"]
    assert wide == [], f"{toc_page.docname}: blocks wider than the column, e.g. {wide[:3]}"


def test_every_figure_is_numbered_described_and_referenced_chapter_page(toc_page, inspected):
    """Issue 18: no loose output image; every figure has a number, alt text that says what it
    shows (not a file hash) and a {numref} from the text."""
    report = inspected(toc_page)["figures"]
    assert report["loose"] == 0, f"{toc_page.docname}: {report['loose']} output images outside a figure"
    assert report["unnumbered"] == [], f"{toc_page.docname}: unnumbered figures {report['unnumbered']}"
    assert report["badAlt"] == [], f"{toc_page.docname}: alt texts that describe nothing {report['badAlt']}"
    assert report["unreferenced"] == [], f"{toc_page.docname}: figures no text refers to {report['unreferenced']}"
