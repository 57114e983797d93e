"""From scores to masks: selection, the iterative schedule of Algorithm 1, densities, training.

A mask follows the book's one convention (:func:`utils.masking.check_masks`):
``{"fc1.weight": 0/1 tensor of the weight's shape, ...}``.

Implementation choices that decide results (each is discussed in chapter ``03_synflow``):

* masked weights score exactly 0 and stay masked in later iterations;
* ties (e.g. many scores equal to 0) are broken by position, so that *exactly* ``round(N / rho)``
  weights are kept; a threshold rule ``score > tau`` would drop every tied weight at once
  (``ties="threshold"`` reproduces that rule of the reference implementation).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .. import default_progress
from ..data import Split
from ..masking import Masks, apply_masks_, check_masks
from ..models import prunable_layers
from .scores import Data, SynFlowScorer, as_batch, check_int, check_method, random_scores, score

__all__ = ["SCHEDULES", "select_masks", "prune", "layer_density", "global_density", "RESCALES",
           "train_pruned", "activation_scales", "top_direction_share", "rescale_to_dense_"]

SCHEDULES = ("exponential", "linear")


def check_compression(compression: float, n_weights: int) -> float:
    if isinstance(compression, bool) or not isinstance(compression, (int, float, np.integer, np.floating)):
        raise TypeError(f"compression must be a number in [1, {n_weights}], got {type(compression).__name__}")
    compression = float(compression)
    if not math.isfinite(compression) or compression < 1.0 or compression > n_weights:
        raise ValueError(f"compression must be in [1, {n_weights}] (1 = dense, {n_weights} = one weight left), "
                         f"got {compression!r}")
    return compression


def check_scope(scope: str) -> str:
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    return scope


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
    check_scope(scope)
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
        # the k-th largest live score tau; keep every score > tau and the first (by position) ties at tau
        keep[alive[_keep_top(s[alive], k)]] = 1.0
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

    For ``k = 1..iterations``: score the masked network with ``method`` (see
    :func:`utils.pruning.score`), then keep the top ``round(N / rho_k)`` weights,
    ``rho_k = compression**(k/iterations)`` (``schedule="exponential"``, the notes' ``rho^(-k/n)``
    percentile) or density ``1 - (1 - 1/compression) k/iterations`` (``"linear"``). ``iterations=1`` is
    one-shot pruning. ``scope="global"`` ranks all layers together (exactly ``round(N/compression)``
    weights kept); ``"layer"`` prunes every layer to the same density. Returns ``{param name: float 0/1
    mask of the weight's shape}`` (the weight's dtype); the model is not changed (apply the masks with
    :func:`utils.masking.apply_masks_`). ``ties`` is passed to :func:`select_masks` (``"threshold"``
    reproduces the reference implementation's rule, which over-prunes on ties). SynFlow's all-ones
    input has shape ``input_shape``, else the shape of one example of ``data``, else the
    ``in_features`` of a first linear layer.

    >>> from utils.models import mlp
    >>> masks = prune(mlp([64, 32, 10]), "synflow", compression=10, iterations=20)
    >>> round(global_density(masks), 3)
    0.1
    """
    check_method(method)
    layers = prunable_layers(model)
    params = dict(model.named_parameters())
    names = [f"{n}.weight" for n, _ in layers]
    n_weights = sum(params[n].numel() for n in names)
    compression = check_compression(compression, n_weights)
    iterations = check_int(iterations, "iterations")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    check_scope(scope)
    if method in ("snip", "grasp"):
        as_batch(data, method)
    if method == "synflow" and input_shape is None and data is not None:
        input_shape = tuple(as_batch(data, method)[0].shape[1:])     # one example's shape, from the data
    generator = torch.Generator().manual_seed(check_int(seed, "seed", 0))
    densities = [_density(compression, k, iterations, schedule) for k in range(1, iterations + 1)]
    if default_progress() if progress is None else progress:
        from tqdm.auto import tqdm
        densities = tqdm(densities, desc=f"{method} pruning", leave=False)
    scorer = SynFlowScorer(model, input_shape) if method == "synflow" else None
    if scorer is not None and ties == "exact" and all(p.device.type == "cpu" and p.is_contiguous()
                                                      for _, p in scorer.weights):
        masks = _prune_synflow(scorer, densities, scope)      # the same masks as the loop below, faster
        return {n: masks[n].to(params[n].dtype) for n in names}
    masks: Masks | None = None
    for density in densities:
        if scorer is not None:
            s = scorer(masks)
        elif method == "random":    # one generator for the whole run: fresh scores at every iteration
            s = random_scores(model, generator=generator)
        else:
            s = score(model, method, data, masks, loss_fn=loss_fn, input_shape=input_shape)
        masks = select_masks(s, density, masks=masks, scope=scope, ties=ties)
    return {n: masks[n].to(params[n].dtype) for n in names}


def _density(compression: float, k: int, iterations: int, schedule: str) -> float:
    """The density after step ``k`` of ``iterations``: ``rho^(-k/n)`` or linear in ``k``."""
    if schedule == "exponential":
        return compression ** (-k / iterations)
    return 1.0 - (1.0 - 1.0 / compression) * k / iterations


def _top_k(a: np.ndarray, k: int) -> np.ndarray:
    """Boolean over the scores ``a`` (1-D float64): the ``k`` largest, ties at the ``k``-th largest
    value broken by position: keep every score ``> tau`` and the first ties ``== tau``.
    numpy's introselect finds ``tau`` several times faster than ``torch.kthvalue``."""
    n = a.size
    if k >= n:
        return np.ones(n, dtype=bool)
    tau = np.partition(a, n - k)[n - k]
    keep = a > tau
    need = k - int(np.count_nonzero(keep))
    if need > 0:
        keep[np.flatnonzero(a == tau)[:need]] = True
    return keep


def _keep_top(a: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_top_k` for a tensor of live scores (on any device); a bool tensor on that device."""
    return torch.from_numpy(_top_k(a.detach().cpu().numpy(), k)).to(a.device)


@torch.no_grad()
def _prune_synflow(scorer: SynFlowScorer, densities: Iterable[float], scope: str) -> Masks:
    """Algorithm 1 with SynFlow scores: the same masks as scoring with ``scorer`` and selecting with
    :func:`select_masks` at every step (a test checks it), in a fraction of the time.

    Needs the weights of the scorer's copy on the CPU and contiguous (:func:`prune` checks). The
    live weights of each layer are kept as an index array; a pruned weight is set to 0 in the
    linearised copy in place (``|theta| * 0``, as the masked copy has), and only the live weights are
    gathered, scored and ranked. After a few steps most weights are dead, and it was the selection
    over all weights, not the forward-backward pass, that took most of the time. The gathering and
    ranking run in numpy on views of the same memory (CPU only; other devices take the general path).
    """
    work, weights = scorer.work, scorer.weights
    params = [p for _, p in weights]
    values = [p.detach().numpy().reshape(-1) for p in params]      # views: writing 0 prunes the copy
    alive = [np.arange(v.size) for v in values]
    groups = [list(range(len(values)))] if scope == "global" else [[l] for l in range(len(values))]
    for density in densities:
        with torch.enable_grad():
            grads = torch.autograd.grad(work(scorer.x).sum(), params)
        scores = [g.numpy().reshape(-1)[live] * v[live] for g, v, live in zip(grads, values, alive)]
        if any(np.isnan(s.sum()) for s in scores):
            raise ValueError("SynFlow scores contain NaN")
        for group in groups:
            # the densities never increase, so k never exceeds the live count (no weight comes back)
            k = max(1, int(round(density * sum(values[l].size for l in group))))
            counts = [alive[l].size for l in group]
            keep = np.split(_top_k(np.concatenate([scores[l] for l in group]), k), np.cumsum(counts)[:-1])
            for l, kp in zip(group, keep):
                values[l][alive[l][~kp]] = 0.0
                alive[l] = alive[l][kp]
    masks = {}
    for (name, p), live in zip(weights, alive):
        m = torch.zeros(p.numel(), dtype=torch.float64)
        m[torch.from_numpy(live)] = 1.0
        masks[name] = m.view_as(p)
    return masks


def layer_density(masks: Masks) -> dict[str, float]:
    """Fraction of weights kept in each layer: ``{param name: kept / total}``, in [0, 1].

    >>> layer_density({"fc1.weight": torch.tensor([[1., 0.], [0., 0.]])})
    {'fc1.weight': 0.25}
    """
    return {n: float((m != 0).sum()) / m.numel() for n, m in check_masks(masks).items()}


def global_density(masks: Masks) -> float:
    """Fraction of all prunable weights kept: ``1 / compression``.

    >>> global_density({"a.weight": torch.tensor([1., 0.]), "b.weight": torch.tensor([0., 0.])})
    0.25
    """
    check_masks(masks)
    return sum(float((m != 0).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


RESCALES = (False, "density", "data")


def train_pruned(model: nn.Module, masks: Masks, data: Split, *, rescale: bool | str = False,
                 **train_kwargs):
    """Train ``model`` **in place** with ``masks`` applied after every step (so pruned weights stay 0).

    ``masks`` follows :func:`utils.masking.check_masks`. ``rescale`` chooses a trainability control
    applied to the masked initial weights before training:

    - ``False``: none;
    - ``"density"``: the kept weights of each layer are multiplied by ``1 / sqrt(d)``, ``d`` the
      layer's density (the masking chapter's control, eq-masking-variance: it restores the variance
      of each pre-activation when the mask is independent of the weights); an empty layer stays 0;
    - ``"data"``: :func:`rescale_to_dense_` on the first 256 training inputs, which restores the dense
      network's pre-activation scale at every layer whatever the mask.

    Other keyword arguments go to :func:`utils.training.train`; returns its ``History``.
    """
    from ..training import train

    if isinstance(rescale, bool) and rescale or rescale not in RESCALES:
        raise ValueError(f"rescale must be one of {RESCALES}, got {rescale!r}")
    if rescale == "data":   # before masking: it measures the dense scale first
        rescale_to_dense_(model, masks, data.x_train[:256])
    apply_masks_(model, masks)
    params = dict(model.named_parameters())
    if rescale == "density":
        with torch.no_grad():
            for n, m in masks.items():
                d = float((m != 0).float().mean())
                if d > 0:
                    params[n].mul_(1.0 / math.sqrt(d))
    pairs = [(params[n], m.to(params[n])) for n, m in masks.items()]

    def remask(_model, _step):
        with torch.no_grad():
            for p, m in pairs:
                p.mul_(m)

    return train(model, data, after_step=remask, **train_kwargs)


def _layer_outputs(model: nn.Module, masks: Masks, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every prunable layer of a masked copy of ``model`` on ``x``, in module order."""
    import copy

    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) < 2:
        raise ValueError(f"x must be a batch of at least 2 inputs (a tensor with ndim >= 2), got "
                         f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}")
    net = apply_masks_(copy.deepcopy(model), check_masks(masks))
    outputs = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
             for _, layer in prunable_layers(net)]
    try:
        with torch.no_grad():
            net(x.to(next(net.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
    return outputs


def activation_scales(model: nn.Module, masks: Masks, x: torch.Tensor) -> list[float]:
    """The standard deviation of each prunable layer's output (its pre-activations) on the inputs
    ``x``, with ``masks`` applied to a copy of ``model`` (the model itself is not changed).

    The masking chapter's variance argument (eq-masking-variance) predicts the dense network's
    scale times ``sqrt(d)`` per layer for a mask independent of the weights; a mask that selects
    weights by their values can move it far from that. One float per prunable layer, in module order.
    """
    return [float(out.std()) for out in _layer_outputs(model, masks, x)]


def top_direction_share(model: nn.Module, masks: Masks, x: torch.Tensor) -> list[float]:
    """For each prunable layer of the masked ``model``: the share of the variance of its outputs on
    ``x`` that lies along their first principal direction, ``s_1^2 / sum_i s_i^2`` with ``s_i`` the
    singular values of the centred ``(batch, units)`` output matrix (channels and positions flattened
    for a convolution). Near 1: the layer sends every input along nearly the same direction."""
    shares = []
    for out in _layer_outputs(model, masks, x):
        centred = out.flatten(1) - out.flatten(1).mean(0)
        sv2 = torch.linalg.svdvals(centred) ** 2
        shares.append(float(sv2[0] / sv2.sum()) if sv2.sum() > 0 else float("nan"))
    return shares


def rescale_to_dense_(model: nn.Module, masks: Masks, x: torch.Tensor) -> list[float]:
    """Give the masked ``model`` the dense model's pre-activation scale on ``x``, **in place**.

    Layer by layer in forward order, the masked layer's weight and bias are multiplied by
    ``s_dense / s_masked``, the ratios of the standard deviations of that layer's output on ``x``
    (:func:`activation_scales`) in the unmasked ``model`` and in the masked one with the upstream
    layers already rescaled. Since ``z = W h + b`` scales exactly with ``(W, b)``, every layer then
    matches the dense scale. This is the data-dependent version of the ``1 / sqrt(d)`` control
    (eq-masking-variance), with no assumption about how the mask was chosen; the idea of fixing the
    scale of each layer on a batch is LSUV (Mishkin & Matas 2016). Returns the factors. A layer
    whose masked output is constant is left as it is (factor 1).
    """
    dense = activation_scales(model, {n: torch.ones_like(m) for n, m in check_masks(masks).items()}, x)
    apply_masks_(model, masks)
    layers = [layer for _, layer in prunable_layers(model)]
    ones = {n: torch.ones_like(m) for n, m in masks.items()}
    factors = []
    for i, layer in enumerate(layers):
        masked = activation_scales(model, ones, x)[i]
        factor = dense[i] / masked if masked > 0 else 1.0
        with torch.no_grad():
            layer.weight.mul_(factor)
            if layer.bias is not None:
                layer.bias.mul_(factor)
        factors.append(factor)
    return factors
