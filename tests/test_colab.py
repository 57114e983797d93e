"""Run a notebook as Colab would: alone in an empty folder, with the book fetched by its setup cell."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import reliable_replies  # noqa: E402  (nbclient's lost wake-ups, issue 12)

reliable_replies.install()


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None,
                    reason="needs the book as a git repository to clone from")
def test_conventions_page_runs_alone_after_cloning_the_book(tmp_path, monkeypatch):
    head_has_utils = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "HEAD:utils/__init__.py"],
                                    capture_output=True).returncode == 0
    if not head_has_utils:
        pytest.skip("the repository has no committed utils yet")
    workdir = tmp_path / "content"          # like Colab's /content: nothing of the book in it
    workdir.mkdir()
    notebook = nbformat.read(ROOT / "book" / "how_to_use_notebooks.ipynb", as_version=4)
    setup = notebook.cells[[c.cell_type for c in notebook.cells].index("code")]
    # run the setup cell a second time (it must be harmless), then report where utils came from
    notebook.cells.insert(notebook.cells.index(setup) + 1, nbformat.v4.new_code_cell(setup.source))
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json, utils\nprint(json.dumps({'utils': utils.__file__, 'root': str(BOOK_ROOT)}))"))
    monkeypatch.setenv("BOOK_REPO_URL", str(ROOT))
    monkeypatch.setenv("BOOK_PROGRESS", "0")
    timeout = int(os.environ.get("BOOK_CELL_TIMEOUT", 180))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()

    report = json.loads(notebook.cells[-1].outputs[0]["text"])
    clone = workdir / ROOT.name
    assert Path(report["root"]) == clone, "the setup cell should have cloned the book next to the notebook"
    assert Path(report["utils"]).resolve().is_relative_to(clone.resolve())
    assert (clone / "_config.yml").is_file()
    assert os.listdir(workdir) == [ROOT.name]
