"""How `make test` executes the notebooks (issue 12): timeouts everywhere, one execution each."""

import re
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache

from tests.executed_notebooks import fill_cache

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def _make_default(name):
    return int(re.search(rf"^{name} \?= (\d+)$", MAKEFILE, re.M).group(1))


def test_every_execution_path_has_the_same_per_cell_timeout():
    timeout = _make_default("CELL_TIMEOUT")
    assert 60 <= timeout <= 600, "far above the slowest cell, far below CI's 90 minutes"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["timeout"] == timeout, "book build and Makefile disagree"
    assert "--nbval-cell-timeout=$(CELL_TIMEOUT)" in MAKEFILE, "nbval runs without a timeout"
    assert "BOOK_CELL_TIMEOUT" in (ROOT / "tests" / "test_colab.py").read_text()


def test_kernel_without_the_lost_reply_race_is_pinned():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert int(pins["ipykernel"].split(".")[0]) < 7, "ipykernel 7 loses shell replies (1554)"


def _notebook(code_cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A title")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in code_cells]
    return nb


def test_fill_cache_is_matched_by_the_source_notebook(tmp_path):
    source = _notebook(["x = 1", "print(x + 1)"])
    executed = _notebook(["x = 1", "print(x + 1)"])
    executed.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    folder = tmp_path / "executed" / "chapters"
    folder.mkdir(parents=True)
    nbformat.write(executed, folder / "toy.ipynb")
    cache_path = tmp_path / "cache"
    (cache_path / "stale").mkdir(parents=True)  # an old cache is emptied first

    assert fill_cache(tmp_path / "executed", cache_path) == ["chapters/toy.ipynb"]
    assert not (cache_path / "stale").exists()
    cache = get_cache(str(cache_path))
    _, merged = cache.merge_match_into_notebook(source)
    assert merged.cells[2].outputs[0]["text"] == "2\n"

    changed = _notebook(["x = 1", "print(x + 2)"])  # another cell: no cache entry, so executed
    try:
        cache.match_cache_notebook(changed)
        raise AssertionError("a changed notebook must not match the cache")
    except KeyError:
        pass


def test_fill_cache_with_nothing_executed_leaves_an_empty_cache(tmp_path):
    assert fill_cache(tmp_path / "none", tmp_path / "cache") == []
