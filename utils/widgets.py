"""Interactive explorers and their static counterparts for the HTML book (BOOK.md section 3.8).

An explorer is a pure plotting function ``plot_fn(fig, **params)`` that draws onto a matplotlib
``Figure`` or ``SubFigure`` (calling ``fig.subplots(...)`` itself). The same function then serves
twice:

* :func:`explorer` wraps it in ``ipywidgets.interactive`` for a live kernel (Colab, Jupyter);
* :func:`small_multiples` draws it over a small grid of settings into one static figure, which is
  what a reader of the HTML book, who has no kernel, sees.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import matplotlib.pyplot as plt

__all__ = ["grid", "explorer", "small_multiples", "describe"]


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
