"""Fixtures for the browser suite: one Chromium for the session, each page opened once and inspected."""

from __future__ import annotations

import pytest

from site_pages import CHROMIUM, HTML, SCREENSHOTS, launch, offline_context, open_page, screenshot_path, toc_pages

INSPECT = r"""() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER']);
  const rawMath = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el && el !== article; el = el.parentElement) {
        if (skip.has(el.tagName) || el.classList.contains('highlight')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }});
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    if (t.includes('$$') || t.includes('\\[') || t.includes('\\(') || t.includes('\\begin{')) rawMath.push(t.trim().slice(0, 80));
  }
  const cells = [...article.querySelectorAll('div.cell')];
  const outputs = [...article.querySelectorAll('.cell_output')];
  const outputText = outputs.map(o => o.innerText);
  const explorerCells = cells.map((c, i) => [c, i]).filter(([c]) => {
      const src = c.querySelector('.cell_input');
      return src && /\bexplorer\(/.test(src.innerText);
  });
  return {
    title: document.title,
    h1: (article.querySelector('h1') || {}).innerText || '',
    mathTotal: article.querySelectorAll('.math').length,
    mathUnrendered: [...article.querySelectorAll('.math')].filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    mathErrors: article.querySelectorAll('mjx-merror').length,
    rawMath,
    brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
    figureSources: [...article.querySelectorAll('.cell_output img, figure img')].map(i => i.getAttribute('src')),
    outputText,
    tracebacks: outputs.filter(o => o.querySelector('.traceback, .output.error') || /Traceback \(most recent call last\)/.test(o.innerText)).length,
    widgetViews: article.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    // a figure below an explorer: a cell's output image or a numbered (glued) figure, before the
    // next explorer
    explorers: explorerCells.map(([c, i], k) => ({
        hasOwnOutput: !!c.querySelector('.cell_output'),
        figureBelow: [...article.querySelectorAll('.cell_output img, figure img')].some(p =>
            (c.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING) &&
            (k + 1 === explorerCells.length ||
             (p.compareDocumentPosition(explorerCells[k + 1][0]) & Node.DOCUMENT_POSITION_FOLLOWING))),
    })),
    figureCellsShowingCode: cells.filter(c => c.querySelector('.cell_output img') && c.querySelector('.cell_input')
        && !/\bassert\b/.test(c.querySelector('.cell_input').innerText) && !/\b(explorer|animation)\(/.test(c.querySelector('.cell_input').innerText)
        && !c.classList.contains('tag_hide-input')).map(c => c.querySelector('.cell_input').innerText.slice(0, 60)),
    proofBlocks: article.querySelectorAll('div.proof').length,
    exercises: article.querySelectorAll('div.exercise').length,
    solutions: article.querySelectorAll('div.solution').length,
    openSolutions: [...article.querySelectorAll('div.solution')].filter(d => !d.classList.contains('dropdown')
        || (d.querySelector('.admonition-title ~ *') && d.querySelector('.admonition-title ~ *').offsetHeight > 0)).length,
    tallTextOutputs: [...article.querySelectorAll('.cell_output .output.text_plain, .cell_output .output.stream, .cell_output .output.text_html')]
        .filter(o => { const s = getComputedStyle(o); const p = o.parentElement ? getComputedStyle(o.parentElement) : s;
                       const scrolls = ['auto', 'scroll'].includes(s.overflowY) || ['auto', 'scroll'].includes(p.overflowY);
                       return o.offsetHeight > 600 && !scrolls; }).length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    prev: !!document.querySelector('.prev-next-area a.left-prev'),
    next: !!document.querySelector('.prev-next-area a.right-next'),
    firstParagraphs: [...article.querySelectorAll('section > p, section > ul, section > ol, p, ul')].slice(0, 8).map(p => p.innerText).join('\n'),
    theme: document.documentElement.dataset.theme,
  };
}"""


MOVE_PLAYERS = """() => [...document.querySelectorAll('.animation')].map(player => {
  const img = player.querySelector('img'), slider = player.querySelector('input[type=range]');
  if (!img || !slider) return {ok: false, why: 'no image or no slider'};
  const before = img.src;
  slider.value = slider.max;
  slider.dispatchEvent(new Event('input', {bubbles: true}));
  return {ok: img.src !== before, why: 'moving the slider did not change the frame',
          frames: Number(slider.max) + 1};
})"""

WIDE_BLOCKS = """() => [...document.querySelectorAll('article pre')]
  .filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => p.textContent.split('\\n').reduce((a, l) => (l.length > a.length ? l : a), '').slice(0, 70))"""

FIGURES = """() => {
  const article = document.querySelector('main') || document.body;
  const figures = [...article.querySelectorAll('figure')].filter(f => f.querySelector('img'));
  return {
    loose: [...article.querySelectorAll('.cell_output img')]
      .filter(i => !i.closest('figure') && !i.closest('.animation')).length,
    unnumbered: figures.filter(f => !f.querySelector('figcaption .caption-number'))
      .map(f => f.id),
    badAlt: figures.map(f => f.querySelector('img').getAttribute('alt') || '')
      .filter(a => a.length < 30 || /^[0-9a-f]{16,}/.test(a)).map(a => a.slice(0, 40)),
    unreferenced: figures.map(f => f.id)
      .filter(id => id && !document.querySelector(`a[href="#${id}"]`)),
  };
}"""


def pytest_collection_modifyitems(config, items):
    reason = None
    if not CHROMIUM.exists():
        reason = f"BROWSER TESTS SKIPPED: {CHROMIUM} not found (make test installs Debian's chromium when it can)"
    elif not (HTML / "index.html").exists():
        reason = "BROWSER TESTS SKIPPED: no built book in _build/html (run `make book` first)"
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture(scope="session")
def light_context(browser):
    context = offline_context(browser)
    yield context
    context.close()


@pytest.fixture(scope="session")
def inspected(light_context):
    """``inspected(page)``: open a toc page once, save its full-page screenshot, return what the DOM shows."""
    cache: dict[str, dict] = {}

    def inspect(toc_page):
        if toc_page.docname not in cache:
            page, errors = open_page(light_context, toc_page.html.as_uri())
            report = page.evaluate(INSPECT)
            report["wideBlocks"] = page.evaluate(WIDE_BLOCKS)
            report["figures"] = page.evaluate(FIGURES)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot_path(toc_page)), full_page=True)
            report["players"] = page.evaluate(MOVE_PLAYERS)  # last: it moves the sliders
            report["console_errors"] = errors
            page.close()
            cache[toc_page.docname] = report
        return cache[toc_page.docname]

    return inspect


PAGES = toc_pages()


def pytest_generate_tests(metafunc):
    if "toc_page" in metafunc.fixturenames:
        pages = PAGES
        if metafunc.function.__name__.endswith("_notebook_page"):
            pages = [p for p in PAGES if p.is_notebook]
        elif metafunc.function.__name__.endswith("_chapter_page"):
            pages = [p for p in PAGES if p.is_chapter]
        metafunc.parametrize("toc_page", pages, ids=[p.docname for p in pages])
