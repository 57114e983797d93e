"""Gradient clipping in incremental gradient methods {cite}`qian2021clipping`.

Chapter ``chapters/07_clipping.ipynb``; notes section 4.2, eqs 11-20.

A finite sum ``f = (1/m) sum_i f_i`` (notes eq 11) is minimised with per-component gradients
``g_i = grad f_i(x)`` that are clipped before they are used (notes eq 14, the book's
``eq-clip-clip``)::

    C(g; eta) = min(1, eta / ||g||) g = gamma g.

Each ``g_i`` splits into a part along the full gradient and a part orthogonal to it (notes eq 18,
``eq-clip-decomposition``): ``g_i = beta_i grad f + t_i``. The clipped directions then satisfy
``<sum_i C(g_i), grad f> = (sum_i gamma_i beta_i) ||grad f||^2`` (notes eq 19, ``eq-clip-eq19``),
so the sum ``S = sum_i gamma_i beta_i`` decides whether the clipped step is a descent direction
(notes eq 20, ``eq-clip-condition``).

Public API
----------
* :func:`clip`, :func:`decompose`, :func:`clipping_condition`: eqs 14, 18 and 19-20 on explicit
  per-example gradients (rows of an ``(m, n)`` array; NumPy or PyTorch).
* :func:`clipped_sgd` (eq 15), :func:`clipped_igc` (eq 16), :func:`clipped_gd` (the mean clipped
  direction, deterministic; tracks ``S``, ``||grad f||`` and the fraction clipped).
* :func:`outlier_regression`, :func:`ls_grads`, :func:`ls_objective`, :func:`huber_objective`:
  the least-squares-with-outliers experiment.
* :func:`per_example_betas`, :func:`network_clipping_condition`, :func:`clipped_backward_`,
  :func:`train_clipped`: the same quantities for a network, without materialising per-example
  gradients (ghost clipping): the norms come from :func:`utils.per_example.track_norms`, the one
  capture engine of the book; the clipped sum from a second backward pass of
  ``sum_j gamma_j L^(j)``; the ``beta_j`` from one forward-mode pass along ``grad f``.
* :func:`privacy_spent`, :func:`noise_for_privacy` (Opacus's accountants), :func:`dp_clipped_sgd`
  (DP-SGD with Poisson sampling on explicit per-example gradients).
* :func:`plot_clipping_explorer`: explorer panel (trajectories and ``S / m`` over iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .per_example import track_norms, trainable_linear_layers
from .plotting import PALETTE

__all__ = [
    "clip",
    "clip_factors",
    "decompose",
    "clipping_condition",
    "clipped_sgd",
    "clipped_igc",
    "clipped_gd",
    "GDRun",
    "outlier_regression",
    "ls_grads",
    "ls_objective",
    "huber_objective",
    "per_example_betas",
    "network_clipping_condition",
    "clipped_backward_",
    "privacy_spent",
    "noise_for_privacy",
    "dp_clipped_sgd",
    "train_clipped",
    "plot_clipping_explorer",
]


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------

def _check_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.integer, np.floating)):
        raise TypeError(f"eta must be a positive number (math.inf for no clipping), got {type(eta).__name__}")
    eta = float(eta)
    if math.isnan(eta) or eta <= 0:
        raise ValueError(f"eta must be > 0 (math.inf for no clipping), got {eta}")
    return eta


def _check_positive(name: str, value, integer: bool = False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be a positive {'int' if integer else 'number'}, got {type(value).__name__}")
    if not value > 0 or (not integer and not math.isfinite(float(value))):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return int(value) if integer else float(value)


def _as_matrix(grads, name: str = "per_example_grads"):
    if isinstance(grads, torch.Tensor):
        if grads.ndim != 2 or grads.shape[0] < 1:
            raise ValueError(f"{name} must have shape (m, n) with m >= 1, got {tuple(grads.shape)}")
        return grads
    arr = np.asarray(grads, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (m, n) with m >= 1, got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------------------------
# eqs 14, 18, 19-20 on explicit per-example gradients
# ----------------------------------------------------------------------------------------------

def clip_factors(norms, eta: float):
    """The factors ``gamma = min(1, eta / ||g||)`` of notes eq 14 (``eq-clip-gamma``) from the norms.

    A zero norm gives ``gamma = 1`` (the zero vector is left alone, no division by zero).
    Works on NumPy arrays and torch tensors alike.

    >>> clip_factors(np.array([0.0, 0.5, 4.0]), 2.0)
    array([1. , 1. , 0.5])
    """
    eta = _check_eta(eta)
    if isinstance(norms, torch.Tensor):
        safe = torch.where(norms > eta, norms, torch.ones_like(norms))
        return torch.where(norms > eta, eta / safe, torch.ones_like(norms))
    norms = np.asarray(norms, dtype=float)
    safe = np.where(norms > eta, norms, 1.0)
    return np.where(norms > eta, eta / safe, 1.0)


def clip(g, eta: float):
    """The clipping function ``C(g; eta) = min(1, eta / ||g||) g`` (notes eq 14, ``eq-clip-clip``).

    ``g`` is one vector ``(n,)`` or a matrix ``(m, n)`` whose rows are clipped one by one
    (per-example clipping). ``eta > 0`` (``math.inf``: no clipping); ``eta <= 0`` raises
    ``ValueError``. Zero rows stay zero. NumPy in, NumPy out; torch in, torch out.

    >>> clip(np.array([3.0, 4.0]), 1.0)
    array([0.6, 0.8])
    >>> clip(np.array([[3.0, 4.0], [0.0, 0.0], [0.3, 0.4]]), 1.0)
    array([[0.6, 0.8],
           [0. , 0. ],
           [0.3, 0.4]])
    """
    eta = _check_eta(eta)
    if isinstance(g, torch.Tensor):
        if g.ndim not in (1, 2):
            raise ValueError(f"g must have shape (n,) or (m, n), got {tuple(g.shape)}")
        norms = torch.linalg.vector_norm(g, dim=-1, keepdim=True)
        return g * clip_factors(norms, eta)
    arr = np.asarray(g, dtype=float)
    if arr.ndim not in (1, 2):
        raise ValueError(f"g must have shape (n,) or (m, n), got {arr.shape}")
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr * clip_factors(norms, eta)


def decompose(per_example_grads):
    """Split each row ``g_i`` as ``beta_i grad f + t_i`` with ``t_i`` orthogonal to ``grad f`` (notes eq 18).

    ``per_example_grads`` is ``(m, n)``; ``full_grad = grad f`` is the mean of the rows (notes eq 11),
    ``beta_i = <g_i, grad f> / ||grad f||^2`` and ``t_i = g_i - beta_i grad f`` (``eq-clip-decomposition``).
    Returns ``(beta (m,), t (m, n), full_grad (n,))``; then ``sum beta = m`` and ``sum t = 0``
    (``eq-clip-sums``). A zero full gradient raises ``ValueError``: ``beta`` is undefined there.

    >>> beta, t, g = decompose(np.array([[2.0, 1.0], [0.0, -1.0]]))
    >>> beta, t.tolist(), g
    (array([2., 0.]), [[0.0, 1.0], [0.0, -1.0]], array([1., 0.]))
    """
    grads = _as_matrix(per_example_grads)
    full = grads.mean(0)
    sq = float((full * full).sum())
    if not sq > 0:
        raise ValueError("the full gradient (mean of the rows of per_example_grads) is zero: beta = <g_i, grad f> / "
                         "||grad f||^2 is undefined at a stationary point of f")
    beta = (grads @ full) / sq
    t = grads - beta[:, None] * full[None, :]
    return beta, t, full


def clipping_condition(per_example_grads, eta: float):
    """``(gamma, beta, S)`` with ``S = sum_i gamma_i beta_i`` (notes eqs 19-20, ``eq-clip-condition``).

    ``gamma_i = min(1, eta / ||g_i||)`` so that ``C(g_i; eta) = gamma_i g_i``; ``beta`` as in
    :func:`decompose`. By eq 19, ``<sum_i C(g_i), grad f> = S ||grad f||^2``: the mean clipped
    direction is a descent direction iff ``S > 0``. Without clipping ``S = m``.

    >>> gamma, beta, S = clipping_condition(np.array([[-4.0], [2.0]]), 1.0)   # grad f = -1
    >>> gamma, beta, S
    (array([0.25, 0.5 ]), array([ 4., -2.]), 0.0)
    """
    grads = _as_matrix(per_example_grads)
    eta = _check_eta(eta)
    beta, _, _ = decompose(grads)
    if isinstance(grads, torch.Tensor):
        gamma = clip_factors(torch.linalg.vector_norm(grads, dim=1), eta)
        return gamma, beta, float((gamma * beta).sum())
    gamma = clip_factors(np.linalg.norm(grads, axis=1), eta)
    return gamma, beta, float((gamma * beta).sum())


# ----------------------------------------------------------------------------------------------
# the methods: eqs 15, 16, and the mean clipped direction
# ----------------------------------------------------------------------------------------------

def _check_x0(x0) -> np.ndarray:
    x = np.array(x0, dtype=float).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"x0 must be a non-empty finite vector, got {x0!r}")
    return x


def _grad_i_value(grad_i, i: int, x: np.ndarray) -> np.ndarray:
    g = np.asarray(grad_i(i, x.copy()), dtype=float).reshape(-1)
    if g.shape != x.shape:
        raise ValueError(f"grad_i(i, x) must return a vector of shape {x.shape}, got {g.shape}")
    return g


def _check_run(grad_i, x0, m, eta, lr, count_name: str, count):
    """Validate the arguments shared by :func:`clipped_sgd` and :func:`clipped_igc`."""
    m = _check_positive("m", m, integer=True)
    eta, lr = _check_eta(eta), _check_positive("lr", lr)
    count = int(_check_positive(count_name, count, integer=True)) if count != 0 else 0
    if not callable(grad_i):
        raise TypeError("grad_i must be callable as grad_i(i, x)")
    return m, eta, lr, count, _check_x0(x0)


def clipped_sgd(grad_i: Callable[[int, np.ndarray], np.ndarray], x0, m: int, eta: float, lr: float, steps: int,
                seed: int = 0) -> np.ndarray:
    """Clipped SGD, notes eq 15: ``x_{k+1} = x_k - lr C(grad f_{i_k}(x_k); eta)``, ``i_k`` uniform in ``{0..m-1}``.

    ``grad_i(i, x)`` returns ``grad f_i(x)`` (0-based ``i``). Returns the trajectory ``(steps + 1, n)``.
    ``eta = math.inf`` is plain SGD (eq 12). The component indices come from
    ``numpy.random.default_rng(seed)``.

    >>> a = [-1.0, 1.0]
    >>> clipped_sgd(lambda i, x: x - a[i], [5.0], m=2, eta=1.0, lr=0.5, steps=2).ravel().tolist()
    [5.0, 4.5, 4.0]
    """
    m, eta, lr, steps, x = _check_run(grad_i, x0, m, eta, lr, "steps", steps)
    rng = np.random.default_rng(seed)
    out = np.empty((steps + 1, x.size))
    out[0] = x
    for k, i in enumerate(rng.integers(0, m, size=steps)):
        x = x - lr * clip(_grad_i_value(grad_i, int(i), x), eta)
        out[k + 1] = x
    return out


def clipped_igc(grad_i: Callable[[int, np.ndarray], np.ndarray], x0, m: int, eta: float, lr: float, epochs: int,
                inner: bool = False) -> np.ndarray:
    """Clipped incremental gradient (IGC), notes eq 16: one epoch visits ``f_1, ..., f_m`` in order.

    ``x_{k,i} = x_{k,i-1} - lr C(grad f_i(x_{k,i-1}); eta)``, ``x_{k+1,0} = x_{k,m}`` (eq 13 with
    clipping). Returns the iterates at the start of each epoch, ``(epochs + 1, n)``, or with
    ``inner=True`` every inner iterate, ``(epochs * m + 1, n)``. ``eta = math.inf``: plain IGC.

    >>> a = [-1.0, 1.0]
    >>> clipped_igc(lambda i, x: x - a[i], [5.0], m=2, eta=1.0, lr=0.5, epochs=1).ravel().tolist()
    [5.0, 4.0]
    """
    m, eta, lr, epochs, x = _check_run(grad_i, x0, m, eta, lr, "epochs", epochs)
    out = [x.copy()]
    for _ in range(epochs):
        for i in range(m):
            x = x - lr * clip(_grad_i_value(grad_i, i, x), eta)
            if inner:
                out.append(x.copy())
        if not inner:
            out.append(x.copy())
    return np.array(out)


@dataclass
class GDRun:
    """What :func:`clipped_gd` tracks, one entry per iterate ``x_0 .. x_steps``.

    ``S`` is ``sum_i gamma_i beta_i`` (NaN where ``grad f = 0`` to rounding), ``grad_norm`` is ``||grad f||``,
    ``frac_clipped`` the fraction of components with ``||g_i|| > eta``.
    """

    x: np.ndarray
    S: np.ndarray
    grad_norm: np.ndarray
    frac_clipped: np.ndarray
    m: int = 0
    extra: dict = field(default_factory=dict)


def clipped_gd(grads: Callable[[np.ndarray], np.ndarray], x0, eta: float, lr: float, steps: int) -> GDRun:
    """Deterministic clipped GD along the mean clipped direction ``d = (1/m) sum_i C(g_i(x); eta)``.

    ``d`` is the expected step of clipped SGD, ``E[C(g_{i_k})] = d``, and ``-m d`` the first-order
    direction of one epoch of clipped IGC; ``<d, grad f> = (S/m) ||grad f||^2`` (notes eq 19).
    ``grads(x)`` returns all per-example gradients ``(m, n)``. Returns a :class:`GDRun`.

    >>> run = clipped_gd(lambda x: x[None, :] - np.array([[-3.0], [3.0]]), [1.0], eta=1.0, lr=0.1, steps=5)
    >>> run.x[-1].tolist(), float(run.S[0])          # x = 1 is a fixed point; S = 0 there
    ([1.0], 0.0)
    """
    eta, lr = _check_eta(eta), _check_positive("lr", lr)
    steps = int(_check_positive("steps", steps, integer=True)) if steps != 0 else 0
    if not callable(grads):
        raise TypeError("grads must be callable as grads(x) -> (m, n) array")
    x = _check_x0(x0)
    xs, S, gn, fc = [], [], [], []
    m = 0
    for k in range(steps + 1):
        G = _as_matrix(grads(x.copy()), "grads(x)")
        if G.shape[1] != x.size:
            raise ValueError(f"grads(x) must return shape (m, {x.size}), got {G.shape}")
        m = G.shape[0]
        norms = np.linalg.norm(G, axis=1)
        gamma = clip_factors(norms, eta)
        full = G.mean(0)
        sq = float(full @ full)
        xs.append(x.copy())
        tiny = (1e-10 * float(norms.mean())) ** 2     # below this, S is rounding noise (grad f ~ 0)
        S.append(float(gamma @ (G @ full)) / sq if sq > tiny and sq > 0 else np.nan)
        gn.append(math.sqrt(sq))
        fc.append(float(np.mean(norms > eta)))
        if k < steps:
            x = x - lr * (gamma[:, None] * G).mean(0)
    return GDRun(np.array(xs), np.array(S), np.array(gn), np.array(fc), m)


# ----------------------------------------------------------------------------------------------
# least squares with outliers
# ----------------------------------------------------------------------------------------------

def outlier_regression(n: int = 200, outlier_fraction: float = 0.1, kind: str = "symmetric", shift: float = 20.0,
                       noise: float = 0.5, w_true=(1.0, 2.0), seed: int = 0):
    """A line ``y = w0 + w1 u + noise`` with a fraction of outliers; features ``x_i = (1, u_i)``.

    ``kind="symmetric"``: outliers get ``+shift`` or ``-shift`` with equal probability (the noise
    keeps mean zero and a symmetric law). ``kind="one-sided"``: outliers get ``+shift`` and every
    label is then lowered by ``outlier_fraction * shift``, so the noise still has mean zero (least
    squares is unbiased for ``w_true``) but a skewed law. Returns ``(X (n, 2), y (n,), w_true (2,),
    is_outlier (n,) bool)``.

    >>> X, y, w, out = outlier_regression(n=10, outlier_fraction=0.2, seed=1)
    >>> X.shape, int(out.sum())
    ((10, 2), 2)
    """
    n = _check_positive("n", n, integer=True)
    if isinstance(outlier_fraction, bool) or not isinstance(outlier_fraction, (int, float)) \
            or not 0 <= outlier_fraction < 1:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    if kind not in ("symmetric", "one-sided"):
        raise ValueError(f"kind must be 'symmetric' or 'one-sided', got {kind!r}")
    rng = np.random.default_rng(seed)
    w_true = np.asarray(w_true, dtype=float)
    u = rng.uniform(-1.0, 1.0, size=n)
    X = np.stack([np.ones(n), u], axis=1)
    y = X @ w_true + noise * rng.standard_normal(n)
    n_out = int(round(outlier_fraction * n))
    is_out = np.zeros(n, dtype=bool)
    is_out[rng.permutation(n)[:n_out]] = True
    if kind == "symmetric":
        signs = np.where(np.arange(n_out) % 2 == 0, 1.0, -1.0)
        y[is_out] += shift * signs
    else:
        y[is_out] += shift
        y -= outlier_fraction * shift
    return X, y, w_true, is_out


def ls_grads(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Per-example gradients of ``f_i(w) = (x_i . w - y_i)^2 / 2``: ``w -> (m, n)`` rows ``(x_i . w - y_i) x_i``.

    >>> ls_grads(np.array([[1.0, 2.0]]), np.array([1.0]))(np.array([1.0, 1.0])).tolist()
    [[2.0, 4.0]]
    """
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (m, n) and y (m,), got {X.shape} and {y.shape}")
    return lambda w: (X @ np.asarray(w, dtype=float) - y)[:, None] * X


def ls_objective(w, X: np.ndarray, y: np.ndarray) -> float:
    """``f(w) = (1/m) sum_i (x_i . w - y_i)^2 / 2``."""
    r = np.asarray(X) @ np.asarray(w, dtype=float) - np.asarray(y)
    return float(0.5 * np.mean(r * r))


def huber_objective(w, X: np.ndarray, y: np.ndarray, eta: float) -> float:
    """Huber objective ``h(w) = (1/m) sum_i rho_{delta_i}(x_i . w - y_i)``, ``delta_i = eta / ||x_i||`` (``eq-clip-huber``).

    ``rho_delta(r) = r^2/2`` for ``|r| <= delta`` and ``delta |r| - delta^2 / 2`` otherwise. Its gradient
    is the mean per-example clipped least-squares gradient, so clipped GD on ``f`` is GD on ``h``.
    """
    eta = _check_eta(eta)
    X = np.asarray(X, dtype=float)
    r = X @ np.asarray(w, dtype=float) - np.asarray(y, dtype=float)
    delta = eta / np.maximum(np.linalg.norm(X, axis=1), 1e-300)
    a = np.abs(r)
    big = a > delta                                   # only here is delta finite
    d = np.where(big, delta, 0.0)
    rho = np.where(big, d * a - 0.5 * d * d, 0.5 * r * r)
    return float(np.mean(rho))


# ----------------------------------------------------------------------------------------------
# networks: ghost clipping on the per-example engine of utils.per_example
# ----------------------------------------------------------------------------------------------

def _check_loss(losses, batch: int) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"loss_fn must return a torch.Tensor of per-example losses, got {type(losses).__name__}")
    if tuple(losses.shape) != (batch,):
        raise ValueError(f"loss_fn must return per-example losses of shape (B,) = ({batch},), got "
                         f"{tuple(losses.shape)} (use reduction='none')")
    return losses


@dataclass
class _Pass:
    """One ghost-clipping pass over a batch of ``B`` examples (all detached)."""

    losses: torch.Tensor          # (B,) per-example losses L^(j)
    norms: torch.Tensor           # (B,) ||g_j||, from utils.per_example's norm engine
    gamma: torch.Tensor           # (B,) min(1, eta / ||g_j||)
    params: list                  # the trainable parameters of the linear layers
    full: list                    # grad f = (1/B) sum_j g_j, one tensor per parameter
    clipped: list                 # d = (1/B) sum_j gamma_j g_j, one tensor per parameter

    @property
    def sq_full(self) -> float:
        return float(sum((g * g).sum() for g in self.full))


def _ghost_pass(model: nn.Module, loss_fn, x: torch.Tensor, y, eta: float) -> _Pass:
    """Norms, ``grad f`` and the mean clipped gradient of a batch, no per-example gradient materialised.

    Ghost clipping {cite}`lee2021scaling`: one forward pass and one backward pass of
    ``C = sum_j L^(j)`` inside :func:`utils.per_example.track_norms` give ``grad f`` and every
    ``||g_j||`` (notes eq 10); a second backward pass of ``sum_j gamma_j L^(j)`` (``gamma`` held
    constant) gives ``sum_j gamma_j g_j`` (``eq-clip-layer-step``). The second pass is skipped when
    nothing is clipped.
    """
    layers = trainable_linear_layers(model)
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(output, y) -> (B,) per-example losses")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a (B, d) tensor with B >= 1, got {getattr(x, 'shape', type(x).__name__)}")
    batch = int(x.shape[0])
    params = [p for _, layer in layers for p in layer.parameters(recurse=False) if p.requires_grad]
    with torch.enable_grad():
        with track_norms(model, reduction="sum") as tracker:
            losses = _check_loss(loss_fn(model(x), y), batch)
            summed = torch.autograd.grad(losses.sum(), params, retain_graph=True, allow_unused=True)
        norms = tracker.norms()
        gamma = clip_factors(norms, eta).to(losses.dtype)
        if bool((gamma < 1).any()):
            weighted = torch.autograd.grad((gamma * losses).sum(), params)      # the second backward
        else:
            weighted = summed
    return _Pass(losses.detach(), norms, gamma, params, [g / batch for g in summed],
                 [g / batch for g in weighted])


def _dots_with_full_gradient(model: nn.Module, loss_fn, x: torch.Tensor, y, p: _Pass) -> torch.Tensor:
    """``<g_j, grad f>`` for every example: one forward-mode pass (``torch.func.jvp``) along ``grad f``.

    ``<g_j, v>`` is the directional derivative of ``L^(j)`` along ``v``, so a Jacobian-vector
    product of the per-example losses with ``v = grad f`` gives all ``B`` inner products at once.
    """
    from torch.func import functional_call, jvp

    name_of = {id(q): name for name, q in model.named_parameters()}
    primals = {name_of[id(q)]: q.detach() for q in p.params}
    tangents = {name_of[id(q)]: g for q, g in zip(p.params, p.full)}

    def losses_at(params):
        return loss_fn(functional_call(model, params, (x,)), y)

    _, dots = jvp(losses_at, (primals,), (tangents,))
    return dots.detach()


def per_example_betas(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``beta_j = <g_j, grad f> / ||grad f||^2`` (notes eq 18) for every example, without materialising ``g_j``.

    ``grad f`` is the mean gradient of the batch ``(x, y)`` (one backward pass);
    ``loss_fn(output, y)`` returns per-example losses ``(B,)``. The inner products
    ``<g_j, grad f>`` are the directional derivatives of the ``L^(j)`` along ``grad f``: one
    forward-mode pass. (For a linear layer they are ``zbar_j^T G h_j``, ``eq-clip-beta-trick``, the
    chapter's didactic version.) Covers the trainable ``nn.Linear`` layers (others raise, see
    :func:`utils.per_example.trainable_linear_layers`). A zero mean gradient raises ``ValueError``.
    Returns ``(B,)``, detached, and leaves ``.grad`` untouched.

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> model = mlp([4, 3, 2])
    >>> b = per_example_betas(model, lambda o, t: F.cross_entropy(o, t, reduction="none"),
    ...                       torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
    >>> round(float(b.sum()), 4)                         # sum beta = m (eq-clip-sums)
    5.0
    """
    p = _ghost_pass(model, loss_fn, x, y, math.inf)
    sq_full = p.sq_full
    if not sq_full > 0:
        raise ValueError("the mean gradient of the batch is zero: beta is undefined at a stationary point")
    return _dots_with_full_gradient(model, loss_fn, x, y, p) / sq_full


def network_clipping_condition(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, eta: float):
    """``(gamma, beta, S, norms)`` of notes eqs 14, 18, 20 for a batch, no per-example gradient materialised.

    ``norms`` are the per-example gradient norms (notes eq 10, from :func:`utils.per_example.track_norms`),
    ``gamma = min(1, eta / norms)``, ``beta`` as :func:`per_example_betas`, ``S = sum gamma beta`` (float).
    """
    eta = _check_eta(eta)
    p = _ghost_pass(model, loss_fn, x, y, eta)
    sq_full = p.sq_full
    if not sq_full > 0:
        raise ValueError("the mean gradient of the batch is zero: beta is undefined at a stationary point")
    beta = _dots_with_full_gradient(model, loss_fn, x, y, p) / sq_full
    return p.gamma, beta, float((p.gamma * beta).sum()), p.norms


def _direction_stats(p: _Pass, eta: float) -> dict:
    """``S / B = <d, grad f> / ||grad f||^2 = (||d|| / ||grad f||) cos phi`` (``eq-clip-S-split``) and its factors."""
    sq_full = p.sq_full
    dot = float(sum((d * g).sum() for d, g in zip(p.clipped, p.full)))
    d_norm = math.sqrt(float(sum((d * d).sum() for d in p.clipped)))
    nan = float("nan")
    ok = sq_full > 0 and d_norm > 0
    return {"S_over_B": dot / sq_full if sq_full > 0 else nan,
            "step_ratio": d_norm / math.sqrt(sq_full) if sq_full > 0 else nan,
            "cos_phi": dot / (d_norm * math.sqrt(sq_full)) if ok else nan,
            "frac_clipped": float((p.norms > eta).float().mean()), "grad_norm": math.sqrt(sq_full)}


def clipped_backward_(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, eta: float, *,
                      noise_multiplier: float = 0.0, normalizer: float | None = None,
                      generator: torch.Generator | None = None, match_length: bool = False) -> dict:
    """Write the per-example-clipped gradient into ``.grad`` (in place): ghost clipping.

    Writes ``(sum_j C(g_j; eta) + sigma eta xi) / normalizer`` with ``xi ~ N(0, I)`` drawn from
    ``generator`` (DP-SGD, ``eq-clip-dpsgd``; ``sigma = noise_multiplier``, default 0: no noise) and
    ``normalizer`` the batch size ``B`` by default (the expected batch size under Poisson sampling).
    ``match_length=True`` (no noise) rescales the noiseless step to the length of the unclipped mean
    gradient ``||grad f||``: the clipped direction at SGD's step length. No per-example gradient
    is materialised (:func:`utils.per_example.track_norms` for the norms, a second backward pass for
    ``sum_j gamma_j g_j``, {cite}`lee2021scaling`).

    Returns a dict: ``loss`` (mean), ``norms``, ``gamma``, ``frac_clipped``, ``grad_norm``
    (``||grad f||``) and, for the noiseless mean clipped direction ``d``, ``S = sum_j gamma_j beta_j``
    (``= B <d, grad f> / ||grad f||^2`` by eq 19), ``S_over_B``,
    ``step_ratio = ||d|| / ||grad f||`` and ``cos_phi`` (NaN where ``grad f = 0``).
    """
    eta = _check_eta(eta)
    if isinstance(noise_multiplier, bool) or not isinstance(noise_multiplier, (int, float)) \
            or not 0 <= noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    if noise_multiplier > 0 and not math.isfinite(eta):
        raise ValueError("noise_multiplier > 0 needs a finite eta (the noise is sigma * eta * xi)")
    if match_length and noise_multiplier > 0:
        raise ValueError("match_length=True is a noiseless diagnostic; use noise_multiplier=0")
    p = _ghost_pass(model, loss_fn, x, y, eta)
    batch = p.losses.shape[0]
    normalizer = float(batch) if normalizer is None else _check_positive("normalizer", normalizer)
    stats = _direction_stats(p, eta)
    scale = batch / normalizer
    if match_length and stats["step_ratio"] > 0:
        scale = scale / stats["step_ratio"]
    for q, d in zip(p.params, p.clipped):
        step = d * scale
        if noise_multiplier > 0:
            noise = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
            step = step + (noise_multiplier * eta / normalizer) * noise
        q.grad = step
    return {"loss": float(p.losses.mean()), "norms": p.norms, "gamma": p.gamma,
            "S": stats["S_over_B"] * batch, **stats}


def privacy_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """``epsilon`` of ``(epsilon, delta)``-DP after ``steps`` DP-SGD steps, from Opacus's accountant.

    Poisson sampling with rate ``sample_rate = q`` and Gaussian noise ``sigma = noise_multiplier``
    (times the clipping norm) per step: the sampled Gaussian mechanism, composed with Opacus's
    ``RDPAccountant`` (``accountant="rdp"``, {cite}`mironov2017renyi`) or ``PRVAccountant``
    (``"prv"``, {cite}`gopi2021numerical`) {cite}`yousefpour2021opacus`.

    >>> round(privacy_spent(1.0, 0.01, 1000, 1e-5), 2) > 0
    True
    """
    from opacus.accountants import PRVAccountant, RDPAccountant

    kinds = {"rdp": RDPAccountant, "prv": PRVAccountant}
    if accountant not in kinds:
        raise ValueError(f"accountant must be one of {sorted(kinds)}, got {accountant!r}")
    noise_multiplier = _check_positive("noise_multiplier", noise_multiplier)
    sample_rate = _check_positive("sample_rate", sample_rate)
    if sample_rate > 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    steps = _check_positive("steps", steps, integer=True)
    delta = _check_positive("delta", delta)
    if delta >= 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    acc = kinds[accountant]()
    for _ in range(steps):
        acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return float(acc.get_epsilon(delta=delta))


def noise_for_privacy(epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: str = "rdp", rtol: float = 0.005) -> float:
    """The smallest noise multiplier ``sigma`` (to ``rtol``) that spends at most ``(epsilon, delta)``.

    Bisection on ``log sigma`` over :func:`privacy_spent` (Opacus's accountant; ``epsilon``
    decreases with ``sigma``). The result satisfies
    ``(1 - rtol) epsilon <= privacy_spent(sigma, sample_rate, steps, delta) <= epsilon``.
    """
    import warnings

    epsilon, rtol = _check_positive("epsilon", epsilon), _check_positive("rtol", rtol)
    with warnings.catch_warnings():        # Opacus hints at other RDP orders for trial sigmas
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return _bisect_noise(epsilon, delta, sample_rate, steps, accountant, rtol)


def _bisect_noise(epsilon, delta, sample_rate, steps, accountant, rtol) -> float:
    lo, hi = 0.05, 1.0
    while privacy_spent(hi, sample_rate, steps, delta, accountant) > epsilon:
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise ValueError(f"epsilon = {epsilon} needs a noise multiplier above 1e4")
    if privacy_spent(lo, sample_rate, steps, delta, accountant) <= epsilon:
        raise ValueError(f"epsilon = {epsilon} is reached with sigma < {lo}; not a useful DP setting")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        spent = privacy_spent(mid, sample_rate, steps, delta, accountant)
        if spent > epsilon:
            lo = mid
        else:
            hi = mid
            if spent >= (1 - rtol) * epsilon:
                break
    return hi


def dp_clipped_sgd(grads: Callable[[np.ndarray], np.ndarray], x0, eta: float, lr: float, steps: int, *,
                   noise_multiplier: float, sample_rate: float, seed: int = 0) -> np.ndarray:
    """DP-SGD (``eq-clip-dpsgd``) with Poisson sampling on explicit per-example gradients.

    Each step keeps every example independently with probability ``q = sample_rate``, clips the
    kept gradients (``grads(x)`` returns all ``(m, n)``), adds ``sigma eta xi`` (``xi ~ N(0, I)``,
    ``sigma = noise_multiplier``) and divides by the expected batch size ``q m``:
    ``x <- x - lr (sum_{j in batch} C(g_j; eta) + sigma eta xi) / (q m)``. Returns the trajectory
    ``(steps + 1, n)``. With ``sigma = 0`` and ``q = 1`` it is clipped GD.
    """
    eta, lr = _check_eta(eta), _check_positive("lr", lr)
    if not math.isfinite(eta):
        raise ValueError("DP-SGD needs a finite eta (the noise is sigma * eta * xi)")
    steps = _check_positive("steps", steps, integer=True)
    if isinstance(noise_multiplier, bool) or not isinstance(noise_multiplier, (int, float)) \
            or not 0 <= noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}")
    sample_rate = _check_positive("sample_rate", sample_rate)
    if sample_rate > 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    x = _check_x0(x0)
    rng = np.random.default_rng(seed)
    out = np.empty((steps + 1, x.size))
    out[0] = x
    m = None
    for k in range(steps):
        G = _as_matrix(grads(x.copy()), "grads(x)")
        m = G.shape[0] if m is None else m
        keep = rng.random(m) < sample_rate
        total = clip(G[keep], eta).sum(0) if keep.any() else np.zeros(x.size)
        x = x - lr * (total + noise_multiplier * eta * rng.standard_normal(x.size)) / (sample_rate * m)
        out[k + 1] = x
    return out


def train_clipped(model: nn.Module, data, *, eta: float, steps: int = 300, batch_size: int = 64, lr: float = 0.1,
                  seed: int = 0, eval_every: int = 25, probe_size: int = 512, match_length: bool = False,
                  noise_multiplier: float = 0.0, sample_rate: float | None = None,
                  progress: bool | None = None) -> dict:
    """Train ``model`` (in place) with per-example clipping: plain SGD on the clipped mean gradient.

    ``data`` is a :class:`utils.data.Split`; cross-entropy loss. Minibatches: ``batch_size`` examples
    drawn uniformly with replacement, or, with ``sample_rate = q``, Poisson sampling (every example
    kept with probability ``q``; the sum is divided by the expected batch size ``q m``), as DP-SGD's
    accountant assumes. ``noise_multiplier = sigma > 0`` adds ``sigma eta xi`` to the clipped sum
    (DP-SGD, ``eq-clip-dpsgd``); ``match_length=True`` rescales each clipped step to the length of
    the unclipped minibatch gradient (see :func:`clipped_backward_`). ``eta = math.inf`` is plain SGD.

    Every ``eval_every`` steps (and at steps 0 and ``steps``) it records, on a fixed probe set of
    ``probe_size`` training examples (``m = probe_size``, ``grad f`` their mean gradient): ``S / m``
    and its two factors ``step_ratio = ||d|| / ||grad f||`` and ``cos_phi`` (``eq-clip-S-split``),
    the fraction clipped, the train loss and the test accuracy. Each step it records the batch's
    ``S / B``, fraction clipped and size. Returns a dict of lists (and ``probe_index``, the probe
    set's indices into ``data.x_train``).
    """
    import torch.nn.functional as F

    from . import default_progress

    eta, lr = _check_eta(eta), _check_positive("lr", lr)
    steps = _check_positive("steps", steps, integer=True)
    batch_size = _check_positive("batch_size", batch_size, integer=True)
    eval_every = _check_positive("eval_every", eval_every, integer=True)
    if sample_rate is not None:
        sample_rate = _check_positive("sample_rate", sample_rate)
        if sample_rate > 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if progress is None:
        progress = default_progress()

    def loss_fn(out, t):
        return F.cross_entropy(out, t, reduction="none")

    gen = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    probe = torch.randperm(n, generator=gen)[:min(probe_size, n)]
    xp, yp = data.x_train[probe], data.y_train[probe]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    hist = {"step": [], "S_over_m": [], "step_ratio": [], "cos_phi": [], "frac_clipped": [], "train_loss": [],
            "test_accuracy": [], "batch_step": [], "batch_S_over_B": [], "batch_frac_clipped": [],
            "batch_size": [], "probe_index": probe}

    def record(step):
        stats = _direction_stats(_ghost_pass(model, loss_fn, xp, yp, eta), eta)
        with torch.no_grad():
            train_loss = float(loss_fn(model(data.x_train), data.y_train).mean())
            acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
        hist["step"].append(step)
        for key in ("step_ratio", "cos_phi", "frac_clipped"):
            hist[key].append(stats[key])
        hist["S_over_m"].append(stats["S_over_B"])
        hist["train_loss"].append(train_loss)
        hist["test_accuracy"].append(acc)

    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"eta={eta:.3g}", leave=False)
    record(0)
    params = [q for q in model.parameters() if q.requires_grad]
    for step in iterator:
        if sample_rate is None:
            idx = torch.randint(0, n, (batch_size,), generator=gen)
        else:
            idx = torch.nonzero(torch.rand(n, generator=gen) < sample_rate).ravel()
        opt.zero_grad(set_to_none=True)
        normalizer = None if sample_rate is None else sample_rate * n
        if len(idx) > 0:
            stats = clipped_backward_(model, loss_fn, data.x_train[idx], data.y_train[idx], eta,
                                      noise_multiplier=noise_multiplier, normalizer=normalizer,
                                      generator=gen, match_length=match_length)
        else:                                   # an empty Poisson batch: only the noise
            for q in params:
                q.grad = torch.randn(q.shape, generator=gen, dtype=q.dtype) * (noise_multiplier * eta / normalizer)
            stats = {"S_over_B": float("nan"), "frac_clipped": float("nan")}
        opt.step()
        hist["batch_step"].append(step)
        hist["batch_S_over_B"].append(stats["S_over_B"])
        hist["batch_frac_clipped"].append(stats["frac_clipped"])
        hist["batch_size"].append(len(idx))
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            record(step + 1)
    return hist


# ----------------------------------------------------------------------------------------------
# explorer panel
# ----------------------------------------------------------------------------------------------

def plot_clipping_explorer(fig, eta: float = 1.0, outlier_fraction: float = 0.1, kind: str = "symmetric",
                           lr: float = 0.5, steps: int = 200, n: int = 200, seed: int = 0) -> dict:
    """Clipped GD on least squares with outliers: the path in the ``(w0, w1)`` plane and ``S/m`` per iteration.

    Left: contours of ``f``, the least-squares minimiser, the true weights and the clipped GD path
    from ``(-4, -3)``. Right: ``S / m`` (log-free, 1 means nothing is clipped) and the fraction clipped.
    Returns the numbers drawn (``w_ls``, ``w_clip``, ``S_over_m``) for checks.
    """
    X, y, w_true, _ = outlier_regression(n=n, outlier_fraction=outlier_fraction, kind=kind, seed=seed)
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    run = clipped_gd(ls_grads(X, y), [-4.0, -3.0], eta=eta, lr=lr, steps=steps)
    ax1, ax2 = fig.subplots(1, 2)
    lo = np.minimum(run.x.min(0), np.minimum(w_ls, w_true)) - 1
    hi = np.maximum(run.x.max(0), np.maximum(w_ls, w_true)) + 1
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 60), np.linspace(lo[1], hi[1], 60))
    W = np.stack([g0.ravel(), g1.ravel()], 1)
    F = 0.5 * ((W @ X.T - y) ** 2).mean(1).reshape(g0.shape)
    ax1.contour(g0, g1, np.log(F - F.min() + 1e-3), levels=12, colors="0.75", linewidths=0.7)
    ax1.plot(run.x[:, 0], run.x[:, 1], ".-", color=PALETTE[0], ms=2, lw=1, label="clipped GD")
    ax1.plot(*w_ls, "x", color=PALETTE[1], ms=8, mew=2, label="least squares")
    ax1.plot(*w_true, "*", color=PALETTE[2], ms=10, label="true w")
    ax1.set_xlabel("intercept $w_0$")
    ax1.set_ylabel("slope $w_1$")
    ax1.legend(fontsize="x-small", loc="best")
    S_m = run.S / run.m
    ax2.plot(S_m, color=PALETTE[0], label="$S/m$")
    ax2.plot(run.frac_clipped, color=PALETTE[3], ls="--", label="fraction clipped")
    ax2.axhline(0, color="0.3", lw=0.8)
    ax2.set_xlabel("iteration $k$")
    ax2.set_ylabel("$S/m$, fraction clipped")
    ax2.set_ylim(-1.5, 1.5)                              # S is unbounded where grad f ~ 0
    ax2.legend(fontsize="x-small", loc="best")
    return {"w_ls": w_ls, "w_clip": run.x[-1], "S_over_m": S_m, "w_true": w_true}
