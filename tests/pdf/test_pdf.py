"""The book's PDF (`make pdf` builds it, then runs these checks; not part of `make test`)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PDF = ROOT / "_build" / "pdf" / "book.pdf"
SINGLE = ROOT / "_build" / "singlehtml" / "book" / "intro.html"

pytestmark = pytest.mark.skipif(not PDF.exists() or shutil.which("pdftotext") is None,
                                reason="no PDF built (run `make pdf`) or no poppler-utils")


def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _flat(text):
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def text():
    return _flat(_run("pdftotext", "-enc", "UTF-8", str(PDF), "-"))


def _title(path: Path) -> str:
    """A page's first heading, cut before any inline math (the PDF typesets it)."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        source = path.read_text()
    heading = next(line[2:] for line in source.splitlines() if line.startswith("# "))
    return _flat(re.split(r"\$|\\\(", heading)[0]).rstrip(" ,:")


def _pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for name in files:
        stem = re.sub(r"\.(md|ipynb)$", "", name)
        yield next(ROOT / f"{stem}{s}" for s in (".ipynb", ".md") if (ROOT / f"{stem}{s}").exists())


@pytest.mark.parametrize("page", list(_pages()), ids=lambda p: p.stem)
def test_every_page_title_is_in_the_pdf_twice(page, text):
    title = _title(page)
    assert text.count(title) >= 2, f"{title!r} should be in the contents and as a heading"


def test_title_page_and_contents_come_first(text):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert text.startswith(_flat(config["title"]))
    assert text.index("Contents") < text.index("Bibliography")


def test_chapters_are_numbered_in_reading_order(text):
    chapters = [p for p in _pages() if p.parent.name == "chapters"]
    positions = [text.index(f"{i}. {_title(p)}") for i, p in enumerate(chapters, start=1)]
    assert positions == sorted(positions)


def test_no_raw_tex(text):
    raw = re.findall(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\frac\{", text)
    assert not raw, f"untypeset TeX in the PDF: {raw[:5]}"


def test_every_figure_is_in_the_pdf():
    figures = len(re.findall(r"<img ", SINGLE.read_text()))
    listed = _run("pdfimages", "-list", str(PDF)).splitlines()[2:]
    images = [row for row in listed if row.split()[2] == "image"]
    assert figures > 10 and len(images) >= figures


def test_page_count_is_sane():
    pages = int(re.search(r"Pages:\s+(\d+)", _run("pdfinfo", str(PDF))).group(1))
    assert 60 <= pages <= 1000


def test_bibliography_is_in_the_pdf(text):
    assert "Tanaka" in text and "Frankle" in text and "Goodfellow" in text
