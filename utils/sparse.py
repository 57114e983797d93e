"""Weight pruning vs unit pruning, and sparse inference (chapter ``05_weight_vs_unit``).

The chapter mirrors a write-up of a pruning exercise (note 002): a bias-free ReLU MLP is pruned
**layer-wise** at a fraction ``k`` in each layer, in two ways,

* weight pruning: the ``k`` fraction of weights of smallest ``|w|`` in each layer
  (``eq-wu-weight-prune``), and
* unit pruning: the ``k`` fraction of units whose incoming weights have the smallest L2 norm
  ``||W_{i,:}||_2`` in each layer (``eq-wu-unit-prune``),

with the output layer left dense. Masks are ``dict[str, Tensor]`` keyed by parameter name
(``"fc1.weight"``) and shaped like the parameter; a unit mask zeroes whole rows of ``W``.

Three ways to run a pruned network forward:

* dense matrices with zeros in them (``masked_copy``): the same work as the dense network;
* ``torch.sparse`` COO or CSR weights (:func:`to_sparse_model`): work proportional to the nonzeros;
* physically smaller dense matrices (:func:`shrink_units`): a removed unit deletes a row of
  ``W^(l)`` *and* a column of ``W^(l+1)``.

The rest supports the chapter's experiments: the Kolmogorov-Smirnov test of the note's claim that
unit pruning removes weights at random with respect to their magnitude (:func:`elimination_ks`),
interleaved timing (:func:`time_interleaved`), FLOP and memory counts, the first-layer locality
measurement, and the figures.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
import itertools
import math
import random
import statistics
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Split
from .masking import check_masks
from .models import linear_layers
from .plotting import PALETTE

__all__ = [
    "LAYOUTS",
    "METHOD_COLORS",
    "check_fraction",
    "unit_norms",
    "prune_weights_layerwise",
    "prune_units_layerwise",
    "prune_layerwise",
    "layerwise_masks",
    "masked_copy",
    "SparseLinear",
    "shrink_units",
    "to_sparse_model",
    "dead_units",
    "REPRESENTATIONS",
    "pruned_representations",
    "elimination_ks",
    "ks_at_init",
    "forward_flops",
    "weight_bytes",
    "time_interleaved",
    "crossover",
    "train_with_best_epoch",
    "evaluate_pruned",
    "finetune_pruned",
    "pairwise_distance",
    "random_mask_like",
    "plot_training_curves",
    "plot_pruning_curves",
    "plot_elimination_histograms",
    "plot_forward_ratios",
    "plot_k_explorer",
]

Masks = dict[str, torch.Tensor]
LAYOUTS = ("coo", "csr")
METHOD_COLORS = {"weight": PALETTE[0], "unit": PALETTE[1]}
#: elementwise modules that may sit between two linear layers of a model given to shrink_units
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity, nn.Dropout)


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------

def check_fraction(fraction: float, name: str = "fraction") -> float:
    """Return ``fraction`` as a float if it is a number in [0, 1), else raise ``ValueError``."""
    numbers = (int, float, np.integer, np.floating)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers):
        raise ValueError(f"{name} must be a number in [0, 1), got {fraction!r}")
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the fraction pruned in each layer), "
                         f"got {fraction!r}")
    return fraction


def _check_masks(model: nn.Module, masks: Masks) -> Masks:
    """The book's mask validator (:func:`utils.masking.check_masks`) on the linear layers of
    ``model``: keys are their weight names, values 0/1 tensors of the weights' shapes."""
    return check_masks(masks, model, types=(nn.Linear,))


# --------------------------------------------------------------------------------------------------
# pruning
# --------------------------------------------------------------------------------------------------

def unit_norms(weight: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Norms ``||W_{i,:}||_p`` of the incoming weights of each unit (row) of ``weight``.

    ``weight`` has shape ``(n_out, n_in)``; the result has shape ``(n_out,)``. ``p`` is 1 or 2.

    >>> unit_norms(torch.tensor([[3., 4.], [1., 0.]]))
    tensor([5., 1.])
    """
    p = _check_p(p)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-D tensor (n_out, n_in)")
    return weight.detach().norm(p=p, dim=1)


def _check_p(p: float) -> float:
    if p not in (1, 2, 1.0, 2.0):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return float(p)


def _prunable(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    layers = linear_layers(model)
    if len(layers) < 2:
        raise ValueError("model needs at least two linear layers (the last one is never pruned)")
    return layers[:-1]


def layerwise_masks(model: nn.Module, method: str, fractions: list[float], p: float = 2.0
                    ) -> list[Masks]:
    """Layer-wise masks of ``method`` (``"weight"`` or ``"unit"``) for several fractions at once,
    sorting each layer's scores only once. ``result[j]`` equals the single-fraction functions
    :func:`prune_weights_layerwise` / :func:`prune_units_layerwise` at ``fractions[j]``.

    In every linear layer but the last, the ``round(k n)`` lowest-scoring weights (``|w|``) or
    units (``||W_{i,:}||_p``) are masked, ties broken by position (stable sort).
    """
    if method not in ("weight", "unit"):
        raise ValueError(f"method must be 'weight' or 'unit', got {method!r}")
    if not isinstance(fractions, (list, tuple)) or not fractions:
        raise ValueError("fractions must be a non-empty list of numbers in [0, 1)")
    fractions = [check_fraction(f) for f in fractions]
    p = _check_p(p)
    out: list[Masks] = [{} for _ in fractions]
    for name, layer in _prunable(model):
        w = layer.weight.detach()
        scores = w.abs().flatten() if method == "weight" else unit_norms(w, p)
        order = torch.argsort(scores, stable=True)
        for j, f in enumerate(fractions):
            keep = torch.ones_like(scores)
            keep[order[:int(round(f * scores.numel()))]] = 0.0
            mask = keep.view_as(w) if method == "weight" else keep[:, None].expand_as(w)
            out[j][f"{name}.weight"] = mask.clone()
    return out


def prune_weights_layerwise(model: nn.Module, fraction: float) -> Masks:
    """Weight pruning (``eq-wu-weight-prune``): in every linear layer but the last, mask the
    ``round(fraction * n_weights)`` weights of smallest ``|w|`` (ties broken by position).

    Returns ``{"fc1.weight": mask, ...}`` with masks shaped like the weights (the last layer is
    not in the dict: it stays dense). ``fraction`` must be in [0, 1).

    >>> from utils.models import mlp
    >>> m = prune_weights_layerwise(mlp([4, 5, 3], bias=False), 0.5)
    >>> list(m), int(m["fc1.weight"].sum())
    (['fc1.weight'], 10)
    """
    return layerwise_masks(model, "weight", [fraction])[0]


def prune_units_layerwise(model: nn.Module, fraction: float, p: float = 2.0) -> Masks:
    """Unit pruning (``eq-wu-unit-prune``): in every linear layer but the last, remove the
    ``round(fraction * n_units)`` units whose incoming weights have the smallest ``L_p`` norm
    (default L2), by zeroing their rows of ``W``.

    Masks are in full weight shape, ``(n_out, n_in)``, with whole rows 0 or 1.

    >>> from utils.models import mlp
    >>> m = prune_units_layerwise(mlp([4, 6, 3], bias=False), 0.5)
    >>> m["fc1.weight"].sum(dim=1).tolist().count(0.0)
    3
    """
    return layerwise_masks(model, "unit", [fraction], p)[0]


def prune_layerwise(model: nn.Module, method: str, fraction: float) -> Masks:
    """``prune_weights_layerwise`` (``method="weight"``) or ``prune_units_layerwise``
    (``method="unit"``)."""
    if method not in ("weight", "unit"):
        raise ValueError(f"method must be 'weight' or 'unit', got {method!r}")
    return layerwise_masks(model, method, [fraction])[0]


def masked_copy(model: nn.Module, masks: Masks) -> nn.Module:
    """A deep copy of ``model`` with the masks multiplied into its weights (dense, zeros in)."""
    _check_masks(model, masks)
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name]))
    return out


# --------------------------------------------------------------------------------------------------
# representations: sparse weights and physically smaller layers
# --------------------------------------------------------------------------------------------------

class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as a ``torch.sparse`` COO or CSR matrix.

    The product is computed as ``(W @ x^T)^T`` by ``torch.sparse.mm``, whose cost is proportional to
    the number of nonzeros of ``W`` times the batch size. Inference only (no gradients to ``W``).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 layout: str = "csr") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        dense = weight.detach()
        with warnings.catch_warnings():   # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            sparse = dense.to_sparse_coo().coalesce() if layout == "coo" else dense.to_sparse_csr()
        self.layout = layout
        self.in_features, self.out_features = dense.shape[1], dense.shape[0]
        self.nnz = int((dense != 0).sum())
        self.register_buffer("weight", sparse)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.nnz}, layout={self.layout}")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def to_sparse_model(model: nn.Module, masks: Masks, layout: str = "csr") -> nn.Module:
    """A copy of ``model`` whose masked linear layers hold ``W * mask`` as ``torch.sparse``
    matrices in ``layout`` (``"coo"`` or ``"csr"``) and multiply with ``torch.sparse.mm``.

    Layers without a mask stay dense. Outputs equal those of ``masked_copy(model, masks)`` up to
    float rounding (the chapter and the tests check 1e-5).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    _check_masks(model, masks)
    out = masked_copy(model, masks).eval()
    for name, layer in linear_layers(out):
        if f"{name}.weight" in masks:
            _replace(out, name, SparseLinear(layer.weight, layer.bias, layout))
    return out


REPRESENTATIONS = ("dense (zeros in)", "coo", "csr", "shrunk (unit)")


def pruned_representations(model: nn.Module, fraction: float) -> dict[str, nn.Module]:
    """The four ways the chapter runs a network pruned at ``fraction`` (eval mode):
    ``"dense (zeros in)"``, ``"coo"`` and ``"csr"`` hold the *weight*-pruned network (masked dense,
    :func:`to_sparse_model`), ``"shrunk (unit)"`` the *unit*-pruned one (:func:`shrink_units`)."""
    weight_masks = prune_weights_layerwise(model, fraction)
    return {"dense (zeros in)": masked_copy(model, weight_masks).eval(),
            "coo": to_sparse_model(model, weight_masks, "coo"),
            "csr": to_sparse_model(model, weight_masks, "csr"),
            "shrunk (unit)": shrink_units(model, prune_units_layerwise(model, fraction))}


def dead_units(masks: Masks) -> dict[str, torch.Tensor]:
    """For each mask, a boolean vector of its units (rows) whose incoming weights are all masked."""
    return {n: (m == 0).all(dim=1) for n, m in masks.items()}


def shrink_units(model: nn.Module, masks: Masks) -> nn.Sequential:
    """A smaller dense ``nn.Sequential`` with the same outputs as ``masked_copy(model, masks)``.

    ``model`` is an ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations, as
    built by :func:`utils.models.mlp`. Every hidden unit whose row of the mask is all zero is
    removed: its row of ``W^(l)`` (and bias entry) and its column of ``W^(l+1)``. Such a unit
    outputs the constant ``c = phi(b_i)`` (``phi(0)`` without bias, 0 for ReLU), which is folded
    into the next layer's bias, ``b^(l+1) += W^(l+1)_{:,i} c``, so the outputs are unchanged for any
    activation. The output layer and the inputs are never removed.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential (e.g. utils.models.mlp), "
                        f"got {type(model).__name__}")
    for name, m in model.named_children():
        if not isinstance(m, (nn.Linear, *ELEMENTWISE)):
            raise ValueError(f"shrink_units needs linear layers and elementwise activations only; "
                             f"{name} is a {type(m).__name__}")
    _check_masks(model, masks)
    work = masked_copy(model, masks)
    children = list(work.named_children())
    linear_idx = [i for i, (_, m) in enumerate(children) if isinstance(m, nn.Linear)]
    dead = dead_units(masks)
    new: dict[str, nn.Module] = {}
    keep_in: torch.Tensor | None = None      # kept units of the previous linear layer
    fold: torch.Tensor | None = None         # constant outputs of its removed units
    for pos, (name, m) in enumerate(children):
        if not isinstance(m, nn.Linear):
            new[name] = m
            continue
        w = m.weight.detach()
        b = None if m.bias is None else m.bias.detach()
        extra = None
        if keep_in is not None:
            if fold is not None and bool((~keep_in).any()):
                extra = w[:, ~keep_in] @ fold
            w = w[:, keep_in]
        is_last = pos == linear_idx[-1]
        removed = dead.get(f"{name}.weight")
        if is_last or removed is None:
            keep = torch.ones(w.shape[0], dtype=torch.bool)
        else:
            keep = ~removed
        full_bias = None if b is None else b.clone()
        if extra is not None and bool((extra != 0).any()):
            full_bias = extra if full_bias is None else full_bias + extra
        # a removed unit outputs phi(its bias): run it through the activations up to the next layer
        const = torch.zeros(int((~keep).sum()), dtype=w.dtype) if full_bias is None \
            else full_bias[~keep].clone()
        for _, act in children[pos + 1:]:
            if isinstance(act, nn.Linear):
                break
            const = act.eval()(const)
        layer = nn.Linear(w.shape[1], int(keep.sum()), bias=full_bias is not None, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w[keep])
            if full_bias is not None:
                layer.bias.copy_(full_bias[keep])
        new[name] = layer
        keep_in, fold = keep, const
    return nn.Sequential(OrderedDict(new)).eval()


# --------------------------------------------------------------------------------------------------
# the note's "Theorem 1": are unit-pruned weights eliminated at random w.r.t. their magnitude?
# --------------------------------------------------------------------------------------------------

def elimination_ks(weight: torch.Tensor, mask: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic between ``|w|`` of eliminated (mask 0) and
    surviving (mask 1) weights: ``sup_x |F_elim(x) - F_surv(x)|`` (``eq-wu-ks``), in [0, 1].

    0 means identical empirical distributions; 1 means every eliminated magnitude is below (or
    above) every surviving one. Needs at least one weight of each kind.
    """
    if not isinstance(weight, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise TypeError("weight and mask must be tensors")
    if weight.shape != mask.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, weight has {tuple(weight.shape)}")
    a = weight.detach().abs().flatten().double().cpu().numpy()
    m = mask.detach().flatten().cpu().numpy() != 0
    elim, surv = np.sort(a[~m]), np.sort(a[m])
    if len(elim) == 0 or len(surv) == 0:
        raise ValueError("mask must eliminate at least one weight and keep at least one")
    grid = np.concatenate([elim, surv])
    cdf_e = np.searchsorted(elim, grid, side="right") / len(elim)
    cdf_s = np.searchsorted(surv, grid, side="right") / len(surv)
    return float(np.abs(cdf_e - cdf_s).max())


def ks_at_init(fan_in: int, fan_out: int, fraction: float, seed: int = 0,
               method: str = "unit") -> float:
    """:func:`elimination_ks` for one freshly initialised ``nn.Linear(fan_in, fan_out)`` layer
    (PyTorch's default, uniform initialisation) pruned layer-wise with ``method`` at
    ``fraction``."""
    fraction = check_fraction(fraction)
    for label, v in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{label} must be an int >= 2, got {v!r}")
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(fan_in, fan_out, bias=False), nn.Linear(fan_out, 1))
    masks = prune_layerwise(layer, method, fraction)
    return elimination_ks(layer[0].weight, masks["0.weight"])


# --------------------------------------------------------------------------------------------------
# cost of each representation
# --------------------------------------------------------------------------------------------------

def forward_flops(model: nn.Module, batch: int = 1) -> int:
    """Multiply-adds x 2 of the linear layers of ``model`` on ``batch`` inputs, counting only the
    stored nonzeros of sparse layers: ``2 B sum_l nnz(W^(l))`` (``eq-wu-flops``); a dense layer
    counts all ``n_l n_(l-1)`` entries, zeros included (dense hardware multiplies them too)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    total = 0
    for m in model.modules():
        if isinstance(m, SparseLinear):
            total += m.nnz
        elif isinstance(m, nn.Linear):
            total += m.weight.numel()
    return 2 * batch * total


def weight_bytes(model: nn.Module) -> int:
    """Bytes that hold the weights of ``model``: dense ``4 n m`` (float32); COO ``nnz (4 + 2*8)``;
    CSR ``nnz (4 + 8) + 8 (n + 1)`` (int64 indices, as torch stores them). Biases not counted."""
    total = 0
    for m in model.modules():
        if isinstance(m, SparseLinear):
            w = m.weight
            if m.layout == "coo":
                total += w.values().numel() * w.values().element_size() + \
                    w.indices().numel() * w.indices().element_size()
            else:
                total += w.values().numel() * w.values().element_size() + \
                    w.col_indices().numel() * w.col_indices().element_size() + \
                    w.crow_indices().numel() * w.crow_indices().element_size()
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------

def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                     seed: int = 0) -> dict[str, float]:
    """Median wall time (seconds) of each zero-argument callable, measured **interleaved**: each
    of ``repeats`` rounds runs every callable once, in a fresh random order, so that a change of
    machine load hits all of them alike. ``warmup`` untimed rounds come first."""
    if not isinstance(fns, dict) or not fns:
        raise ValueError("fns must be a non-empty dict name -> callable")
    for label, v, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{label} must be an int >= {low}, got {v!r}")
    rng = random.Random(seed)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for r in range(warmup + repeats):
            rng.shuffle(names)
            for n in names:
                t = time.perf_counter()
                fns[n]()
                dt = time.perf_counter() - t
                if r >= warmup:
                    times[n].append(dt)
    return {n: statistics.median(v) for n, v in times.items()}


def crossover(ks: list[float], ratios: list[float]) -> float | None:
    """The smallest ``k`` from which ``ratio < 1`` holds at every larger ``k`` of the grid
    (the representation beats dense from there on), or ``None`` if it never does."""
    if len(ks) != len(ratios) or not ks:
        raise ValueError("ks and ratios must be non-empty and of the same length")
    pairs = sorted(zip(ks, ratios))
    best = None
    for k, r in reversed(pairs):
        if r < 1.0:
            best = k
        else:
            break
    return best


# --------------------------------------------------------------------------------------------------
# training, evaluation, fine-tuning
# --------------------------------------------------------------------------------------------------

def train_with_best_epoch(model: nn.Module, data: Split, *, epochs: int, batch_size: int = 128,
                          lr: float = 1e-3, seed: int = 0, progress: bool | None = False
                          ) -> dict[str, Any]:
    """Train ``model`` with Adam for ``epochs`` epochs, evaluating on ``data``'s test split (the
    validation set here) after every epoch, and restore the weights of the epoch with the lowest
    validation loss (the note's "best model"), **in place**.

    Returns ``{"history": per-epoch dict of lists, "best_epoch": int (1-based)}``.
    """
    from .training import train

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    per_epoch = max(1, len(data.x_train) // batch_size)
    snapshots: list[dict[str, torch.Tensor]] = []

    def snapshot(m: nn.Module, step: int) -> None:
        if step % per_epoch == 0:
            snapshots.append({k: v.detach().clone() for k, v in m.state_dict().items()})

    history = train(model, data, steps=epochs * per_epoch, batch_size=batch_size, lr=lr,
                    optimizer="adam", eval_every=per_epoch, seed=seed, after_step=snapshot,
                    progress=progress)
    best = int(np.argmin(history.test_loss))
    model.load_state_dict(snapshots[best])
    hist = history.to_dict()
    hist["epoch"] = [s // per_epoch for s in hist["step"]]
    return {"history": hist, "best_epoch": best + 1}


@torch.no_grad()
def evaluate_pruned(model: nn.Module, masks: Masks, x: torch.Tensor, y: torch.Tensor
                    ) -> dict[str, float]:
    """Test ``loss`` (mean cross-entropy) and ``accuracy`` of ``model`` with ``masks`` applied,
    without retraining (the note's setting). An ``nn.Sequential`` is evaluated as the equal but
    smaller network of :func:`shrink_units` (cheap after unit pruning)."""
    from .training import evaluate

    if isinstance(model, nn.Sequential):
        return evaluate(shrink_units(model, masks), x, y)
    return evaluate(masked_copy(model, masks), x, y)


def finetune_pruned(model: nn.Module, masks: Masks, data: Split, method: str, *, steps: int,
                    batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """A short fine-tune (Adam, ``steps`` steps) of the pruned network; returns the test loss and
    accuracy after it. Weight-pruned networks train with their masks re-applied after each step
    (``utils.pruning.train_pruned``); unit-pruned ones train as the smaller dense network of
    :func:`shrink_units`, which computes the same function and gets the same gradients. When
    ``steps * batch_size`` is less than the training set, the fine-tune uses that many examples
    drawn at random (seeded), each once."""
    from .pruning import train_pruned
    from .training import evaluate, train

    if method not in ("weight", "unit"):
        raise ValueError(f"method must be 'weight' or 'unit', got {method!r}")
    n_seen = steps * batch_size
    if n_seen < len(data.x_train):
        # the fine-tune sees steps * batch_size examples without replacement (less than one epoch):
        # pass only those, so that train's final evaluation on its training set stays cheap
        pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
        pick = pick[:n_seen]
        data = Split(data.x_train[pick], data.y_train[pick], data.x_test, data.y_test, data.name)
    if method == "weight":
        net = copy.deepcopy(model)
        train_pruned(net, masks, data, steps=steps, batch_size=batch_size, lr=lr,
                     optimizer="adam", eval_every=steps, seed=seed, progress=False)
    else:
        net = shrink_units(model, masks).train()
        train(net, data, steps=steps, batch_size=batch_size, lr=lr, optimizer="adam",
              eval_every=steps, seed=seed, progress=False)
    return evaluate(net, data.x_test, data.y_test)


# --------------------------------------------------------------------------------------------------
# future work: does weight pruning of the first layer find locality?
# --------------------------------------------------------------------------------------------------

def _pixel_coords(n_inputs: int) -> torch.Tensor:
    side = int(round(math.sqrt(n_inputs)))
    if side * side != n_inputs:
        raise ValueError(f"the first layer must see a square image; {n_inputs} inputs is not n*n")
    r, c = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([r.flatten(), c.flatten()], dim=1).double()


def pairwise_distance(mask: torch.Tensor) -> torch.Tensor:
    """For each unit (row) of a first-layer mask over a square image, the mean Euclidean distance
    (in pixels) between the pixels it keeps (``eq-wu-locality``); ``nan`` for units that keep
    fewer than two. Shape ``(n_units,)``. Smaller means more spatially concentrated."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError("mask must be a 2-D tensor (n_units, n_pixels)")
    xy = _pixel_coords(mask.shape[1])
    dist = torch.cdist(xy, xy)
    m = (mask != 0).double()
    count = m.sum(dim=1)
    total = torch.einsum("ui,ij,uj->u", m, dist, m)      # sum over ordered pairs
    pairs = count * (count - 1)
    out = total / pairs
    out[count < 2] = float("nan")
    return out


def random_mask_like(mask: torch.Tensor, generator: torch.Generator, match: str = "layer"
                     ) -> torch.Tensor:
    """A random 0/1 mask with the same shape and number of ones as ``mask``.

    ``match="layer"``: ones placed uniformly at random in the whole layer (same density).
    ``match="marginal"``: each row keeps as many ones as in ``mask``, drawn without replacement
    with probability proportional to how often each column (pixel) is kept in ``mask``, so the
    null model has the same per-unit counts and the same preference for central pixels, and only
    the *co-occurrence* of nearby pixels within a unit is destroyed.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError("mask must be a 2-D tensor (n_units, n_inputs)")
    keep = mask != 0
    if match == "layer":
        flat = torch.zeros(mask.numel(), dtype=mask.dtype)
        flat[torch.randperm(mask.numel(), generator=generator)[:int(keep.sum())]] = 1
        return flat.view_as(mask)
    if match == "marginal":
        # Gumbel-top-k: the counts[i] largest of log(freq) + Gumbel noise in row i are a sample
        # without replacement with probabilities proportional to freq, for all rows at once
        freq = keep.double().sum(dim=0)
        u = torch.rand(mask.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
        keys = torch.log(freq.clamp_min(1e-300)) - torch.log(-torch.log(u))
        keys[:, freq == 0] = -math.inf
        ranks = keys.argsort(dim=1, descending=True).argsort(dim=1)
        return (ranks < keep.sum(dim=1, keepdim=True)).to(mask.dtype)
    raise ValueError(f"match must be 'layer' or 'marginal', got {match!r}")


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------

def plot_training_curves(axes, runs: list[dict]) -> None:
    """The note's Figure 1: loss (``axes[0]``) and accuracy (``axes[1]``) per epoch, train and
    validation, mean over ``runs`` (outputs of :func:`train_with_best_epoch`) with a min/max band,
    the best epoch of each run marked."""
    for key, label, ls in (("train", "train", "--"), ("test", "validation", "-")):
        for ax, what in zip(axes, ("loss", "accuracy")):
            vals = np.array([r["history"][f"{key}_{what}"] for r in runs])
            if what == "accuracy":
                vals = 100 * vals
            ep = runs[0]["history"]["epoch"]
            ax.plot(ep, vals.mean(0), ls, color=PALETTE[0 if key == "test" else 2], label=label)
            ax.fill_between(ep, vals.min(0), vals.max(0), color=PALETTE[0 if key == "test" else 2],
                            alpha=0.2, lw=0)
    for r in runs:
        e = r["best_epoch"]
        axes[0].plot(e, r["history"]["test_loss"][e - 1], "v", color=PALETTE[1], ms=7)
    axes[0].plot([], [], "v", color=PALETTE[1], label="best epoch (per seed)")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)")
    axes[0].legend()


def _band(ax, records: list[dict], method: str, key: str, label: str, ls: str = "-") -> None:
    ks = sorted({r["k"] for r in records if r["method"] == method})
    vals = [[r[key] for r in records if r["method"] == method and r["k"] == k] for k in ks]
    scale = 100 if "accuracy" in key else 1
    mean = [scale * np.mean(v) for v in vals]
    ax.plot([100 * k for k in ks], mean, ls, marker="o", ms=3, color=METHOD_COLORS[method],
            label=label)
    ax.fill_between([100 * k for k in ks], [scale * min(v) for v in vals],
                    [scale * max(v) for v in vals], color=METHOD_COLORS[method], alpha=0.2, lw=0)


def plot_pruning_curves(axes, records: list[dict], finetuned: bool = True) -> None:
    """The note's Figures 2 and 3 on shared axes: test loss (``axes[0]``, log scale) and accuracy
    (``axes[1]``) against the fraction pruned k (%), weight vs unit pruning, mean over seeds with
    a min/max band; dashed: after a short fine-tune."""
    for method in ("weight", "unit"):
        for ax, key in zip(axes, ("loss", "accuracy")):
            _band(ax, records, method, f"test_{key}", f"{method} pruning")
            if finetuned and any(f"ft_test_{key}" in r for r in records):
                _band(ax, records, method, f"ft_test_{key}", f"{method}, fine-tuned", "--")
    axes[0].set(xlabel="fraction pruned per layer k (%)", ylabel="test loss", yscale="log")
    axes[1].set(xlabel="fraction pruned per layer k (%)", ylabel="test accuracy (%)")
    axes[1].axhline(10, color="grey", ls=":", lw=1)
    axes[1].legend(fontsize="small")


def plot_elimination_histograms(axes, weight: torch.Tensor, fraction: float) -> dict[str, float]:
    """The note's Figure 4: histograms of ``|w|`` of eliminated and surviving weights of one layer
    under weight pruning (``axes[0]``) and unit pruning (``axes[1]``) at ``fraction``; the KS
    statistic of each is in the title and returned."""
    layer = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False),
                          nn.Linear(weight.shape[0], 1, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(weight)
    a = weight.detach().abs().flatten().numpy()
    bins = np.linspace(0, np.quantile(a, 0.999), 60)
    out = {}
    for ax, method in zip(axes, ("weight", "unit")):
        mask = prune_layerwise(layer, method, fraction)["0.weight"].flatten().numpy() != 0
        out[method] = elimination_ks(weight, torch.as_tensor(mask).view_as(weight))
        ax.hist(a[~mask], bins=bins, density=True, alpha=0.6, color=PALETTE[1], label="eliminated")
        ax.hist(a[mask], bins=bins, density=True, alpha=0.6, color=PALETTE[2], label="surviving")
        ax.set(xlabel="|w|", ylabel="density",
               title=f"{method} pruning, k = {fraction:.2f}: KS = {out[method]:.3f}")
        ax.legend(fontsize="small")
    return out


def plot_forward_ratios(ax, rows: list[dict], batch: int) -> None:
    """The note's Figure 5 as ratios: forward time of each representation divided by the dense
    forward time, against k (%), for one batch size; below 1 is faster than dense."""
    styles = {"dense (zeros in)": ("k", "-"), "coo": (PALETTE[3], "-"), "csr": (PALETTE[0], "-"),
              "shrunk (unit)": (PALETTE[1], "-")}
    sel = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["k"])
    for rep, (color, ls) in styles.items():
        if rep not in sel[0]["ratio"]:
            continue
        ax.plot([100 * r["k"] for r in sel], [r["ratio"][rep] for r in sel], ls, marker="o", ms=3,
                color=color, label=rep)
    ax.axhline(1.0, color="grey", lw=1, ls=":")
    ax.set(yscale="log", xlabel="fraction pruned per layer k (%)",
           ylabel="time / dense time", title=f"batch {batch}")
    ax.legend(fontsize="small")


def plot_k_explorer(fig, k: float = 0.5, *, records: list[dict], weight: torch.Tensor) -> None:
    """Explorer: accuracy against k for both methods with a marker at ``k`` (left), and the
    magnitude histograms of eliminated and surviving weights of one layer at ``k`` (right two)."""
    axes = fig.subplots(1, 3)
    for method in ("weight", "unit"):
        _band(axes[0], records, method, "test_accuracy", f"{method}")
    axes[0].axvline(100 * k, color="grey", lw=1)
    axes[0].set(xlabel="k (%)", ylabel="test accuracy (%)")
    axes[0].legend(fontsize="small")
    plot_elimination_histograms(axes[1:], weight, k)
    for ax in axes[1:]:
        ax.title.set_fontsize("small")
