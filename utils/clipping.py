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
  :func:`train_clipped`: the same quantities for a network, from one forward and one backward pass.
* :func:`plot_clipping_explorer`: explorer panel (trajectories and ``S / m`` over iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .per_example import layer_sq_norms, trainable_linear_layers
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
# networks: gamma, beta and the clipped step from one forward and one backward pass
# ----------------------------------------------------------------------------------------------

@dataclass
class _Pass:
    losses: torch.Tensor
    layers: list
    records: dict
    grads: dict          # name -> (weight grad or None, bias grad or None) of C = sum_j L^(j)


def _check_loss(losses, batch: int) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"loss_fn must return a torch.Tensor of per-example losses, got {type(losses).__name__}")
    if tuple(losses.shape) != (batch,):
        raise ValueError(f"loss_fn must return per-example losses of shape (B,) = ({batch},), got "
                         f"{tuple(losses.shape)} (use reduction='none')")
    return losses


def _one_pass(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> _Pass:
    """Forward hooks keep ``H``, hooks on the layer outputs keep ``Zbar``; one backward of ``sum_j L^(j)``."""
    layers = trainable_linear_layers(model)
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(output, y) -> (B,) per-example losses")
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a (B, d) tensor with B >= 1, got {getattr(x, 'shape', type(x).__name__)}")
    batch = int(x.shape[0])
    records: dict[str, list] = {name: [] for name, _ in layers}
    handles = []

    def make_hook(name):
        def hook(module, inputs, output):
            rec = [inputs[0].detach(), None]
            records[name].append(rec)

            def grad_hook(grad):
                rec[1] = grad.detach()
            output.register_hook(grad_hook)
        return hook

    for name, layer in layers:
        handles.append(layer.register_forward_hook(make_hook(name)))
    try:
        with torch.enable_grad():
            losses = _check_loss(loss_fn(model(x), y), batch)
            params, keys = [], []
            for name, layer in layers:
                for kind, p in (("weight", layer.weight), ("bias", layer.bias)):
                    if p is not None and p.requires_grad:
                        params.append(p)
                        keys.append((name, kind))
            flat = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    grads = {name: [None, None] for name, _ in layers}
    for (name, kind), g in zip(keys, flat):
        grads[name][0 if kind == "weight" else 1] = g
    for name, _ in layers:
        recs = records[name]
        if len(recs) != 1 or recs[0][0].ndim != 2:
            raise ValueError(f"layer {name!r} must be called exactly once per forward pass on a (B, d) input "
                             "(weights shared over positions are not supported here)")
        if recs[0][1] is None:
            raise RuntimeError(f"the backward pass did not reach layer {name!r}; its output must affect the loss")
    return _Pass(losses.detach(), layers, {k: v[0] for k, v in records.items()}, grads)


def _mean_grad_and_dots(p: _Pass):
    """``(||grad f||^2, <g_j, grad f> for every j (B,), ||g_j||^2 (B,))`` with ``grad f`` the batch mean."""
    batch = p.losses.shape[0]
    sq_full = 0.0
    dots = torch.zeros(batch, dtype=p.losses.dtype)
    sq_norms = torch.zeros(batch, dtype=p.losses.dtype)
    for name, layer in p.layers:
        h, zbar = p.records[name]
        gw, gb = p.grads[name]
        if gw is not None:
            Gw = gw / batch                                   # grad f of this weight matrix
            sq_full += float((Gw * Gw).sum())
            dots = dots + ((zbar @ Gw) * h).sum(1)            # <zbar_j h_j^T, G>_F = zbar_j^T G h_j
        if gb is not None:
            Gb = gb / batch
            sq_full += float((Gb * Gb).sum())
            dots = dots + zbar @ Gb
        sq_norms = sq_norms + layer_sq_norms(h, zbar, weight=gw is not None, bias=gb is not None)
    return sq_full, dots, sq_norms


def per_example_betas(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``beta_j = <g_j, grad f> / ||grad f||^2`` (notes eq 18) for every example, without materialising ``g_j``.

    ``grad f`` is the mean gradient of the batch ``(x, y)``; ``loss_fn(output, y)`` returns per-example
    losses ``(B,)``. For a linear layer ``g_j = zbar_j h_j^T`` (notes eq 10), so
    ``<g_j, G>_F = zbar_j^T G h_j`` (``eq-clip-beta-trick``): one ordinary forward and backward
    pass, then one ``(B, p) x (p, d)`` product per layer. Covers the trainable ``nn.Linear`` layers
    (others raise, see :func:`utils.per_example.trainable_linear_layers`); each must be called once
    on a ``(B, d)`` input. A zero mean gradient raises ``ValueError``. Returns ``(B,)``, detached,
    and leaves ``.grad`` untouched.

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> model = mlp([4, 3, 2])
    >>> b = per_example_betas(model, lambda o, t: F.cross_entropy(o, t, reduction="none"),
    ...                       torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
    >>> round(float(b.sum()), 4)                         # sum beta = m (eq-clip-sums)
    5.0
    """
    p = _one_pass(model, loss_fn, x, y)
    sq_full, dots, _ = _mean_grad_and_dots(p)
    if not sq_full > 0:
        raise ValueError("the mean gradient of the batch is zero: beta is undefined at a stationary point")
    return dots / sq_full


def network_clipping_condition(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, eta: float):
    """``(gamma, beta, S, norms)`` of notes eqs 14, 18, 20 for a batch, from one forward/backward pass.

    ``norms`` are the per-example gradient norms (notes eq 10, via :func:`utils.per_example.layer_sq_norms`),
    ``gamma = min(1, eta / norms)``, ``beta`` as :func:`per_example_betas`, ``S = sum gamma beta`` (float).
    """
    eta = _check_eta(eta)
    p = _one_pass(model, loss_fn, x, y)
    sq_full, dots, sq_norms = _mean_grad_and_dots(p)
    if not sq_full > 0:
        raise ValueError("the mean gradient of the batch is zero: beta is undefined at a stationary point")
    norms = sq_norms.clamp_min(0).sqrt()
    gamma = clip_factors(norms, eta)
    beta = dots / sq_full
    return gamma, beta, float((gamma * beta).sum()), norms


def clipped_backward_(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, eta: float) -> dict:
    """Write the mean per-example-clipped gradient ``(1/B) sum_j C(g_j; eta)`` into ``.grad`` (in place).

    Per linear layer ``sum_j gamma_j zbar_j h_j^T = (gamma * Zbar)^T H`` (``eq-clip-layer-step``): one
    forward and one backward pass, no per-example gradient is materialised. Returns a dict with
    ``loss`` (mean), ``norms``, ``gamma``, ``beta``, ``S`` (NaN if the mean gradient is zero) and
    ``frac_clipped``.
    """
    eta = _check_eta(eta)
    p = _one_pass(model, loss_fn, x, y)
    sq_full, dots, sq_norms = _mean_grad_and_dots(p)
    norms = sq_norms.clamp_min(0).sqrt()
    gamma = clip_factors(norms, eta)
    batch = p.losses.shape[0]
    for name, layer in p.layers:
        h, zbar = p.records[name]
        gz = gamma[:, None].to(zbar.dtype) * zbar
        gw, gb = p.grads[name]
        if gw is not None:
            layer.weight.grad = (gz.T @ h) / batch
        if gb is not None:
            layer.bias.grad = gz.sum(0) / batch
    beta = dots / sq_full if sq_full > 0 else torch.full_like(dots, float("nan"))
    return {"loss": float(p.losses.mean()), "norms": norms, "gamma": gamma, "beta": beta,
            "S": float((gamma * beta).sum()), "frac_clipped": float((norms > eta).float().mean())}


def train_clipped(model: nn.Module, data, *, eta: float, steps: int = 300, batch_size: int = 64, lr: float = 0.1,
                  seed: int = 0, eval_every: int = 25, probe_size: int = 512, progress: bool | None = None) -> dict:
    """Train ``model`` (in place) with per-example clipping: plain SGD on ``(1/B) sum_j C(g_j; eta)``.

    ``data`` is a :class:`utils.data.Split`; cross-entropy loss. Every ``eval_every`` steps (and at
    steps 0 and ``steps``) it records, on a fixed probe set of ``probe_size`` training examples
    (``m = probe_size``, ``grad f`` the probe set's mean gradient): ``S / m`` (``S = sum gamma beta``)
    and the fraction clipped; plus the train loss and the test accuracy. Each step it records the
    batch's ``S / B``. Returns a dict of lists (and ``probe_index``, the probe set's indices into
    ``data.x_train``). ``eta = math.inf`` is plain SGD.
    """
    import torch.nn.functional as F

    from . import default_progress

    eta, lr = _check_eta(eta), _check_positive("lr", lr)
    steps = _check_positive("steps", steps, integer=True)
    batch_size = _check_positive("batch_size", batch_size, integer=True)
    eval_every = _check_positive("eval_every", eval_every, integer=True)
    if progress is None:
        progress = default_progress()

    def loss_fn(out, t):
        return F.cross_entropy(out, t, reduction="none")

    gen = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    probe = torch.randperm(n, generator=gen)[:min(probe_size, n)]
    xp, yp = data.x_train[probe], data.y_train[probe]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    hist = {"step": [], "S_over_m": [], "frac_clipped": [], "train_loss": [], "test_accuracy": [],
            "batch_step": [], "batch_S_over_B": [], "batch_frac_clipped": [], "probe_index": probe}

    def record(step):
        _, _, S, norms = network_clipping_condition(model, loss_fn, xp, yp, eta)
        with torch.no_grad():
            train_loss = float(loss_fn(model(data.x_train), data.y_train).mean())
            acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
        hist["step"].append(step)
        hist["S_over_m"].append(S / len(probe))
        hist["frac_clipped"].append(float((norms > eta).float().mean()))
        hist["train_loss"].append(train_loss)
        hist["test_accuracy"].append(acc)

    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"eta={eta:.3g}", leave=False)
    record(0)
    for step in iterator:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        opt.zero_grad(set_to_none=True)
        stats = clipped_backward_(model, loss_fn, data.x_train[idx], data.y_train[idx], eta)
        opt.step()
        hist["batch_step"].append(step)
        hist["batch_S_over_B"].append(stats["S"] / batch_size)
        hist["batch_frac_clipped"].append(stats["frac_clipped"])
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
