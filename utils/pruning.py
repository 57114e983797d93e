"""Pruning at initialisation: SynFlow and its baselines, layer collapse (chapter ``03_synflow``).

A pruning method *scores* the prunable parameters and *masks* the lowest scores (notes section 3.1.1).
This module puts five scorers on one interface, :func:`score`:

* ``"random"``: i.i.d. uniform scores;
* ``"magnitude"``: ``|theta|``;
* ``"snip"``: ``|dL/dtheta * theta|`` on a batch of data {cite}`lee2019snip`;
* ``"grasp"``: ``(H g) * theta`` with a Hessian-vector product {cite}`wang2020grasp` (the negation of
  GraSP's ``-(H g) * theta``, so that on this interface, as everywhere here, *high scores are kept*);
* ``"synflow"``: ``dR_SF/dtheta * theta`` with ``R_SF = 1^T (prod_l |theta^(l)|) 1`` (notes eqs 6-7,
  ``eq-synflow-objective`` and ``eq-synflow-score``) {cite}`tanaka2020synflow`, no data needed.

:func:`prune` turns scores into masks (global or layer-wise), iteratively with the exponential schedule
of the notes' Algorithm 1 (``alg-synflow-iterative``). :func:`is_collapsed`, :func:`path_count`,
:func:`layer_density` and :func:`max_compression` measure layer collapse; the rest supports the
chapter's experiments (sweeps, critical compression, training pruned networks, comparing masks across
initialisations) and its figures.

Implementation choices that decide results (each is discussed in the chapter):

* prunable parameters are the weights of ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers; biases are
  never pruned, but for SynFlow they do carry flow (their absolute values enter the linearised network,
  as in the reference implementation) unless they are zero;
* all scores are computed on a float64 copy of the model in eval mode; the model itself is never changed;
* masked weights score exactly 0 and stay masked in later iterations;
* ties (e.g. many scores equal to 0) are broken by position, so that *exactly* ``round(N / rho)``
  weights are kept; a threshold rule ``score > tau`` would drop every tied weight at once.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import default_progress
from .data import Split
from .plotting import PALETTE

__all__ = [
    "METHODS",
    "PRUNABLE_TYPES",
    "GRASP_TEMPERATURE",
    "prunable_layers",
    "prunable_names",
    "score",
    "synflow_scores",
    "synflow_objective",
    "synflow_score_formula",
    "select_masks",
    "prune",
    "layer_density",
    "global_density",
    "path_count",
    "is_collapsed",
    "max_compression",
    "zero_biases",
    "kaiming_init",
    "digits_convnet",
    "sweep",
    "critical_compression",
    "find_critical",
    "apply_masks_",
    "train_pruned",
    "canonical_masks",
    "jaccard",
    "mask_agreement",
    "plot_layer_profile",
    "plot_collapse_sweep",
    "plot_method_layers",
    "plot_accuracy_vs_compression",
    "METHOD_COLORS",
]

METHODS = ("random", "magnitude", "snip", "grasp", "synflow")
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
#: GraSP divides the logits by this temperature before the loss, as the reference implementations do
#: (without it the softmax saturates and ``H g`` is tiny); the ranking is what matters.
GRASP_TEMPERATURE = 200.0
SCHEDULES = ("exponential", "linear")
METHOD_COLORS = {"random": PALETTE[7], "magnitude": PALETTE[2], "snip": PALETTE[4], "grasp": PALETTE[3],
                 "synflow": PALETTE[0], "synflow-1shot": PALETTE[5]}

Masks = dict[str, torch.Tensor]
Data = Any  # (x, y) tuple of tensors or a utils.data.Split


# --------------------------------------------------------------------------------------------------
# argument checks and small helpers
# --------------------------------------------------------------------------------------------------

def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The prunable layers of ``model`` (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``) in module order.

    Raises ``TypeError`` if ``model`` is not an ``nn.Module`` and ``ValueError`` if it has no prunable layer.

    >>> from utils.models import mlp
    >>> [name for name, _ in prunable_layers(mlp([4, 3, 2]))]
    ['fc1', 'fc2']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    if not found:
        raise ValueError("model has no prunable layer (no nn.Linear, nn.Conv1d or nn.Conv2d inside it)")
    return found


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the prunable parameters, ``"<layer>.weight"``, in module order (the keys of every mask dict)."""
    return [f"{name}.weight" for name, _ in prunable_layers(model)]


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_compression(compression: float, n_weights: int) -> float:
    if isinstance(compression, bool) or not isinstance(compression, (int, float, np.integer, np.floating)):
        raise TypeError(f"compression must be a number in [1, {n_weights}], got {type(compression).__name__}")
    compression = float(compression)
    if not math.isfinite(compression) or compression < 1.0 or compression > n_weights:
        raise ValueError(f"compression must be in [1, {n_weights}] (1 = dense, {n_weights} = one weight left), "
                         f"got {compression!r}")
    return compression


def _check_int(value: int, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_masks(model: nn.Module, masks: Masks | None) -> Masks | None:
    if masks is None:
        return None
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{param name: 0/1 tensor}}, got {type(masks).__name__}")
    params = dict(model.named_parameters())
    names = prunable_names(model)
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise ValueError(f"masks names {unknown}, which are not prunable parameters; they are {names}")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"masks[{name!r}] must be a tensor, got {type(mask).__name__}")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}, the weight has {tuple(params[name].shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"masks[{name!r}] must hold only 0 and 1")
    return masks


def _as_batch(data: Data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if data is None:
        raise ValueError(f"method {what!r} needs data: pass data=(x, y) or a utils.data.Split")
    if isinstance(data, Split):
        return data.x_train, data.y_train
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"data must hold the same, non-zero number of inputs and labels, got {x.shape[0]} and "
                             f"{y.shape[0]}")
        return x, y
    raise TypeError(f"data must be a tuple (x, y) of tensors or a utils.data.Split, got {type(data).__name__}")


def _input_shape(model: nn.Module, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)) or not input_shape or \
                not all(isinstance(s, int) and s >= 1 for s in input_shape):
            raise ValueError(f"input_shape must be a non-empty tuple of ints >= 1 (one example, no batch axis), "
                             f"got {input_shape!r}")
        return tuple(input_shape)
    first = prunable_layers(model)[0][1]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ValueError("input_shape is needed for SynFlow when the first prunable layer is a convolution, "
                     "e.g. input_shape=(1, 28, 28)")


def _scoring_copy(model: nn.Module, masks: Masks | None) -> nn.Module:
    """A float64 copy of ``model`` in eval mode with the masks multiplied in (the model is not touched)."""
    work = copy.deepcopy(model).double().eval()
    if masks:
        params = dict(work.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask.to(params[name]))
    return work


def _weights(work: nn.Module) -> list[tuple[str, torch.Tensor]]:
    params = dict(work.named_parameters())
    return [(name, params[name]) for name in prunable_names(work)]


# --------------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------------

def synflow_objective(model: nn.Module, masks: Masks | None = None, *,
                      input_shape: tuple[int, ...] | None = None) -> float:
    """``R_SF = 1^T (prod_l |theta^(l)|) 1`` (notes eq. 6, ``eq-synflow-objective``), computed by a forward pass.

    The network with every parameter replaced by its absolute value (biases included) is evaluated in
    float64 on an all-ones input and its outputs are summed. For a ReLU network without biases this is
    exactly the product of the matrices ``|theta^(l)|`` (all pre-activations are >= 0, so every ReLU is
    the identity): the l1 path norm, the sum over all input-output paths of the product of ``|theta|``
    along the path.

    >>> from utils.models import mlp
    >>> net = mlp([3, 2, 1], bias=False)
    >>> _ = net.fc1.weight.data.fill_(-1.0); _ = net.fc2.weight.data.fill_(2.0)
    >>> synflow_objective(net)   # 6 paths, each of weight 1 * 2
    12.0
    """
    work = _scoring_copy(model, _check_masks(model, masks))
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
        x = torch.ones((1, *_input_shape(model, input_shape)), dtype=torch.float64,
                       device=next(work.parameters()).device)
        return float(work(x).sum())


class _SynFlow:
    """The linearised float64 copy of a model, reused across the iterations of Algorithm 1."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None):
        self.work = _scoring_copy(model, None)
        with torch.no_grad():
            for p in self.work.parameters():
                p.abs_()  # biases too: they carry flow unless they are zero
        self.weights = _weights(self.work)
        self.abs0 = {name: p.detach().clone() for name, p in self.weights}
        self.x = torch.ones((1, *_input_shape(model, input_shape)), dtype=torch.float64,
                            device=next(self.work.parameters()).device)

    def __call__(self, masks: Masks | None) -> Masks:
        with torch.no_grad():
            for name, p in self.weights:
                p.copy_(self.abs0[name] if masks is None else self.abs0[name] * masks[name].to(p))
        R = self.work(self.x).sum()
        grads = torch.autograd.grad(R, [p for _, p in self.weights])
        return {name: (g * p).detach() for (name, p), g in zip(self.weights, grads)}


def synflow_scores(model: nn.Module, masks: Masks | None = None, *,
                   input_shape: tuple[int, ...] | None = None) -> Masks:
    """SynFlow scores ``dR_SF/dtheta * theta`` (notes eq. 7, ``eq-synflow-score``) {cite}`tanaka2020synflow`.

    Same as ``score(model, "synflow")``. Returns ``{param name: float64 tensor of the weight's shape}``,
    every score >= 0; weights masked by ``masks`` score exactly 0. Computed on a float64 copy in eval
    mode with ``|theta|`` for every parameter (biases included: nonzero biases add flow that eq. 7 does
    not have) and an all-ones input of shape ``input_shape`` (inferred for a model that starts with
    ``nn.Linear``). The model is left unchanged (weights, dtype and train/eval mode).

    On a network without biases it equals ``utils.saliency.synflow_scores`` (eq. 6 on the weights
    alone, used for the conservation laws); a test checks that the two agree.

    >>> from utils.models import mlp
    >>> net = mlp([2, 2, 1], bias=False)
    >>> _ = net.fc1.weight.data.fill_(1.0); _ = net.fc2.weight.data.fill_(-2.0)
    >>> synflow_scores(net)["fc2.weight"]   # R_SF = 8; each output weight carries half of it
    tensor([[4., 4.]], dtype=torch.float64)
    """
    return _SynFlow(model, input_shape)(_check_masks(model, masks))


def synflow_score_formula(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Eq. 7 with explicit matrix products, for weight matrices ``theta^(1), ..., theta^(L)`` (shapes ``(n_l, n_{l-1})``).

    ``S[l]_ij = [1^T |theta^(L)| ... |theta^(l+1)|]_i  |theta^(l)_ij|  [|theta^(l-1)| ... |theta^(1)| 1]_j``.
    Used to check :func:`synflow_scores` against the closed form (``eq-synflow-score``).

    >>> synflow_score_formula([torch.ones(2, 3), torch.ones(1, 2)])[0]
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """
    if not isinstance(weights, (list, tuple)) or not weights:
        raise ValueError("weights must be a non-empty list of 2-D tensors")
    A = [w.detach().abs() for w in weights]
    for l, a in enumerate(A):
        if a.ndim != 2:
            raise ValueError(f"weights[{l}] must be 2-D, got shape {tuple(a.shape)}")
        if l and a.shape[1] != A[l - 1].shape[0]:
            raise ValueError(f"weights[{l}] has {a.shape[1]} columns but weights[{l - 1}] has {A[l - 1].shape[0]} rows")
    scores = []
    for l, a in enumerate(A):
        right = torch.ones(A[0].shape[1], dtype=a.dtype)       # prod_{k<l} |theta^(k)| 1
        for k in range(l):
            right = A[k] @ right
        left = torch.ones(A[-1].shape[0], dtype=a.dtype)        # 1^T prod_{k>l} |theta^(k)|
        for k in range(len(A) - 1, l, -1):
            left = left @ A[k]
        scores.append(left[:, None] * a * right[None, :])
    return scores


def score(model: nn.Module, method: str, data: Data = None, loss_fn: Callable | None = None, *,
          masks: Masks | None = None, seed: int = 0, input_shape: tuple[int, ...] | None = None) -> Masks:
    """Score every prunable parameter of ``model`` with ``method``; high scores are kept.

    ``method`` is one of :data:`METHODS`. ``"snip"`` and ``"grasp"`` need ``data`` (a tuple ``(x, y)`` or a
    :class:`utils.data.Split`, whose training set is used) and use ``loss_fn(logits, y)`` (default
    cross-entropy). ``masks`` (from a previous pruning step) zero weights before scoring; masked weights
    score 0 for every method but ``"random"`` (:func:`prune` keeps them masked regardless). ``seed`` seeds
    ``"random"``. Returns ``{param name: float64 tensor of the weight's shape}``, computed on a float64
    copy of ``model`` in eval mode (the model is not changed).

    >>> from utils.models import mlp
    >>> s = score(mlp([4, 3, 2]), "magnitude")
    >>> sorted(s), s["fc1.weight"].shape, s["fc1.weight"].dtype
    (['fc1.weight', 'fc2.weight'], torch.Size([3, 4]), torch.float64)
    """
    _check_method(method)
    names = prunable_names(model)
    masks = _check_masks(model, masks)
    if method == "synflow":
        return synflow_scores(model, masks, input_shape=input_shape)
    if method == "random":
        generator = torch.Generator().manual_seed(_check_int(seed, "seed", 0))
        params = dict(model.named_parameters())
        return {n: torch.rand(params[n].shape, generator=generator, dtype=torch.float64) for n in names}
    work = _scoring_copy(model, masks)
    weights = _weights(work)
    if method == "magnitude":
        return {n: p.detach().abs() for n, p in weights}
    x, y = _as_batch(data, method)
    dev = next(work.parameters()).device
    x, y = x.to(dev, torch.float64), y.to(dev)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(logits, y), got {type(loss_fn).__name__}")
    tensors = [p for _, p in weights]
    if method == "snip":
        grads = torch.autograd.grad(loss_fn(work(x), y), tensors)
        return {n: (g * p).detach().abs() for (n, p), g in zip(weights, grads)}
    # grasp: H g by differentiating <stop_grad(g), g> once more
    g0 = torch.autograd.grad(loss_fn(work(x) / GRASP_TEMPERATURE, y), tensors)
    grads = torch.autograd.grad(loss_fn(work(x) / GRASP_TEMPERATURE, y), tensors, create_graph=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g0, grads))
    hg = torch.autograd.grad(z, tensors, allow_unused=True)
    return {n: (torch.zeros_like(p) if h is None else h * p).detach() for (n, p), h in zip(weights, hg)}


# --------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------

def select_masks(scores: Masks, density: float, *, masks: Masks | None = None, scope: str = "global",
                 ties: str = "exact") -> Masks:
    """Keep the highest scores: exactly ``round(density * N)`` weights globally (``scope="global"``) or
    ``max(1, round(density * N_l))`` in every layer (``scope="layer"``).

    Weights already masked by ``masks`` are never kept again. Ties are broken by position (a stable
    sort), so the count is exact even when many scores are equal (e.g. 0): a threshold rule
    ``score > tau`` would remove every tied weight. ``ties="threshold"`` reproduces that rule of the
    reference implementation instead: ``tau`` is the ``(N - k)``-th smallest score and only scores
    ``> tau`` are kept (fewer than ``k`` when scores tie at ``tau``). Returns float 0/1 masks (float64).

    >>> select_masks({"w": torch.tensor([0.0, 0.0, 0.0, 1.0])}, 0.5)["w"]
    tensor([1., 0., 0., 1.], dtype=torch.float64)
    """
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {param name: tensor}")
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if ties not in ("exact", "threshold"):
        raise ValueError(f"ties must be 'exact' or 'threshold', got {ties!r}")
    flat = []
    for name, s in scores.items():
        s = s.detach().to(torch.float64).flatten()
        if torch.isnan(s).any():
            raise ValueError(f"scores[{name!r}] contains NaN")
        if masks is not None:
            if name not in masks or masks[name].numel() != s.numel():
                raise ValueError(f"masks must have an entry of the same shape for every score, {name!r} is off")
            s = torch.where(masks[name].flatten().to(s.device) > 0, s, torch.full_like(s, -math.inf))
        flat.append(s)

    def keep_top(s: torch.Tensor, k: int) -> torch.Tensor:
        if ties == "threshold":
            if k >= s.numel():
                return torch.ones_like(s)
            return (s > torch.kthvalue(s, s.numel() - k).values).to(torch.float64)
        # rank only the weights still alive (masked ones are -inf), which shrink as pruning proceeds
        alive = torch.nonzero(s > -math.inf).flatten()
        keep = torch.zeros_like(s)
        if k >= alive.numel():        # keep every live weight, then fill up with masked ones by position
            keep[alive] = 1.0
            keep[torch.nonzero(s == -math.inf).flatten()[:k - alive.numel()]] = 1.0
            return keep
        a = s[alive]
        # the k-th largest live score tau; keep every score > tau and the first (by position) ties at tau
        tau = torch.kthvalue(a, a.numel() - k + 1).values
        above = a > tau
        keep[alive[above]] = 1.0
        need = k - int(above.sum())
        if need > 0:
            keep[alive[torch.nonzero(a == tau).flatten()[:need]]] = 1.0
        return keep

    if scope == "global":
        joined = torch.cat(flat)
        k = max(1, int(round(density * joined.numel())))
        pieces = torch.split(keep_top(joined, k), [s.numel() for s in flat])
    else:
        pieces = [keep_top(s, max(1, int(round(density * s.numel())))) for s in flat]
    return {name: piece.reshape(scores[name].shape) for name, piece in zip(scores, pieces)}


def prune(model: nn.Module, method: str, compression: float, iterations: int = 100,
          schedule: str = "exponential", data: Data = None, loss_fn: Callable | None = None, *,
          scope: str = "global", seed: int = 0, input_shape: tuple[int, ...] | None = None,
          ties: str = "exact", progress: bool | None = False) -> Masks:
    """Prune ``model`` to ``1/compression`` of its prunable weights (Algorithm 1, ``alg-synflow-iterative``).

    For ``k = 1..iterations``: score the masked network with ``method`` (see :func:`score`), then keep the
    top ``round(N / rho_k)`` weights, ``rho_k = compression**(k/iterations)`` (``schedule="exponential"``,
    the notes' ``rho^(-k/n)`` percentile) or density ``1 - (1 - 1/compression) k/iterations``
    (``"linear"``). ``iterations=1`` is one-shot pruning. ``scope="global"`` ranks all layers together
    (exactly ``round(N/compression)`` weights kept); ``"layer"`` prunes every layer to the same density.
    Returns ``{param name: float 0/1 mask of the weight's shape}`` (the weight's dtype); the model is
    not changed (apply the masks with :func:`apply_masks_`). ``ties`` is passed to :func:`select_masks`
    (``"threshold"`` reproduces the reference implementation's rule, which over-prunes on ties).
    SynFlow's all-ones input has shape ``input_shape``, else the shape of one example of ``data``, else
    the ``in_features`` of a first linear layer.

    >>> from utils.models import mlp
    >>> masks = prune(mlp([64, 32, 10]), "synflow", compression=10, iterations=20)
    >>> round(global_density(masks), 3)
    0.1
    """
    _check_method(method)
    layers = prunable_layers(model)
    params = dict(model.named_parameters())
    names = [f"{n}.weight" for n, _ in layers]
    n_weights = sum(params[n].numel() for n in names)
    compression = _check_compression(compression, n_weights)
    iterations = _check_int(iterations, "iterations")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if method in ("snip", "grasp"):
        _as_batch(data, method)
    if method == "synflow" and input_shape is None and data is not None:
        input_shape = tuple(_as_batch(data, method)[0].shape[1:])     # one example's shape, from the data
    scorer = _SynFlow(model, input_shape) if method == "synflow" else None
    generator = torch.Generator().manual_seed(_check_int(seed, "seed", 0))
    masks: Masks | None = None
    steps = range(1, iterations + 1)
    if default_progress() if progress is None else progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"{method} pruning", leave=False)
    for k in steps:
        if schedule == "exponential":
            density = compression ** (-k / iterations)
        else:
            density = 1.0 - (1.0 - 1.0 / compression) * k / iterations
        if scorer is not None:
            s = scorer(masks)
        elif method == "random":    # one generator for the whole run: fresh scores at every iteration
            s = {n: torch.rand(params[n].shape, generator=generator, dtype=torch.float64) for n in names}
        else:
            s = score(model, method, data, loss_fn, masks=masks, input_shape=input_shape)
        masks = select_masks(s, density, masks=masks, scope=scope, ties=ties)
    return {n: masks[n].to(params[n].dtype) for n in names}


# --------------------------------------------------------------------------------------------------
# layer collapse
# --------------------------------------------------------------------------------------------------

def _check_mask_dict(masks: Masks) -> Masks:
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict {param name: 0/1 tensor}, as returned by prune")
    for name, m in masks.items():
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"masks[{name!r}] must be a tensor, got {type(m).__name__}")
    return masks


def layer_density(masks: Masks) -> dict[str, float]:
    """Fraction of weights kept in each layer: ``{param name: kept / total}``, in [0, 1].

    >>> layer_density({"fc1.weight": torch.tensor([[1., 0.], [0., 0.]])})
    {'fc1.weight': 0.25}
    """
    return {n: float((m != 0).sum()) / m.numel() for n, m in _check_mask_dict(masks).items()}


def global_density(masks: Masks) -> float:
    """Fraction of all prunable weights kept: ``1 / compression``."""
    _check_mask_dict(masks)
    return sum(float((m != 0).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def _channel_graphs(masks: Masks) -> list[torch.Tensor]:
    """Each mask as a (fan_out, fan_in) matrix of connection counts between units (conv: channels).

    A linear layer that follows a convolution (after a flatten) gets its columns summed per channel.
    Assumes the layers are in forward order, as in the masks :func:`prune` returns.
    """
    graphs = []
    for name, m in masks.items():
        m = (m.detach() != 0).to(torch.float64).cpu()
        if m.ndim > 2:
            m = m.flatten(2).sum(2)       # conv: kernel positions connecting channel pairs
        if m.ndim != 2:
            raise ValueError(f"masks[{name!r}] must be at least 2-D, got shape {tuple(m.shape)}")
        if graphs and m.shape[1] != graphs[-1].shape[0]:
            prev = graphs[-1].shape[0]
            if m.shape[1] % prev:
                raise ValueError(f"masks[{name!r}] has {m.shape[1]} inputs, which does not match the previous "
                                 f"layer's {prev} outputs")
            m = m.reshape(m.shape[0], prev, m.shape[1] // prev).sum(2)   # flatten: features grouped by channel
        graphs.append(m)
    return graphs


def path_count(masks: Masks) -> float:
    """Number of input-output paths through the kept weights, ``1^T M^(L) ... M^(1) 1``.

    This is the SynFlow objective (eq. 6) with every kept weight set to 1. For convolutions it counts
    paths in the channel graph (kernel positions summed). 0 means the network is disconnected.

    >>> path_count({"fc1.weight": torch.ones(2, 3), "fc2.weight": torch.tensor([[1., 0.]])})
    3.0
    """
    graphs = _channel_graphs(_check_mask_dict(masks))
    v = torch.ones(graphs[0].shape[1], dtype=torch.float64)
    for g in graphs:
        v = g @ v
    return float(v.sum())


def is_collapsed(masks: Masks) -> bool:
    """Layer collapse: some prunable layer is fully masked, or no input-output path is left.

    >>> is_collapsed({"fc1.weight": torch.tensor([[1., 0.], [0., 0.]]), "fc2.weight": torch.tensor([[0., 1.]])})
    True
    """
    if any(float((m != 0).sum()) == 0 for m in _check_mask_dict(masks).values()):
        return True
    return path_count(masks) == 0.0


def max_compression(model: nn.Module) -> float:
    """``rho_max``: prunable weights / number of prunable layers (one weight per layer on a single path).

    >>> from utils.models import mlp
    >>> max_compression(mlp([64, 100, 10]))   # (6400 + 1000) / 2
    3700.0
    """
    params = dict(model.named_parameters())
    names = prunable_names(model)
    return sum(params[n].numel() for n in names) / len(names)


# --------------------------------------------------------------------------------------------------
# initialisation variants
# --------------------------------------------------------------------------------------------------

def zero_biases(model: nn.Module) -> nn.Module:
    """Set every bias of the prunable layers to zero, **in place**; returns ``model``."""
    with torch.no_grad():
        for _, layer in prunable_layers(model):
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def kaiming_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain) and zero biases for every prunable layer, **in place**."""
    generator = torch.Generator().manual_seed(_check_int(seed, "seed", 0))
    with torch.no_grad():
        for _, layer in prunable_layers(model):
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def digits_convnet(seed: int = 0, channels: tuple[int, ...] = (8, 16, 16), n_classes: int = 10) -> nn.Sequential:
    """A small ReLU conv net for the 8x8 digits, taking flat ``(n, 64)`` inputs like the book's MLPs.

    ``Unflatten -> [Conv2d 3x3, padding 1 -> ReLU] per entry of channels -> Flatten -> Linear``, with
    Kaiming-normal weights and zero biases (:func:`kaiming_init`, seeded). With the default channels it
    has 72 + 1152 + 2304 + 10240 = 13768 prunable weights in 4 layers.

    >>> max_compression(digits_convnet())
    3442.0
    """
    if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ValueError(f"channels must be a non-empty tuple of ints >= 1, got {channels!r}")
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
    previous = 1
    for c in channels:
        layers += [nn.Conv2d(previous, c, 3, padding=1), nn.ReLU()]
        previous = c
    layers += [nn.Flatten(), nn.Linear(previous * 64, n_classes)]
    return kaiming_init(nn.Sequential(*layers), seed=seed)


# --------------------------------------------------------------------------------------------------
# experiments
# --------------------------------------------------------------------------------------------------

def _method_spec(method: str) -> tuple[str, int | None]:
    """'synflow-1shot' -> ('synflow', 1); other names -> (name, None)."""
    if method.endswith("-1shot"):
        return _check_method(method.removesuffix("-1shot")), 1
    return _check_method(method), None


def sweep(model: nn.Module, methods: Iterable[str], log10_compressions: Iterable[float], *, data: Data = None,
          iterations: dict[str, int] | None = None, seed: int = 0, stop_at_collapse: bool = False,
          scope: str = "global", input_shape: tuple[int, ...] | None = None,
          progress: bool | None = None) -> list[dict]:
    """Prune ``model`` with each method at each compression ``10**c`` and record what is left.

    ``methods`` may include ``"synflow-1shot"`` (SynFlow with one iteration). ``iterations`` maps a method
    to its number of pruning iterations (default: 100 for SynFlow, 1 for the others, as in the paper).
    With ``stop_at_collapse`` a method's sweep stops at its first collapsed compression (enough for
    :func:`critical_compression`). Returns one record per (method, compression): ``method``,
    ``log10_compression``, ``density`` (per layer, list), ``collapsed``, ``paths``.
    """
    iterations = {"synflow": 100, **(iterations or {})}
    grid = [float(c) for c in log10_compressions]
    methods = list(methods)
    jobs = [(m, c) for m in methods for c in grid]
    bar = None
    if default_progress() if progress is None else progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="compression sweep", leave=False)
    records, dead = [], set()
    for method, c in jobs:
        if bar is not None:
            bar.update(1)
        if method in dead:
            continue
        base, n_iter = _method_spec(method)
        n_iter = n_iter or iterations.get(method, iterations.get(base, 1))
        masks = prune(model, base, 10.0 ** c, iterations=n_iter, data=data, seed=seed, scope=scope,
                      input_shape=input_shape)
        collapsed = is_collapsed(masks)
        records.append({"method": method, "log10_compression": c, "density": list(layer_density(masks).values()),
                        "collapsed": collapsed, "paths": path_count(masks)})
        if collapsed and stop_at_collapse:
            dead.add(method)
    if bar is not None:
        bar.close()
    return records


def critical_compression(records: list[dict]) -> dict[str, float]:
    """``log10 rho_cr`` per method: the largest compression on the grid below the method's first collapse.

    ``nan`` if the method collapses already at the smallest compression swept. (If a method never
    collapses on the grid, this is the largest compression swept: a lower bound.)
    """
    out: dict[str, float] = {}
    for method in dict.fromkeys(r["method"] for r in records):
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
        best = math.nan
        for r in rows:
            if r["collapsed"]:
                break
            best = r["log10_compression"]
        out[method] = best
    return out


def apply_masks_(model: nn.Module, masks: Masks) -> nn.Module:
    """Multiply the masks into the weights of ``model``, **in place**; returns ``model``."""
    masks = _check_masks(model, _check_mask_dict(masks))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name]))
    return model


def train_pruned(model: nn.Module, masks: Masks, data: Split, **train_kwargs):
    """Train ``model`` **in place** with ``masks`` applied after every step (so pruned weights stay 0).

    Keyword arguments go to :func:`utils.training.train`; returns its ``History``.
    """
    from .training import train

    apply_masks_(model, masks)
    params = dict(model.named_parameters())
    pairs = [(params[n], m.to(params[n])) for n, m in masks.items()]

    def remask(_model, _step):
        with torch.no_grad():
            for p, m in pairs:
                p.mul_(m)

    return train(model, data, after_step=remask, **train_kwargs)


def canonical_masks(masks: Masks) -> Masks:
    """Reorder the hidden units of a fully connected mask stack into a canonical order.

    Permuting the hidden units of a layer (rows of ``M^(l)`` with the columns of ``M^(l+1)``) gives an
    isomorphic network. Units are sorted, layer by layer from the input, by (out-degree, in-degree, the
    sorted incoming pattern) in decreasing order, so that two masks that differ by such a permutation
    usually map to the same canonical form (a heuristic: ties in degree may remain). Input and output
    units keep their order. Linear layers only.
    """
    ms = [(n, (m.detach() != 0).to(torch.float64).cpu().clone()) for n, m in _check_mask_dict(masks).items()]
    for name, m in ms:
        if m.ndim != 2:
            raise ValueError(f"canonical_masks handles fully connected masks only; {name!r} has shape {tuple(m.shape)}")
    out = [m for _, m in ms]
    for l in range(len(out) - 1):
        inc, nxt = out[l], out[l + 1]
        in_deg, out_deg = inc.sum(1), nxt.sum(0)
        # lexicographic: out-degree, in-degree, then the incoming pattern read as weighted positions
        pattern = inc @ torch.linspace(1.0, 2.0, inc.shape[1], dtype=torch.float64)
        key = out_deg * 1e12 + in_deg * 1e6 + pattern
        order = torch.argsort(key, descending=True, stable=True)
        out[l] = inc[order]
        out[l + 1] = nxt[:, order]
    return {n: m for (n, _), m in zip(ms, out)}


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Jaccard overlap ``|a and b| / |a or b|`` of two 0/1 masks of the same shape (1.0 if both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a != 0, b != 0
    union = float((a | b).sum())
    return 1.0 if union == 0 else float((a & b).sum()) / union


def mask_agreement(first: Masks, second: Masks, canonical: bool = True) -> dict[str, Any]:
    """How alike two mask stacks are: per-layer Jaccard overlap (after :func:`canonical_masks` if
    ``canonical``) and the L1 distance between their per-layer density profiles."""
    if list(first) != list(second):
        raise ValueError("first and second must mask the same parameters, in the same order")
    a, b = (canonical_masks(first), canonical_masks(second)) if canonical else (first, second)
    da, db = layer_density(first), layer_density(second)
    return {"jaccard": [jaccard(a[n], b[n]) for n in a],
            "profile_distance": sum(abs(da[n] - db[n]) for n in da)}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------

def _nearest(records: list[dict], method: str, log10_compression: float) -> dict:
    rows = [r for r in records if r["method"] == method]
    if not rows:
        raise ValueError(f"no records for method {method!r}; the sweep has {sorted({r['method'] for r in records})}")
    return min(rows, key=lambda r: abs(r["log10_compression"] - log10_compression))


def plot_layer_profile(fig, method: str = "synflow", log10_compression: float = 2.0, *, records: list[dict],
                       layer_labels: list[str] | None = None) -> None:
    """Explorer panel: the fraction of weights left in each layer (log scale) for one method and
    compression, taken from a :func:`sweep` (the nearest compression swept), with a collapse flag in the
    title, the global density ``1/rho`` dashed and a red cross for each empty layer."""
    r = _nearest(records, method, log10_compression)
    ax = fig.subplots()
    dens = np.array(r["density"], dtype=float)
    x = np.arange(1, len(dens) + 1)
    floor = 1e-5
    ax.bar(x, np.where(dens > 0, dens, np.nan), color=METHOD_COLORS.get(method, PALETTE[0]))
    empty = dens == 0
    if empty.any():   # an empty layer has no bar on a log axis: mark it
        ax.plot(x[empty], np.full(empty.sum(), floor * 3), "x", color="#B00000", ms=8, mew=2, label="empty layer")
    ax.axhline(10.0 ** -r["log10_compression"], color="#444444", ls="--", lw=1, label="global density $1/\\rho$")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xticks(x, layer_labels or [f"{i}" for i in x])
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of weights left")
    flag = "COLLAPSED" if r["collapsed"] else "connected"
    ax.set_title(f"{method}, $\\rho = 10^{{{r['log10_compression']:.2f}}}$: {flag}",
                 color="#B00000" if r["collapsed"] else "#222222", fontsize="small")


def plot_collapse_sweep(axes, records: list[dict], *, rho_max: float | None = None,
                        layers: list[int] | None = None) -> None:
    """The layer-collapse figure: ``axes[0]`` the fraction left in the smallest-density layer per method
    vs compression; ``axes[1]`` the number of input-output paths (log) vs compression.

    Collapsed points are drawn hollow; ``rho_max`` is marked with a vertical line.
    """
    ax_d, ax_p = axes
    for method in dict.fromkeys(r["method"] for r in records):
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
        c = np.array([r["log10_compression"] for r in rows])
        dmin = np.array([min(r["density"]) if layers is None else min(r["density"][i] for i in layers) for r in rows])
        paths = np.array([r["paths"] for r in rows])
        color = METHOD_COLORS.get(method, None)
        ax_d.plot(10 ** c, np.maximum(dmin, 1e-6), "-", color=color, label=method)
        ax_p.plot(10 ** c, np.maximum(paths, 0.5), "-", color=color, label=method)
        dead = np.array([r["collapsed"] for r in rows])
        ax_d.plot(10 ** c[dead], np.maximum(dmin[dead], 1e-6), "o", mfc="white", color=color, ms=4)
        ax_p.plot(10 ** c[dead], np.maximum(paths[dead], 0.5), "o", mfc="white", color=color, ms=4)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression ratio $\\rho$")
        if rho_max is not None:
            ax.axvline(rho_max, color="#444444", ls=":", lw=1)
    ax_d.set_ylabel("fraction left in the sparsest layer")
    ax_p.set_ylabel("input-output paths (0 drawn at 0.5)")
    ax_d.legend(fontsize="x-small")


def plot_accuracy_vs_compression(ax, results: list[dict], *, chance: float | None = 0.1) -> None:
    """Test accuracy (%) vs compression (log x): mean over seeds with a min/max band, one curve per method.

    ``results`` holds dicts with ``method``, ``log10_compression``, ``seed``, ``test_accuracy`` (in [0, 1]).
    """
    for method in dict.fromkeys(r["method"] for r in results):
        cs = sorted({r["log10_compression"] for r in results if r["method"] == method})
        acc = [[100 * r["test_accuracy"] for r in results if r["method"] == method and r["log10_compression"] == c]
               for c in cs]
        mean = np.array([np.mean(a) for a in acc])
        lo, hi = np.array([min(a) for a in acc]), np.array([max(a) for a in acc])
        x = 10.0 ** np.array(cs)
        color = METHOD_COLORS.get(method, None)
        ax.plot(x, mean, "o-", color=color, label=method, ms=3)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    if chance is not None:
        ax.axhline(100 * chance, color="#444444", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio $\\rho$")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="x-small")


def find_critical(model: nn.Module, method: str, log10_grid: Iterable[float], *, data: Data = None,
                  iterations: int | None = None, seed: int = 0, scope: str = "global",
                  input_shape: tuple[int, ...] | None = None) -> float:
    """``log10 rho_cr`` of ``method`` on ``log10_grid`` by bisection (about log2(len(grid)) prunings).

    Assumes collapse is monotone in the compression (once collapsed, collapsed at every larger
    compression), which :func:`sweep` lets you check on a full grid. ``scope`` is passed to
    :func:`prune` (with ``"layer"`` every layer keeps at least one weight, so the nominal compression
    can exceed the achieved one near ``rho_max``). ``method`` may be
    ``"synflow-1shot"``; ``iterations`` defaults to 100 for SynFlow and 1 otherwise. Returns ``nan`` if
    the smallest compression already collapses, the largest if none does (a lower bound).
    """
    grid = sorted(float(c) for c in log10_grid)
    if not grid:
        raise ValueError("log10_grid must hold at least one log10 compression")
    base, n_iter = _method_spec(method)
    n_iter = n_iter or iterations or (100 if base == "synflow" else 1)

    def collapsed(i: int) -> bool:
        return is_collapsed(prune(model, base, 10.0 ** grid[i], iterations=n_iter, data=data, seed=seed,
                                  scope=scope, input_shape=input_shape))

    if collapsed(0):
        return math.nan
    lo, hi = 0, len(grid)          # grid[lo] is known intact; grid[hi] (if < len) known collapsed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if collapsed(mid):
            hi = mid
        else:
            lo = mid
    return grid[lo]


def plot_method_layers(ax, records: list[dict], method: str, *, rho_max: float | None = None,
                       layer_labels: list[str] | None = None) -> None:
    """Fraction of weights left in each layer (one line per layer, log-log) vs compression for one method
    of a :func:`sweep`; the first collapsed compression is shaded and ``rho_max`` marked."""
    rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
    if not rows:
        raise ValueError(f"no records for method {method!r}")
    rho = 10.0 ** np.array([r["log10_compression"] for r in rows])
    dens = np.array([r["density"] for r in rows], dtype=float)
    floor = 1e-5
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n_layers = dens.shape[1]
    for l in range(n_layers):
        label = layer_labels[l] if layer_labels else f"layer {l + 1}"
        ax.plot(rho, np.maximum(dens[:, l], floor), color=cmap(l / max(1, n_layers - 1)), lw=1.5, label=label)
    ax.plot(rho, 1.0 / rho, "k--", lw=1, label="$1/\\rho$")
    dead = [r["log10_compression"] for r in rows if r["collapsed"]]
    if dead:
        ax.axvspan(10.0 ** min(dead), rho[-1], color="#B00000", alpha=0.08, lw=0)
    if rho_max is not None:
        ax.axvline(rho_max, color="#444444", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, 1.5)
    ax.set_title(method, fontsize="small")
    ax.set_xlabel("compression ratio $\\rho$")
    ax.set_ylabel("fraction of weights left")
