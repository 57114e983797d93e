"""`make pdf`: print the single-page build of the book to one PDF with Debian's Chromium.

Jupyter Book's ``pdfhtml`` builder downloads a browser of its own (impossible offline) and the
LaTeX route needs a TeX installation of several hundred MB and re-renders every figure and
output; the single-page HTML (``jupyter-book build --builder singlehtml``) already has the
numbered chapters, rendered math (MathJax, bundled), figures and bibliography, so printing it with
the Chromium the browser tests use gives the same book as the website. This script adds what
print needs: a title page, a table of contents with the parts, every chapter on a new page,
solutions opened, outputs unscrolled and code wrapped (nothing is cut at the margin), the site's
navigation hidden, page numbers in the footer, and PDF bookmarks for every heading.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from site_pages import CHROMIUM, ROOT, launch, offline_context, open_page

SINGLE = ROOT / "_build" / "singlehtml" / "book" / "intro.html"
PDF = ROOT / "_build" / "pdf" / "book.pdf"

PRINT_CSS = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header-article, .bd-footer,
.bd-footer-content, .prev-next-area, .header-article-items, .sidebar-toggle, .theme-switch-button,
.search-button, .headerlink, .toggle-button, .bd-footer-article, #pst-back-to-top,
.skip-link, .dropdown-buttons-trigger, #jb-print-docs-body { display: none !important; }
.bd-main, .bd-content, .bd-article-container, .bd-article, .bd-page-width, .bd-container,
.bd-container__inner { max-width: none !important; width: 100% !important; margin: 0 !important;
  padding: 0 !important; display: block !important; }
body { font-size: 11pt; }
/* the theme's print style hides the first h1 of every section (it prints its own title) */
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }
pre, .highlight pre, .output pre { white-space: pre-wrap !important; word-break: break-word;
  font-size: 8.5pt; }
.output, .cell_output, .output_area, div.output { max-height: none !important;
  overflow: visible !important; }
span[id^="document-"] + section, .pdf-toc { break-before: page; }
h1, h2, h3 { break-after: avoid; }
figure, img, .cell_output img { break-inside: avoid; max-width: 100% !important; }
.pdf-title-page { height: 240mm; display: flex; flex-direction: column;
  justify-content: center; text-align: center; }
.pdf-title-page .pdf-title { font-size: 26pt; line-height: 1.25; font-weight: bold;
  margin-bottom: 1.5em; }
.pdf-title-page p { font-size: 12pt; color: #444; }
.pdf-toc ol { list-style: none; padding-left: 0; }
.pdf-toc li.part { font-weight: bold; margin-top: 1em; }
.pdf-toc li.chapter { margin-left: 1.5em; }
.pdf-toc a { color: inherit; text-decoration: none; }
"""

# title page and table of contents, from the page's own document anchors and headings
ADD_FRONT = """([title, author, built, parts]) => {
  const main = document.querySelector('article.bd-article') || document.querySelector('main');
  const page = document.createElement('div');
  page.className = 'pdf-title-page';
  page.innerHTML = `<div class="pdf-title">${title}</div><p>${author}</p><p>${built}</p>`;
  const toc = document.createElement('nav');
  toc.className = 'pdf-toc';
  toc.innerHTML = '<h1>Contents</h1>';
  const list = document.createElement('ol');
  for (const [caption, docs] of parts) {
    if (caption) { const li = document.createElement('li'); li.className = 'part';
                   li.textContent = caption; list.appendChild(li); }
    for (const doc of docs) {
      const anchor = document.getElementById('document-' + doc);
      const section = anchor && anchor.nextElementSibling;
      const heading = section && section.querySelector('h1, h2');
      if (!heading) continue;
      const li = document.createElement('li'); li.className = 'chapter';
      const a = document.createElement('a'); a.href = '#document-' + doc;
      a.innerHTML = heading.innerHTML;  // keeps the typeset math of a title
      a.querySelectorAll('.headerlink').forEach(h => h.remove());
      li.appendChild(a); list.appendChild(li);
    }
  }
  toc.appendChild(list);
  main.prepend(toc); main.prepend(page);
  // open what the website collapses for the reader: exercise solutions
  document.querySelectorAll('.solution, .dropdown').forEach(el => {
    el.classList.remove('toggle-hidden');
    el.querySelectorAll('.toggle-hidden').forEach(c => c.classList.remove('toggle-hidden'));
  });
  document.querySelectorAll('details.solution, details.dropdown').forEach(d => d.open = true);
  return list.children.length;
}"""

FOOTER = ('<div style="font-size:8pt; width:100%; text-align:center; color:#555;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def toc_parts() -> list[tuple[str, list[str]]]:
    """(part caption, [docname, ...]) in reading order, from _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = [("", [toc["root"]])]
    for part in toc.get("parts", []):
        docs = [re.sub(r"\.(md|ipynb)$", "", c["file"]) for c in part.get("chapters", [])]
        if part.get("caption") or not parts:
            parts.append((part.get("caption", ""), docs))
        else:  # a numbered block without caption continues the previous part
            parts[-1][1].extend(docs)
    return parts


def _built() -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return f"Built {datetime.date.today().isoformat()} from commit {commit}"


def build_pdf(out: Path = PDF) -> Path:
    from playwright.sync_api import sync_playwright

    if not SINGLE.exists():
        raise SystemExit(f"no single-page build at {SINGLE}: run `make pdf`")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium package")
    # the single page is book/intro.html but refers to _static/ and _images/ as if it sat at
    # the top of the build (Sphinx's singlehtml with a root document in a folder)
    for folder in ("_static", "_images"):
        link = SINGLE.parent / folder
        if not link.exists():
            link.symlink_to(SINGLE.parent.parent / folder, target_is_directory=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        context = offline_context(browser)
        page, errors = open_page(context, SINGLE.as_uri())
        page.emulate_media(media="print")
        page.add_style_tag(content=PRINT_CSS)
        entries = page.evaluate(ADD_FRONT, [config["title"], config["author"], _built(),
                                            toc_parts()])
        page.pdf(path=str(out), format="A4", print_background=True, outline=True, tagged=True,
                 display_header_footer=True, header_template="<span></span>",
                 footer_template=FOOTER, margin={"top": "16mm", "bottom": "18mm",
                                                 "left": "15mm", "right": "15mm"})
        browser.close()
    if errors:
        print("console errors while printing:\n  " + "\n  ".join(errors[:10]), file=sys.stderr)
    print(json.dumps({"pdf": str(out.relative_to(ROOT)), "contents_entries": entries}))
    return out


if __name__ == "__main__":
    build_pdf()
