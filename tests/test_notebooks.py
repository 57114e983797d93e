"""The book's notebook conventions (BOOK.md sections 3 and 4), enforced on every notebook."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONVENTIONS_PAGE = ROOT / "book" / "how_to_use_notebooks.ipynb"
NOTEBOOKS = sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("book/*.ipynb")])
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def _cells(path, kind):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _toc_files():
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"], *walk(toc.get("parts", []))]


def test_there_are_notebooks():
    assert CONVENTIONS_PAGE in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs_or_execution_counts(path):
    for cell in _cells(path, "code"):
        assert cell.get("outputs") == [], f"{path.name}: a code cell has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_cell_has_a_unique_id(path):
    """nbformat 4.5 cell ids: without them every execution warns (and future nbformat fails)."""
    ids = [cell.get("id") for cell in json.loads(path.read_text())["cells"]]
    assert None not in ids, f"{path.name}: cell {ids.index(None)} has no id"
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_the_shared_setup_cell(path):
    setup = _cells(CONVENTIONS_PAGE, "code")[0]
    first = _cells(path, "code")[0]
    assert _source(first) == _source(setup), f"{path.name}: first code cell differs from the shared setup cell"
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), f"{path.name}: setup cell not tagged remove-cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_second_code_cell_is_a_parameters_cell_with_full_false(path):
    params = _cells(path, "code")[1]
    assert "parameters" in params.get("metadata", {}).get("tags", []), f"{path.name}: no 'parameters' tag"
    assert re.search(r"^FULL = False\b", _source(params), re.M), f"{path.name}: parameters cell must set FULL = False"


def test_setup_cell_url_is_the_repository_url_in_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    setup = _source(_cells(CONVENTIONS_PAGE, "code")[0])
    match = re.search(r'^BOOK_URL = "([^"]+)"$', setup, re.M)
    reads_env = 'BOOK_REPO_URL = os.environ.get("BOOK_REPO_URL", BOOK_URL)' in setup
    assert match and reads_env, "setup cell must read BOOK_REPO_URL from the environment with the book's URL as default"
    assert match.group(1) == url


def test_every_toc_entry_exists():
    for entry in _toc_files():
        candidates = [ROOT / f"{entry}{suffix}" for suffix in (".ipynb", ".md")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(_toc_files())
    for path in NOTEBOOKS:
        entry = path.relative_to(ROOT).with_suffix("").as_posix()
        assert entry in listed, f"{entry} is not listed in _toc.yml"


def test_chapter_notebooks_are_numbered_in_reading_order():
    chapters = [e for e in _toc_files() if e.startswith("chapters/")]
    numbers = [int(Path(e).name.split("_")[0]) for e in chapters]
    assert numbers == sorted(numbers), f"chapters out of order in _toc.yml: {chapters}"
