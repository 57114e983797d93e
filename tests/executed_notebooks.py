"""Execute each notebook once: nbval's run feeds the book build (issue 12).

``make test`` used to execute every notebook twice: nbval (the test) and then the book build.
This file does two things so that nbval's execution is the only one:

* as a pytest plugin (``-p tests.executed_notebooks --executed-dir DIR``) it keeps the outputs
  nbval captured for each cell and, when every cell of a notebook passed, writes the executed
  notebook to ``DIR/<its path>``;
* as a script (``python tests/executed_notebooks.py DIR CACHE``) it empties the book's execution
  cache and fills it with those notebooks, keyed exactly as MyST-NB's ``cache`` mode keys them
  (the notebook's code cells and kernelspec). The strict build then renders them without
  executing. A notebook nbval did not execute (or that changed since) has no entry, and the
  build executes it itself.

Because the cache is rebuilt from this run's nbval results every time, a stale cache can no
longer hide a broken ``utils`` function (the cache is keyed on the cells, not on ``utils``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest

_RESULTS: dict[Path, dict] = {}


def pytest_addoption(parser):
    parser.addoption("--executed-dir", default=None,
                     help="write each notebook nbval executed (all cells passed), with its "
                          "outputs, under this folder")


def _is_nbval_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


def pytest_runtest_setup(item):
    if _is_nbval_cell(item):
        path = Path(str(item.parent.fspath))
        entry = _RESULTS.setdefault(path, {"file": item.parent, "ok": True, "start": None})
        if entry["start"] is None:
            entry["start"] = time.perf_counter()


def pytest_runtest_makereport(item, call):
    if not _is_nbval_cell(item) or call.when != "call":
        return
    entry = _RESULTS[Path(str(item.parent.fspath))]
    if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        entry["ok"] = False
        return
    item.cell.outputs = [nbformat.from_dict(dict(out)) for out in (item.test_outputs or [])]
    item.cell.execution_count = item.cell_num + 1
    entry["seconds"] = time.perf_counter() - entry["start"]


def pytest_sessionfinish(session):
    folder = session.config.getoption("--executed-dir", default=None)
    if not folder:
        return
    root = Path(str(session.config.rootpath))
    for path, entry in _RESULTS.items():
        if not entry["ok"]:
            continue
        nb = entry["file"].nb
        nb.metadata["executed_by"] = {"tool": "nbval", "seconds": round(entry["seconds"], 1)}
        target = Path(folder) / path.resolve().relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)


def fill_cache(executed: Path, cache_path: Path) -> list[str]:
    """Empty ``cache_path`` and cache every notebook under ``executed``; return their names."""
    import shutil

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    if cache_path.exists():
        shutil.rmtree(cache_path)
    cache = get_cache(str(cache_path))
    cached = []
    for path in sorted(executed.rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        seconds = nb.metadata.pop("executed_by", {}).get("seconds")
        uri = str(path.relative_to(executed))
        cache.cache_notebook_bundle(CacheBundleIn(nb, uri, data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
        cached.append(uri)
    return cached


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/executed_notebooks.py EXECUTED_DIR CACHE_DIR")
    names = fill_cache(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"execution cache {sys.argv[2]}: {len(names)} notebooks executed by nbval"
          + (f" ({', '.join(Path(n).stem for n in names)})" if names else
             "; the build executes every notebook itself"))
