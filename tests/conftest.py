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


@pytest.fixture
def draws_labelled_axes():
    """Check that an explorer panel ``plot_fn(fig, **params)`` draws ``n_axes`` axes, each labelled."""
    import matplotlib.pyplot as plt

    def check(plot_fn, params, n_axes=2):
        fig = plt.figure()
        plot_fn(fig, **params)
        axes = fig.get_axes()
        assert len(axes) == n_axes, f"{plot_fn.__name__}: {len(axes)} axes, expected {n_axes}"
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes), f"{plot_fn.__name__}: unlabelled axis"
        plt.close(fig)

    return check
