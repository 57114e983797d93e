"""The book's matplotlib style and a few shared plotting helpers.

Figures have an opaque white background and dark text, so they stay readable when the HTML book
is switched to its dark theme (a transparent figure with black labels would vanish there).
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

__all__ = ["BOOK_STYLE", "PALETTE", "use_book_style", "heatmap", "glue_figure"]

# Okabe-Ito: distinguishable under the common colour-vision deficiencies
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

BOOK_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "text.color": "#222222",
    "axes.labelcolor": "#222222",
    "xtick.color": "#222222",
    "ytick.color": "#222222",
    "axes.edgecolor": "#444444",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "legend.frameon": False,
    "font.size": 10,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib's global settings (idempotent)."""
    mpl.rcParams.update(BOOK_STYLE)


def heatmap(ax, matrix, *, title: str | None = None, symmetric: bool = True, cmap: str | None = None,
            colorbar: bool = True, vmax: float | None = None):
    """Draw a 2-D array as an image on ``ax``; rows top to bottom, as a matrix is printed.

    With ``symmetric=True`` the colour scale is centred on zero (``RdBu_r``), so signs are visible.
    Returns the ``AxesImage``.
    """
    array = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {array.shape}")
    if symmetric:
        limit = vmax if vmax is not None else float(np.nanmax(np.abs(array))) or 1.0
        image = ax.imshow(array, cmap=cmap or "RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    else:
        image = ax.imshow(array, cmap=cmap or "viridis", vmax=vmax, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


def glue_figure(name: str, fig) -> None:
    """Hand ``fig`` to the HTML book as the glued output ``name``, for a numbered ``{glue:figure}``.

    With myst-nb installed (the book build, nbval) the figure is stored with ``glue`` under
    ``name`` and also shown in the notebook; tag the cell ``remove-output`` so that the HTML shows
    it once, where the ``{glue:figure}`` directive with its caption places it. Without myst-nb
    (Colab) it is simply displayed. The figure is closed afterwards, so it is not drawn twice.
    """
    import matplotlib.pyplot as plt

    try:
        from myst_nb import glue
    except ImportError:
        from IPython.display import display

        display(fig)
    else:
        glue(name, fig, display=True)
    plt.close(fig)
