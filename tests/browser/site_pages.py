"""Drive Debian's Chromium over the built HTML book, offline (shared by the tests and `make screenshots`).

Every page is opened from disk (``file://``) in a browser context that aborts any other request, so
a page that needs the network shows up as a failed request or a console error.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class TocPage:
    docname: str          # e.g. "chapters/01_masking"
    source: Path          # the .md or .ipynb it is built from

    @property
    def html(self) -> Path:
        return HTML / f"{self.docname}.html"

    @property
    def is_notebook(self) -> bool:
        return self.source.suffix == ".ipynb"

    @property
    def is_chapter(self) -> bool:
        return self.docname.startswith("chapters/")


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_pages() -> list[TocPage]:
    """Every page of `_toc.yml`, in reading order."""
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for key in ("parts", "chapters", "sections"):
                yield from walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = []
    for docname in [toc["root"], *walk(toc)]:
        docname = re.sub(r"\.(md|ipynb)$", "", docname)
        source = next((ROOT / f"{docname}{s}" for s in (".ipynb", ".md") if (ROOT / f"{docname}{s}").exists()),
                      ROOT / f"{docname}.md")
        if docname not in [p.docname for p in pages]:
            pages.append(TocPage(docname, source))
    return pages


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def offline_context(browser, dark: bool = False):
    """A browser context that lets only file:// requests through; aborted URLs go to ``context.blocked``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.blocked = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            context.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    mode = "dark" if dark else "light"
    context.add_init_script(f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
    return context


WAIT_FOR_PAGE = """async () => {
  await Promise.all([...document.images].map(img => { img.loading = 'eager'; return img.decode().catch(() => null); }));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  return true;
}"""


def open_page(context, url: str):
    """Open ``url``, wait for images and MathJax; returns ``(page, console_errors)``."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.goto(url, wait_until="load")
    page.evaluate(WAIT_FOR_PAGE)
    return page, errors


def screenshot_path(page: TocPage, suffix: str = "") -> Path:
    return SCREENSHOTS / f"{page.docname.replace('/', '__')}{suffix}.png"


def take_screenshots(out=sys.stdout) -> int:
    """`make screenshots`: one full-page PNG per page of the table of contents into _build/screenshots/."""
    from playwright.sync_api import sync_playwright

    if not HTML.joinpath("index.html").exists():
        raise SystemExit("no built book in _build/html: run `make book` first")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium package")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    count = 0
    with sync_playwright() as pw:
        browser = launch(pw)
        context = offline_context(browser)
        for toc_page in toc_pages():
            page, _ = open_page(context, toc_page.html.as_uri())
            target = screenshot_path(toc_page)
            page.screenshot(path=str(target), full_page=True)
            page.close()
            count += 1
            print(target.relative_to(ROOT), file=out)
        browser.close()
    return count


if __name__ == "__main__":
    n = take_screenshots()
    print(f"{n} screenshots in {SCREENSHOTS.relative_to(ROOT)}")
