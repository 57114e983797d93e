"""The toy example behind the conventions page (``book/how_to_use_notebooks.ipynb``).

Gradient descent on the one-parameter least-squares loss ``L(w) = (w h - y)^2 / 2``. Its gradient is
``dL/dw = (w h - y) h`` (eq-conv-gradient), and each step multiplies the error ``w - y/h`` by
``1 - lr h^2`` (eq-conv-contraction), so the iteration converges exactly when ``0 < lr h^2 < 2``.
"""

from __future__ import annotations

import math

import numpy as np

from .plotting import PALETTE

__all__ = ["gd_trajectory", "contraction_factor", "plot_gd_toy"]


def _check(h: float, lr: float, steps: int) -> None:
    if not isinstance(h, (int, float)) or h == 0 or not math.isfinite(h):
        raise ValueError(f"h must be a finite, non-zero number, got {h!r}")
    if not isinstance(lr, (int, float)) or lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")


def gd_trajectory(h: float, y: float, lr: float, steps: int, w0: float = 0.0) -> np.ndarray:
    """Iterates ``w_0, ..., w_steps`` of ``w <- w - lr (w h - y) h`` (eq-conv-gradient). Shape ``(steps + 1,)``.

    >>> gd_trajectory(h=1.0, y=2.0, lr=0.5, steps=2)
    array([0. , 1. , 1.5])
    """
    _check(h, lr, steps)
    w = np.empty(steps + 1)
    w[0] = w0
    for k in range(steps):
        w[k + 1] = w[k] - lr * (w[k] * h - y) * h
    return w


def contraction_factor(h: float, lr: float) -> float:
    """``1 - lr h^2``: the factor by which one step scales ``w - y/h`` (eq-conv-contraction)."""
    _check(h, lr, 0)
    return 1.0 - lr * h * h


def plot_gd_toy(fig, lr: float = 0.5, h: float = 1.0, y: float = 2.0, steps: int = 12) -> None:
    """Explorer panel: the loss curve with the gradient-descent iterates on it, and ``|w_k - w*|`` per step."""
    trajectory = gd_trajectory(h, y, lr, steps)
    w_star = y / h
    ax_loss, ax_err = fig.subplots(1, 2)
    span = max(abs(trajectory - w_star).max(), abs(w_star)) * 1.15 + 1e-9
    grid = np.linspace(w_star - span, w_star + span, 300)
    ax_loss.plot(grid, 0.5 * (grid * h - y) ** 2, color=PALETTE[0], label="$L(w)$")
    ax_loss.plot(trajectory, 0.5 * (trajectory * h - y) ** 2, "o-", color=PALETTE[1], ms=3, lw=0.8,
                 label="iterates $w_k$")
    ax_loss.set_xlabel("parameter $w$")
    ax_loss.set_ylabel("loss $L(w)$")
    ax_loss.legend(fontsize="small")
    error = np.abs(trajectory - w_star)
    ax_err.semilogy(np.arange(steps + 1), np.maximum(error, 1e-16), "o-", color=PALETTE[1], ms=3)
    ax_err.set_xlabel("step $k$")
    ax_err.set_ylabel(r"$|w_k - w^\star|$")
    ax_err.set_title(f"factor $1-\\eta h^2$ = {contraction_factor(h, lr):.2f}", fontsize="small")
