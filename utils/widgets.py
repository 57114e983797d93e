"""Interactive explorers and their static counterparts for the HTML book (BOOK.md section 3.8).

An explorer is a pure plotting function ``plot_fn(fig, **params)`` that draws onto a matplotlib
``Figure`` or ``SubFigure`` (calling ``fig.subplots(...)`` itself). The same function then serves
twice:

* :func:`explorer` wraps it in ``ipywidgets.interactive`` for a live kernel (Colab, Jupyter);
* :func:`small_multiples` draws it over a small grid of settings into one static figure (for
  print, and for a reader who wants every setting side by side);
* :func:`animation` draws it over a sweep of its main control into a self-contained HTML player
  (matplotlib's ``FuncAnimation.to_jshtml``): a slider and play buttons that move in the HTML book
  with no kernel and no network.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, Callable

import matplotlib.pyplot as plt

__all__ = ["grid", "explorer", "small_multiples", "animation", "describe"]


def grid(**values: list) -> list[dict[str, Any]]:
    """All combinations of the given parameter values, in order, as a list of keyword dicts.

    >>> grid(a=[1, 2], b=["x"])
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    for name, options in values.items():
        if not isinstance(options, (list, tuple)) or len(options) == 0:
            raise ValueError(f"grid values for {name!r} must be a non-empty list, got {options!r}")
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def describe(params: dict[str, Any]) -> str:
    """A compact title for one panel: ``'density=0.1, scheme=weight'``."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def _check_plot_fn(plot_fn):
    if not callable(plot_fn):
        raise TypeError(f"plot_fn must be callable as plot_fn(fig, **params), got {type(plot_fn).__name__}")


def explorer(plot_fn: Callable[..., Any], controls: dict[str, Any], *, figsize: tuple[float, float] = (8.0, 4.0),
             fixed: dict[str, Any] | None = None):
    """An ``ipywidgets.interactive`` explorer that redraws ``plot_fn(fig, **params)`` on each change.

    ``controls`` maps parameter names to ipywidgets controls or to the abbreviations ``interactive``
    accepts (a ``(min, max, step)`` tuple makes a slider, a list a dropdown). ``fixed`` passes
    extra keyword arguments that have no control. Display the returned object in a cell (tag its
    output ``remove-output``: in the HTML book it would be a dead control).
    """
    import ipywidgets

    _check_plot_fn(plot_fn)
    if not isinstance(controls, dict) or not controls:
        raise ValueError("controls must be a non-empty dict of parameter name -> widget or abbreviation")
    fixed = dict(fixed or {})

    def draw(**params):
        fig = plt.figure(figsize=figsize, layout="constrained")
        plot_fn(fig, **fixed, **params)
        plt.show()

    return ipywidgets.interactive(draw, **controls)


def small_multiples(plot_fn: Callable[..., Any], settings: list[dict[str, Any]], *, ncols: int = 3,
                    panel_size: tuple[float, float] = (3.2, 2.6), fixed: dict[str, Any] | None = None,
                    titles: bool = True, suptitle: str | None = None):
    """One static figure: ``plot_fn(subfig, **params)`` for each ``params`` in ``settings``.

    Each setting gets a ``SubFigure`` laid out on a grid with ``ncols`` columns, titled with its
    parameter values. Returns the ``Figure``; this is the explorer's counterpart in the HTML book.
    """
    _check_plot_fn(plot_fn)
    if not isinstance(settings, (list, tuple)) or len(settings) == 0:
        raise ValueError("settings must be a non-empty list of keyword dicts (see utils.widgets.grid)")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an int >= 1, got {ncols!r}")
    fixed = dict(fixed or {})
    ncols = min(ncols, len(settings))
    nrows = math.ceil(len(settings) / ncols)
    fig = plt.figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    subfigs = fig.subfigures(nrows, ncols, squeeze=False)
    for sub, params in itertools.zip_longest(subfigs.flat, settings):
        if params is None:
            continue
        plot_fn(sub, **fixed, **params)
        if titles:
            sub.suptitle(describe(params), fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def animation(plot_fn: Callable[..., Any], name: str, values: list, *,
              fixed: dict[str, Any] | None = None, figsize: tuple[float, float] = (8.0, 4.0),
              interval: int = 600, dpi: int = 72):
    """An HTML player of ``plot_fn(fig, name=value, **fixed)`` for each value in ``values``.

    The frames are drawn once, here, and embedded as PNG images with a slider and play controls
    (``FuncAnimation.to_jshtml``), so the explorer moves in the static HTML book. Each frame is
    titled with its setting. Returns an ``IPython.display.HTML`` object: display it in a cell.
    Keep ``values`` short (a dozen frames at ``dpi=72`` weigh a few hundred kB).
    """
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    _check_plot_fn(plot_fn)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the plot function's parameter to sweep, got {name!r}")
    if not isinstance(values, (list, tuple)) or not 2 <= len(values) <= 60:
        raise ValueError(f"values must be a list of 2 to 60 settings of {name!r}, got {values!r}")
    fixed = dict(fixed or {})
    if name in fixed:
        raise ValueError(f"{name!r} is swept, so it cannot also be in fixed")
    fig = plt.figure(figsize=figsize, layout="constrained", dpi=dpi)

    def draw(i):
        fig.clear()
        plot_fn(fig, **fixed, **{name: values[i]})
        fig.suptitle(describe({name: values[i]}), fontsize="small")
        return []

    player = FuncAnimation(fig, draw, frames=len(values), interval=interval, blit=False)
    html = player.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(_offline_player(html))


# matplotlib's player loads Font Awesome from a CDN for its button icons; the book must work
# offline, so the icons become plain Unicode symbols and the stylesheet link goes
# (geometric shapes and ASCII only: the media-control block U+23xx is missing from common fonts)
_ICONS = {"fa-fast-backward": "|\u25c0", "fa-step-backward": "\u25c1",
          "fa-play fa-flip-horizontal": "\u25c0", "fa-pause": "||", "fa-play": "\u25b6",
          "fa-step-forward": "\u25b7", "fa-fast-forward": "\u25b6|", "fa-minus": "\u2212",
          "fa-plus": "+"}


def _offline_player(html: str) -> str:
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">', "", html)
    for icon, symbol in _ICONS.items():
        html = html.replace(f'<i class="fa {icon}"></i>', symbol)
    if "://" in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html):
        raise RuntimeError("the animation player still refers to the network")
    return html
