"""Shared test setup: the repository root on sys.path, no progress bars, off-screen matplotlib."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BOOK_PROGRESS", "0")

import matplotlib  # noqa: E402

# off-screen drawing for this process only; an MPLBACKEND variable would leak into notebook kernels
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def repo_root() -> Path:
    return ROOT
