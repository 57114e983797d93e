"""Masking: where the mask goes, and what it does to the gradient (chapter ``01_masking``).

The notes (``000``, Feb 2 and Feb 9, 2022) start from the masked linear layer

    z = (M ⊙ W) h + b                                   (notes eq 1, book eq-masking-forward)

and derive ``dL/dW_ij = M_ij (dL/dz_i) h_j`` (notes eq 2, eq-masking-entry) and
``dL/dW = M ⊙ ((dL/dz) h^T)`` (notes eq 3, eq-masking-vector). For a batch with rows ``h_n`` (matrix
``H``, shape ``(B, in)``) and ``delta_n = dL/dz_n`` (matrix ``Delta``, shape ``(B, out)``) this is
``dL/dW = M ⊙ (Delta^T H)`` (eq-masking-batched) and ``dL/db = Delta^T 1`` (eq-masking-bias).

Three ways to use a mask ``M`` (``mode`` / ``scheme``):

* ``"weight"``: forward with ``M ⊙ W``; the gradient is eq 3, zero where ``M = 0``.
* ``"gradient"``: forward with the dense ``W``; only the update is masked, so pruned weights are
  frozen at their initial values but still take part in the forward pass.
* ``"forward_only"``: forward with ``M ⊙ W`` but ``W`` receives the *unmasked* gradient (a
  straight-through estimator {cite}`bengio2013estimating`), via :func:`straight_through`.

The book's one mask convention lives here, since masks start in this chapter: a set of masks is a
``dict`` keyed by parameter name, ``{"fc1.weight": M1, ...}``, each a 0/1 tensor of the parameter's
shape; :func:`check_masks` is the one validator, :func:`apply_masks_` multiplies masks into the weights
once (in place) and :func:`wrap_masked` makes them part of the forward pass so that they stay applied
while training (in place). Every function of ``utils`` that takes masks accepts exactly this.

The module also holds the masks used by the chapter's experiment (:func:`random_mask`,
:func:`magnitude_mask`, :func:`layer_masks`), the plain-``nn.Linear`` hook implementation for
:func:`utils.training.train` (:func:`masking_hooks`), the density sweep (:func:`density_sweep`) and the
chapter's plotting functions (:func:`plot_accuracy_vs_density`, :func:`plot_masking_explorer`).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import default_progress
from .data import Split
from .models import PRUNABLE_TYPES, linear_layers, mlp
from .plotting import PALETTE, heatmap
from .training import evaluate, train

__all__ = [
    "MODES",
    "straight_through",
    "gradient_only_mask",
    "masked_weight_grad",
    "masked_bias_grad",
    "MaskedLinear",
    "Masks",
    "check_mask",
    "check_masks",
    "apply_masks_",
    "wrap_masked",
    "random_mask",
    "magnitude_mask",
    "layer_masks",
    "masking_hooks",
    "sparsified",
    "count_weights",
    "SWEEP_SCHEMES",
    "density_sweep",
    "summarize_sweep",
    "mean_accuracy",
    "sweep_table",
    "sweep_differences",
    "differences_table",
    "plot_accuracy_vs_density",
    "train_masked",
    "training_curves",
    "plot_training_curves",
    "explorer_run",
    "plot_masking_explorer",
]

MODES = ("weight", "gradient", "forward_only")

#: A set of masks: ``{parameter name: 0/1 tensor of the parameter's shape}``, e.g. ``{"fc1.weight": M1}``.
Masks = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _check_mode(mode: str, name: str = "mode") -> str:
    if mode not in MODES:
        raise ValueError(f"{name} must be one of {MODES}, got {mode!r}")
    return mode


def _check_density(density: float) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be a number in (0, 1], got {density!r}")
    return float(density)


def check_mask(mask: torch.Tensor, shape: Iterable[int] | None, name: str = "mask") -> torch.Tensor:
    """Validate one 0/1 mask of the given ``shape``; raise ``ValueError``/``TypeError`` naming ``name``.

    Returns the mask unchanged. Accepts bool, integer or floating tensors whose entries are all 0 or 1;
    ``shape=None`` skips the shape check. :func:`check_masks` applies it to every entry of a mask dict.

    >>> check_mask(torch.tensor([[1., 0.]]), (1, 2)).shape
    torch.Size([1, 2])
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    shape = None if shape is None else tuple(shape)
    if shape is not None and tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (the weight's shape), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must be binary: every entry 0 or 1")
    return mask


# ----------------------------------------------------------------------------------------------
# the mask convention: {parameter name: 0/1 tensor of the parameter's shape}
# ----------------------------------------------------------------------------------------------

def check_masks(masks: Masks, model: nn.Module | None = None, *,
                types: tuple[type, ...] = PRUNABLE_TYPES) -> Masks:
    """The one mask validator of the book; returns ``masks`` unchanged.

    A mask is a ``dict`` keyed by parameter name (``"fc1.weight"``), each value a tensor of the
    parameter's shape holding only 0 and 1 (bool, integer or float). With a ``model``, every key must
    be the weight of one of its layers of ``types`` (by default the prunable layers,
    :func:`utils.models.prunable_names`) and every shape must match. ``TypeError``/``ValueError``
    otherwise, naming the bad key or shape.

    >>> from utils.models import mlp
    >>> list(check_masks({"fc2.weight": torch.ones(2, 3)}, mlp([4, 3, 2])))
    ['fc2.weight']
    >>> check_masks({"fc2": torch.ones(2, 3)}, mlp([4, 3, 2]))
    Traceback (most recent call last):
    ...
    ValueError: masks has key 'fc2', which is not a prunable weight of the model; masks are keyed by parameter name, one of ['fc1.weight', 'fc2.weight']
    """
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{parameter name: 0/1 tensor}}, got {type(masks).__name__}")
    if not masks:
        raise ValueError("masks must be a non-empty dict {parameter name: 0/1 tensor}, e.g. {'fc1.weight': ...}")
    shapes = None
    if model is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        params = dict(model.named_parameters())
        names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, types)]
        shapes = {n: tuple(params[n].shape) for n in names if n in params}
        if not shapes:
            kinds = ", ".join(t.__name__ for t in types)
            raise ValueError(f"model has no prunable layer (no {kinds} with a weight inside it)")
    for key, mask in masks.items():
        if not isinstance(key, str):
            raise TypeError(f"masks keys must be parameter names (str), got {key!r}")
        if shapes is not None and key not in shapes:
            raise ValueError(f"masks has key {key!r}, which is not a prunable weight of the model; masks are "
                             f"keyed by parameter name, one of {list(shapes)}")
        check_mask(mask, shapes[key] if shapes is not None else None, name=f"masks[{key!r}]")
    return masks


def apply_masks_(model: nn.Module, masks: Masks) -> nn.Module:
    """Multiply the masks into the weights of ``model`` once, **in place** (``W <- M ⊙ W``); returns it.

    ``masks`` follows :func:`check_masks`. Nothing keeps the weights masked afterwards: training
    updates them again (use :func:`wrap_masked`, :func:`masking_hooks` or
    :func:`utils.pruning.train_pruned` for that).

    >>> from utils.models import mlp
    >>> net = apply_masks_(mlp([2, 1]), {"fc1.weight": torch.tensor([[1, 0]])})
    >>> float(net.fc1.weight.detach()[0, 1])
    0.0
    """
    check_masks(masks, model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name]))
    return model


# ----------------------------------------------------------------------------------------------
# the identities
# ----------------------------------------------------------------------------------------------

def straight_through(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The one-line trick: forward value ``M ⊙ W``, Jacobian with respect to ``W`` the identity.

    ``W + stopgrad(M ⊙ W - W)`` (book eq-masking-ste). Used by ``mode="forward_only"``: the loss sees
    the sparse weight, ``W`` receives the unmasked gradient ``Delta^T H``. Shapes: ``weight`` and
    ``mask`` both ``(out, in)``; returns ``(out, in)``.

    >>> w = torch.tensor([2.0, 3.0], requires_grad=True); m = torch.tensor([1.0, 0.0])
    >>> v = straight_through(w, m); v.detach().tolist()
    [2.0, 0.0]
    >>> v.sum().backward(); w.grad.tolist()
    [1.0, 1.0]
    """
    return weight + (mask * weight - weight).detach()


def gradient_only_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mirror trick: forward value ``W``, Jacobian with respect to ``W`` equal to ``diag(M)``.

    ``M ⊙ W + stopgrad((1 - M) ⊙ W)`` (book eq-masking-gradtrick). Used by ``mode="gradient"``:
    the loss sees the dense weight, ``W`` receives ``M ⊙ (Delta^T H)``.

    >>> w = torch.tensor([2.0, 3.0], requires_grad=True); m = torch.tensor([1.0, 0.0])
    >>> v = gradient_only_mask(w, m); v.detach().tolist()
    [2.0, 3.0]
    >>> v.sum().backward(); w.grad.tolist()
    [1.0, 0.0]
    """
    return mask * weight + ((1 - mask) * weight).detach()


def masked_weight_grad(mask: torch.Tensor, delta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Notes eq 3 for a batch (book eq-masking-batched): ``M ⊙ (Delta^T H)``.

    ``mask`` has shape ``(out, in)``, ``delta = dL/dZ`` shape ``(B, out)`` (row ``n`` is ``dL/dz_n``),
    ``h`` shape ``(B, in)`` (row ``n`` is the layer input of example ``n``). Returns ``(out, in)``.
    With an all-ones mask it is the ordinary linear-layer gradient, and with ``B = 1`` it is the
    outer product ``M ⊙ (delta h^T)`` of notes eq 3.

    >>> masked_weight_grad(torch.tensor([[1., 0.]]), torch.tensor([[2.]]), torch.tensor([[3., 4.]]))
    tensor([[6., 0.]])
    """
    for name, value in (("mask", mask), ("delta", delta), ("h", h)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(value.shape)}")
    if delta.shape[0] != h.shape[0]:
        raise ValueError(f"delta and h must have the same batch size B, got {delta.shape[0]} and {h.shape[0]}")
    check_mask(mask, (delta.shape[1], h.shape[1]))
    return mask.to(delta.dtype) * (delta.T @ h)


def masked_bias_grad(delta: torch.Tensor) -> torch.Tensor:
    """The bias gradient ``dL/db = Delta^T 1`` (book eq-masking-bias): the column sums of ``delta`` ``(B, out)``.

    No mask appears: the weight mask does not touch the bias. Returns shape ``(out,)``.

    >>> masked_bias_grad(torch.tensor([[1., 2.], [3., 4.]]))
    tensor([4., 6.])
    """
    if not isinstance(delta, torch.Tensor):
        raise TypeError(f"delta must be a torch.Tensor, got {type(delta).__name__}")
    if delta.ndim != 2:
        raise ValueError(f"delta must be 2-D (B, out), got shape {tuple(delta.shape)}")
    return delta.sum(dim=0)


# ----------------------------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------------------------

class MaskedLinear(nn.Linear):
    """A linear layer with a 0/1 ``mask`` buffer used in one of three ways (``mode``).

    * ``"weight"``: ``z = (M ⊙ W) h + b``; ``dL/dW = M ⊙ (Delta^T H)`` (notes eqs 1-3).
    * ``"gradient"``: ``z = W h + b``; ``dL/dW = M ⊙ (Delta^T H)`` (only the update is masked).
    * ``"forward_only"``: ``z = (M ⊙ W) h + b``; ``dL/dW = Delta^T H`` (straight-through).

    The bias is never masked. ``weight`` has shape ``(out_features, in_features)``, like
    ``nn.Linear``; so does ``mask`` (all ones until :meth:`set_mask`). Inputs ``(B, in)`` give
    outputs ``(B, out)``.

    >>> layer = MaskedLinear(3, 2, mode="weight")
    >>> layer.set_mask(torch.tensor([[1, 0, 0], [0, 1, 1]]))
    >>> bool((layer.effective_weight() == layer.weight * layer.mask).all())
    True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, mode: str = "weight",
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.mode = _check_mode(mode)
        self.register_buffer("mask", torch.ones_like(self.weight, requires_grad=False))

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str = "weight", mask: torch.Tensor | None = None) -> "MaskedLinear":
        """A ``MaskedLinear`` with a copy of ``linear``'s weight and bias (same dtype and device)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, mode=mode,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        if mask is not None:
            layer.set_mask(mask)
        return layer

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask (in place). ``ValueError`` for a wrong shape or an entry other than 0/1."""
        check_mask(mask, self.weight.shape)
        with torch.no_grad():
            self.mask.copy_(mask.to(self.mask.dtype))

    def set_mode(self, mode: str) -> None:
        self.mode = _check_mode(mode)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses: ``M ⊙ W`` (weight, forward_only) or ``W`` (gradient)."""
        if self.mode == "weight":
            return self.mask * self.weight
        if self.mode == "gradient":
            return gradient_only_mask(self.weight, self.mask)
        return straight_through(self.weight, self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        density = float(self.mask.mean()) if self.mask.numel() else 1.0
        return f"{super().extra_repr()}, mode={self.mode!r}, density={density:.3g}"


def wrap_masked(model: nn.Module, masks: Masks, mode: str = "weight") -> nn.Module:
    """Make masks part of the forward/backward pass, **in place**, so they stay applied while training.

    Every ``nn.Linear`` whose weight ``masks`` names (``"fc1.weight"``, the convention of
    :func:`check_masks`) is replaced by a :class:`MaskedLinear` holding a copy of its parameters, the
    mask and ``mode``; a layer that already is a ``MaskedLinear`` just gets the new mask and mode.
    Linear layers not named in ``masks`` stay dense. Returns ``model``. Replacing a layer creates new
    parameter objects, so build the optimizer after calling this. (To multiply masks into the weights
    once, use :func:`apply_masks_`.)

    >>> from utils.models import mlp
    >>> net = wrap_masked(mlp([4, 3, 2]), {"fc1.weight": torch.ones(3, 4)}, mode="gradient")
    >>> type(net.fc1).__name__, net.fc1.mode, type(net.fc2).__name__
    ('MaskedLinear', 'gradient', 'Linear')
    """
    _check_mode(mode)
    masks = check_masks(masks, model, types=(nn.Linear,))
    layers = dict(linear_layers(model))
    for key, mask in masks.items():
        name = key.removesuffix(".weight")
        layer = layers[name]
        if isinstance(layer, MaskedLinear):
            layer.set_mask(mask)
            layer.set_mode(mode)
            continue
        parent = model
        *path, leaf = name.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, leaf, MaskedLinear.from_linear(layer, mode=mode, mask=mask))
    return model


# The name this function had before masks were keyed by parameter name (kept for branches written
# before issue 13; not part of the public API).
apply_masks = wrap_masked


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------

def _n_keep(numel: int, density: float) -> int:
    return max(1, int(round(density * numel)))


def random_mask(shape: tuple[int, ...], density: float, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 0/1 mask of ``shape`` with exactly ``max(1, round(density * numel))`` ones at uniformly random places.

    >>> int(random_mask((10, 10), 0.2, torch.Generator().manual_seed(0)).sum())
    20
    """
    density = _check_density(density)
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    if numel < 1:
        raise ValueError(f"shape must have at least one entry, got {shape}")
    keep = torch.randperm(numel, generator=generator)[:_n_keep(numel, density)]
    mask = torch.zeros(numel, dtype=dtype)
    mask[keep] = 1
    return mask.reshape(shape)


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """A 0/1 mask keeping the ``max(1, round(density * numel))`` entries of largest ``|weight|`` {cite}`han2015learning`.

    Ties are broken by position (``torch.topk`` order). Same shape and dtype as ``weight``.

    >>> magnitude_mask(torch.tensor([[0.1, -3.0], [2.0, 0.5]]), 0.5)
    tensor([[0., 1.],
            [1., 0.]])
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    density = _check_density(density)
    flat = weight.detach().abs().flatten()
    keep = torch.topk(flat, _n_keep(flat.numel(), density)).indices
    mask = torch.zeros_like(flat)
    mask[keep] = 1
    return mask.reshape(weight.shape)


def layer_masks(model: nn.Module, density: float, kind: str = "random", seed: int = 0,
                reference: nn.Module | None = None) -> Masks:
    """Layer-wise masks ``{"<layer>.weight": (out, in) 0/1 tensor}`` of ``density`` for every linear layer.

    ``kind="random"``: uniformly random positions (generator seeded with ``seed``).
    ``kind="magnitude"``: the largest ``|W|`` of ``reference`` (a model with the same layer names,
    e.g. the trained dense network; defaults to ``model`` itself). Each layer keeps the same fraction,
    so no layer is removed entirely.
    """
    density = _check_density(density)
    if kind not in ("random", "magnitude"):
        raise ValueError(f"kind must be 'random' or 'magnitude', got {kind!r}")
    generator = torch.Generator().manual_seed(seed)
    source = dict(linear_layers(reference if reference is not None else model))
    masks = {}
    for name, layer in linear_layers(model):
        w = layer.weight
        if kind == "random":
            masks[f"{name}.weight"] = random_mask(tuple(w.shape), density, generator, dtype=w.dtype).to(w.device)
        else:
            if name not in source or source[name].weight.shape != w.shape:
                raise ValueError(f"reference must have a linear layer {name!r} of shape {tuple(w.shape)}")
            masks[f"{name}.weight"] = magnitude_mask(source[name].weight, density)
    return masks


# ----------------------------------------------------------------------------------------------
# the hook implementation for utils.training.train (plain nn.Linear layers)
# ----------------------------------------------------------------------------------------------

def masking_hooks(masks: Masks, scheme: str
                  ) -> tuple[Callable[[nn.Module, int], None], Callable[[nn.Module, int], None] | None]:
    """``(after_backward, after_step)`` hooks for :func:`utils.training.train` on a plain ``nn.Linear`` model.

    ``scheme="weight"``: the caller zeroes ``W`` where ``M = 0`` before training; ``after_backward``
    masks the gradient (eq 3) and ``after_step`` re-applies ``W <- M ⊙ W`` (a no-op for SGD without
    weight decay, a safeguard otherwise). ``scheme="gradient"``: ``after_backward`` masks the
    gradient, nothing else. ``"forward_only"`` changes the forward pass, which a hook after
    ``backward`` cannot do: use :func:`wrap_masked` with ``mode="forward_only"``. ``masks`` follows
    :func:`check_masks`; it is checked against the model at the first call of a hook.
    """
    if scheme == "forward_only":
        raise ValueError("scheme 'forward_only' changes the forward pass; hooks cannot do that, use "
                         "wrap_masked(model, masks, mode='forward_only')")
    if scheme not in ("weight", "gradient"):
        raise ValueError(f"scheme must be 'weight' or 'gradient' for hooks, got {scheme!r}")
    check_masks(masks)
    checked: set[int] = set()

    def weights(model: nn.Module) -> dict[str, torch.Tensor]:
        if id(model) not in checked:
            check_masks(masks, model, types=(nn.Linear,))
            checked.add(id(model))
        return dict(model.named_parameters())

    def after_backward(model: nn.Module, step: int) -> None:
        params = weights(model)
        for name, mask in masks.items():
            grad = params[name].grad
            if grad is not None:
                grad.mul_(mask)

    def after_step(model: nn.Module, step: int) -> None:
        params = weights(model)
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)

    return after_backward, (after_step if scheme == "weight" else None)


@torch.no_grad()
def sparsified(model: nn.Module, masks: Masks) -> nn.Module:
    """A deep copy of ``model`` with ``W <- M ⊙ W`` in every masked layer: the network *as a sparse net*.

    This is how a gradient-masked network would have to be deployed to get the parameter and FLOP
    savings of sparsity. ``masks`` follows :func:`check_masks`. The original ``model`` is not changed.
    """
    copy_ = apply_masks_(copy.deepcopy(model), masks)
    layers = dict(linear_layers(copy_))
    for name in masks:
        layer = layers.get(name.removesuffix(".weight"))
        if isinstance(layer, MaskedLinear):
            layer.set_mode("weight")
    return copy_


def count_weights(model: nn.Module, effective: bool = True) -> dict[str, int]:
    """Weights and biases a network needs at inference: ``{"weights", "biases", "total"}``.

    With ``effective=True`` a weight counts only if the forward pass can see a non-zero value:
    for a :class:`MaskedLinear` in ``weight``/``forward_only`` mode that is ``M ⊙ W != 0``; for a plain
    layer or ``gradient`` mode, ``W != 0``.
    """
    weights = biases = 0
    for _, layer in linear_layers(model):
        w = layer.effective_weight() if isinstance(layer, MaskedLinear) else layer.weight
        weights += int((w.detach() != 0).sum()) if effective else w.numel()
        if layer.bias is not None:
            biases += layer.bias.numel()
    return {"weights": weights, "biases": biases, "total": weights + biases}


# ----------------------------------------------------------------------------------------------
# the experiment: does gradient masking beat weight masking? (Feb 9)
# ----------------------------------------------------------------------------------------------

SWEEP_SCHEMES = ("weight", "weight_rescaled", "gradient")


def density_sweep(data: Split, *, sizes: list[int], densities: list[float], seeds: list[int],
                  kinds: tuple[str, ...] = ("random", "magnitude"), schemes: tuple[str, ...] = SWEEP_SCHEMES,
                  steps: int = 300, lr: float = 0.05, batch_size: int = 64, momentum: float = 0.9,
                  threads: int | None = 1, progress: bool | None = None) -> list[dict]:
    """Train one MLP per (seed, kind, scheme, density) and return one record per run.

    For each seed: build ``mlp(sizes)`` (initialisation theta_0 from the seed), train it dense, and
    take its test accuracy as the density-1 point of every curve. Then for each density < 1 and
    each mask ``kind`` (``"random"``, or ``"magnitude"`` = the largest |W| of the *trained dense*
    network, per layer), restart from the same theta_0 and train under each ``scheme`` with
    :func:`masking_hooks` and :func:`utils.training.train`. ``"weight_rescaled"`` is weight masking
    whose kept initial weights are multiplied by ``1 / sqrt(density)`` (eq-masking-variance), so the
    sparse network starts with the dense network's activation scale. Each record holds ``seed, kind, scheme,
    density, test_accuracy`` (as trained), ``sparse_test_accuracy`` (after ``W <- M ⊙ W``, i.e. as a
    sparse network) and ``weights`` (non-zero weights at inference, as trained).

    ``threads`` sets ``torch.set_num_threads`` for the sweep (restored afterwards; ``None`` leaves it
    alone). One thread is the default because these networks are tiny: on a shared 2-core machine,
    two OpenMP threads waiting for each other made a 300-step run many times slower.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _density_sweep(data, sizes=sizes, densities=densities, seeds=seeds, kinds=kinds, schemes=schemes,
                              steps=steps, lr=lr, batch_size=batch_size, momentum=momentum, progress=progress)
    finally:
        torch.set_num_threads(old_threads)


def _density_sweep(data, *, sizes, densities, seeds, kinds, schemes, steps, lr, batch_size, momentum, progress):
    for d in densities:
        _check_density(d)
    for s in schemes:
        if s not in SWEEP_SCHEMES:
            raise ValueError(f"schemes must be drawn from {SWEEP_SCHEMES}, got {s!r}")
    progress = default_progress() if progress is None else progress
    n_masked = sum(1 for d in densities if d < 1.0)
    total = len(seeds) * (1 + n_masked * len(kinds) * len(schemes))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc="density sweep", leave=False)
    records = []
    x_test, y_test = data.x_test, data.y_test
    for seed in seeds:
        torch.manual_seed(seed)
        dense = mlp(sizes)
        init_state = copy.deepcopy(dense.state_dict())
        train(dense, data, steps=steps, lr=lr, batch_size=batch_size, momentum=momentum, eval_every=steps,
              seed=seed, progress=False)
        dense_acc = evaluate(dense, x_test, y_test)["accuracy"]
        n_dense = count_weights(dense)["weights"]
        for kind in kinds:
            for scheme in schemes:
                records.append(dict(seed=seed, kind=kind, scheme=scheme, density=1.0, test_accuracy=dense_acc,
                                    sparse_test_accuracy=dense_acc, weights=n_dense))
        if bar is not None:
            bar.update(1)
        for density in densities:
            if density >= 1.0:
                continue
            for kind in kinds:
                masks = layer_masks(dense, density, kind=kind, seed=seed + 10_000, reference=dense)
                for scheme in schemes:
                    model, _ = train_masked(data, sizes=sizes, init_state=init_state, masks=masks,
                                            scheme=scheme, density=density, steps=steps, lr=lr,
                                            batch_size=batch_size, momentum=momentum, seed=seed)
                    acc = evaluate(model, x_test, y_test)["accuracy"]
                    sparse_acc = evaluate(sparsified(model, masks), x_test, y_test)["accuracy"]
                    records.append(dict(seed=seed, kind=kind, scheme=scheme, density=float(density),
                                        test_accuracy=acc, sparse_test_accuracy=sparse_acc,
                                        weights=count_weights(model)["weights"]))
                    if bar is not None:
                        bar.update(1)
    if bar is not None:
        bar.close()
    return records


def train_masked(data: Split, *, sizes: list[int], init_state: dict, masks: Masks, scheme: str,
                 density: float, steps: int, lr: float, batch_size: int = 64, momentum: float = 0.9,
                 seed: int = 0, eval_every: int | None = None):
    """Train ``mlp(sizes)`` from ``init_state`` under one sweep ``scheme``; return ``(model, history)``.

    ``"weight"`` zeroes the pruned initial weights, ``"weight_rescaled"`` also multiplies the kept
    ones by ``1 / sqrt(density)`` (eq-masking-variance), ``"gradient"`` leaves them alone; the
    hooks of :func:`masking_hooks` then keep the masks applied while :func:`utils.training.train`
    runs. ``eval_every=None`` evaluates only after the last step.
    """
    if scheme not in SWEEP_SCHEMES:
        raise ValueError(f"scheme must be one of {SWEEP_SCHEMES}, got {scheme!r}")
    density = _check_density(density)
    model = mlp(sizes)
    model.load_state_dict(init_state)
    if scheme in ("weight", "weight_rescaled"):
        scale = 1.0 / math.sqrt(density) if scheme == "weight_rescaled" else 1.0
        with torch.no_grad():
            for name, layer in linear_layers(model):
                layer.weight.mul_(masks[f"{name}.weight"] * scale)
    hooks = masking_hooks(masks, "gradient" if scheme == "gradient" else "weight")
    history = train(model, data, steps=steps, lr=lr, batch_size=batch_size, momentum=momentum,
                    eval_every=eval_every or steps, seed=seed, after_backward=hooks[0],
                    after_step=hooks[1], progress=False)
    return model, history


def training_curves(data: Split, *, sizes: list[int], density: float, seeds: list[int],
                    kind: str = "random", steps: int = 1000, eval_every: int = 50,
                    lr: float = 0.05, batch_size: int = 64, momentum: float = 0.9,
                    threads: int | None = 1) -> dict:
    """Test accuracy against the training step for the three sweep schemes and the dense net.

    One run per seed and scheme, at one ``density``, with the masks and initialisation of
    :func:`density_sweep` (a ``"magnitude"`` mask comes from the dense network trained for
    ``steps`` steps). Returns ``{"step": [...], "dense" / scheme: array (seeds, evaluations)}``
    of test accuracies in [0, 1].
    """
    density = _check_density(density)
    if kind not in ("random", "magnitude"):
        raise ValueError(f"kind must be 'random' or 'magnitude', got {kind!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1, got {eval_every!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    curves: dict = {}
    try:
        for seed in seeds:
            torch.manual_seed(seed)
            dense = mlp(sizes)
            init_state = copy.deepcopy(dense.state_dict())
            hist = train(dense, data, steps=steps, lr=lr, batch_size=batch_size,
                         momentum=momentum, eval_every=eval_every, seed=seed, progress=False)
            curves["step"] = list(hist.step)
            curves.setdefault("dense", []).append(hist.test_accuracy)
            masks = layer_masks(dense, density, kind=kind, seed=seed + 10_000, reference=dense)
            for scheme in SWEEP_SCHEMES:
                _, hist = train_masked(data, sizes=sizes, init_state=init_state, masks=masks,
                                       scheme=scheme, density=density, steps=steps, lr=lr,
                                       batch_size=batch_size, momentum=momentum, seed=seed,
                                       eval_every=eval_every)
                curves.setdefault(scheme, []).append(hist.test_accuracy)
    finally:
        torch.set_num_threads(old_threads)
    return {k: (v if k == "step" else np.array(v)) for k, v in curves.items()}


def plot_training_curves(ax, curves: dict, title: str | None = None) -> None:
    """Mean test accuracy (%) against the step, with a min-max band over seeds, per scheme."""
    style = {"dense": dict(color="black", label="dense network"),
             **{s: _SCHEME_STYLE[(s, "test_accuracy")] for s in SWEEP_SCHEMES}}
    for key, st in style.items():
        if key not in curves:
            continue
        acc = 100 * np.asarray(curves[key])
        ax.plot(curves["step"], acc.mean(axis=0), color=st["color"], label=st["label"])
        ax.fill_between(curves["step"], acc.min(axis=0), acc.max(axis=0), color=st["color"],
                        alpha=0.2, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title)



def summarize_sweep(records: list[dict], key: str = "test_accuracy") -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Mean and standard deviation over seeds of ``key`` per ``(kind, scheme)`` and density.

    Returns ``{(kind, scheme): {"density": (D,), "mean": (D,), "std": (D,), "min": (D,),
    "max": (D,), "n": (D,)}}``, densities in decreasing order.
    """
    if not records:
        raise ValueError("records must be a non-empty list (the output of density_sweep)")
    if key not in records[0]:
        raise ValueError(f"key must be one of {sorted(records[0])}, got {key!r}")
    out = {}
    for kind, scheme in sorted({(r["kind"], r["scheme"]) for r in records}):
        rows = [r for r in records if r["kind"] == kind and r["scheme"] == scheme]
        dens = sorted({r["density"] for r in rows}, reverse=True)
        vals = [np.array([r[key] for r in rows if r["density"] == d]) for d in dens]
        out[(kind, scheme)] = {"density": np.array(dens), "mean": np.array([v.mean() for v in vals]),
                               "std": np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals]),
                               "min": np.array([v.min() for v in vals]),
                               "max": np.array([v.max() for v in vals]),
                               "n": np.array([len(v) for v in vals])}
    return out


def mean_accuracy(records: list[dict], kind: str, scheme: str, density: float, key: str = "test_accuracy") -> float:
    """Mean over seeds of ``key`` for one ``(kind, scheme, density)`` of :func:`density_sweep`'s records."""
    values = [r[key] for r in records if r["kind"] == kind and r["scheme"] == scheme and r["density"] == density]
    if not values:
        raise ValueError(f"no records for kind={kind!r}, scheme={scheme!r}, density={density!r}")
    return float(np.mean(values))


def sweep_table(records: list[dict], kind: str = "random") -> str:
    """A plain-text table of a sweep for one mask ``kind``: accuracy (%) per density and scheme.

    Columns: density, weights used at inference by the weight-masked network (mean over seeds),
    weight masking, weight masking with rescaled initialisation, gradient masking as trained, and
    gradient masking evaluated as a sparse network; each cell is ``mean min-max`` over the seeds.
    The table is 68 characters wide.
    """
    rows = [r for r in records if r["kind"] == kind]
    if not rows:
        raise ValueError(f"no records for kind={kind!r}")
    seeds = sorted({r["seed"] for r in rows})
    columns = [(s, "test_accuracy") for s in SWEEP_SCHEMES] + [("gradient", "sparse_test_accuracy")]
    lines = [f"{kind} mask: test accuracy (%), mean min-max over {len(seeds)} seeds",
             f"{'dens.':>5} {'weights':>7} | {'weight':>13} {'rescaled':>13} | "
             f"{'gradient':>13} {'as sparse':>13}"]
    for d in sorted({r["density"] for r in rows}, reverse=True):
        weights = np.mean([r["weights"] for r in rows if r["density"] == d and r["scheme"] == "weight"])
        cells = []
        for scheme, key in columns:
            vals = [100 * r[key] for r in rows if r["density"] == d and r["scheme"] == scheme]
            cells.append(f"{np.mean(vals):5.1f} {min(vals):3.0f}-{max(vals):<3.0f}" if vals
                         else f"{'nan':>13}")
        lines.append(f"{d:5.2f} {weights:7.0f} | {cells[0]} {cells[1]} | {cells[2]} {cells[3]}"
                     .rstrip())
    return "\n".join(lines)



def sweep_differences(records: list[dict], kind: str = "random") -> dict[float, dict[str, float]]:
    """Differences of mean accuracy (fractions) per density below 1, the numbers the chapter's
    conclusions rest on, for one mask ``kind`` of :func:`density_sweep`'s records:

    - ``gain``: gradient masking as trained minus weight masking (the Feb 9 claim);
    - ``rescue``: weight masking with rescaled initialisation minus plain weight masking;
    - ``cost``: gradient masking as trained minus the same networks evaluated sparse;
    - ``sparse_gap``: rescaled weight masking minus gradient masking evaluated sparse.
    """
    def mean(scheme, d, key="test_accuracy"):
        return mean_accuracy(records, kind, scheme, d, key)

    densities = sorted({r["density"] for r in records if r["kind"] == kind and r["density"] < 1},
                       reverse=True)
    if not densities:
        raise ValueError(f"no records below density 1 for kind={kind!r}")
    out = {}
    for d in densities:
        grad, weight, rescaled = (mean(s, d) for s in ("gradient", "weight", "weight_rescaled"))
        sparse = mean("gradient", d, "sparse_test_accuracy")
        out[d] = dict(gain=grad - weight, rescue=rescaled - weight, cost=grad - sparse,
                      sparse_gap=rescaled - sparse)
    return out


def differences_table(differences: dict[float, dict[str, float]]) -> str:
    """:func:`sweep_differences` as a plain-text table in points, 70 characters wide."""
    lines = [f"{'density':>8} {'gradient-weight':>16} {'rescaled-weight':>16} "
             f"{'cost of sparse':>14} {'sparse gap':>11}"]
    for d, diff in differences.items():
        lines.append(f"{d:8.2f} {100 * diff['gain']:16.1f} {100 * diff['rescue']:16.1f} "
                     f"{100 * diff['cost']:14.1f} {100 * diff['sparse_gap']:11.1f}")
    return "\n".join(lines)


_SCHEME_STYLE = {
    ("weight", "test_accuracy"): dict(color=PALETTE[0], marker="o", label="weight masking"),
    ("weight_rescaled", "test_accuracy"): dict(color=PALETTE[2], marker="^",
                                               label="weight masking, init rescaled by $1/\\sqrt{d}$"),
    ("gradient", "test_accuracy"): dict(color=PALETTE[1], marker="s", label="gradient masking (dense at test)"),
    ("gradient", "sparse_test_accuracy"): dict(color=PALETTE[1], marker="s", ls="--", mfc="white",
                                               label="gradient masking, evaluated sparse"),
}


def plot_accuracy_vs_density(ax, records: list[dict], kind: str = "random", chance: float | None = 0.1,
                             show_sparse: bool = True) -> None:
    """Test accuracy (mean over seeds, bars from min to max) against density, log x axis.

    With ``show_sparse`` the gradient-masked networks are also drawn evaluated as sparse networks.
    """
    curves = [("weight", "test_accuracy"), ("weight_rescaled", "test_accuracy"), ("gradient", "test_accuracy")]
    if show_sparse:
        curves.append(("gradient", "sparse_test_accuracy"))
    for scheme, key in curves:
        summary = summarize_sweep([r for r in records if r["kind"] == kind], key=key).get((kind, scheme))
        if summary is None:
            continue
        mean = 100 * summary["mean"]
        spread = [mean - 100 * summary["min"], 100 * summary["max"] - mean]
        ax.errorbar(summary["density"], mean, yerr=spread, capsize=3, **_SCHEME_STYLE[(scheme, key)])
    if chance is not None:
        ax.axhline(100 * chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    dens = sorted({r["density"] for r in records})
    ax.set_xticks(dens)
    ax.set_xticklabels([f"{d:g}" for d in dens])
    ax.minorticks_off()
    ax.set_xlabel("density (fraction of weights kept, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{kind} mask")


# ----------------------------------------------------------------------------------------------
# the explorer
# ----------------------------------------------------------------------------------------------

def explorer_run(density: float = 0.3, scheme: str = "weight", steps: int = 20, seed: int = 0,
                 n_in: int = 16, n_out: int = 8, n_examples: int = 64, lr: float = 0.1) -> dict[str, torch.Tensor]:
    """The explorer's toy: one :class:`MaskedLinear` ``(n_out, n_in)`` fitted by SGD to a linear teacher (MSE).

    Returns float64 tensors ``W0`` (initial weight), ``M`` (random mask of ``density``), ``grad0``
    (``dL/dW`` at step 0 under ``scheme``), ``Wk`` (stored weight after ``steps`` steps), ``Weff``
    (the weight the forward pass uses after ``steps`` steps) and ``loss`` (shape ``(steps + 1,)``).
    """
    density, scheme = _check_density(density), _check_mode(scheme, "scheme")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_examples, n_in, generator=g, dtype=torch.float64)
    teacher = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / math.sqrt(n_in)
    y = x @ teacher.T
    layer = MaskedLinear(n_in, n_out, bias=False, mode=scheme, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / math.sqrt(n_in))
    layer.set_mask(random_mask((n_out, n_in), density, g, dtype=torch.float64))
    w0 = layer.weight.detach().clone()
    losses, grad0 = [], None
    for step in range(steps + 1):
        layer.weight.grad = None
        loss = 0.5 * ((layer(x) - y) ** 2).sum(dim=1).mean()
        losses.append(float(loss.detach()))
        if step == steps:
            break
        loss.backward()
        if grad0 is None:
            grad0 = layer.weight.grad.detach().clone()
        with torch.no_grad():
            layer.weight -= lr * layer.weight.grad
    if grad0 is None:
        loss.backward()
        grad0 = layer.weight.grad.detach().clone()
    return {"W0": w0, "M": layer.mask.detach().clone(), "grad0": grad0, "Wk": layer.weight.detach().clone(),
            "Weff": layer.effective_weight().detach().clone(), "loss": torch.tensor(losses)}


#: The explorer's one colour scale: every weight-valued panel maps [-1, 1] to blue..red.
EXPLORER_VMAX = 1.0


def plot_masking_explorer(fig, density: float = 0.3, scheme: str = "weight", steps: int = 20,
                          seed: int = 0, lr: float = 0.1) -> None:
    """Explorer panel: ``W_0``, ``M``, the first update, ``W_k - W_0`` and the weight used at step k.

    The four weight-valued panels share one colour scale, the same for every setting
    (:data:`EXPLORER_VMAX`; red positive, blue negative, values beyond it saturate), shown by one
    colour bar. The first update ``-lr dL/dW`` is small, so it is drawn times 10. Draws onto a
    matplotlib ``Figure`` or ``SubFigure``.
    """
    run = explorer_run(density=density, scheme=scheme, steps=steps, seed=seed, lr=lr)
    axes = fig.subplots(1, 6, width_ratios=[1, 1, 1, 1, 1, 0.08])
    v = EXPLORER_VMAX
    heatmap(axes[0], run["W0"], title="$W_0$", vmax=v, colorbar=False)
    heatmap(axes[1], run["M"], title=f"$M$ (density {density:.2g})", symmetric=False,
            cmap="Greys", colorbar=False)
    heatmap(axes[2], -10 * lr * run["grad0"], title="first update $\\times 10$", vmax=v,
            colorbar=False)
    heatmap(axes[3], run["Wk"] - run["W0"], title=f"$W_{{{steps}}} - W_0$ (updates)", vmax=v,
            colorbar=False)
    image = heatmap(axes[4], run["Weff"], title=f"weight used at step {steps}", vmax=v,
                    colorbar=False)
    fig.colorbar(image, cax=axes[5], extend="both")
    loss0, lossk = float(run["loss"][0]), float(run["loss"][-1])
    axes[4].set_xlabel(f"loss {loss0:.2f} → {lossk:.2f}", fontsize="small")
