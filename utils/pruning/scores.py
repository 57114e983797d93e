"""The pruning scores of the book, one implementation each, on one interface (chapters 2 and 3).

``score(model, method, data=None, masks=None, ...)`` returns ``{param name: float64 tensor}`` for the
prunable weights of ``model`` (:func:`utils.models.prunable_names`); **high scores are kept**. The
methods, in the lookup table :data:`SCORERS`:

* ``"random"``: i.i.d. uniform scores;
* ``"magnitude"``: ``|theta|``;
* ``"snip"``: ``|dL/dtheta * theta|`` on a batch of data {cite}`lee2019snip`;
* ``"grasp"``: ``(H g) * theta`` with ``g = dL/dtheta`` and ``H`` the Hessian of ``L``, the loss of the
  logits divided by a temperature ``T = 200`` {cite}`wang2020grasp` (see :func:`grasp_scores` for the
  sign and temperature convention);
* ``"synflow"``: ``dR_SF/dtheta * theta`` with ``R_SF = 1^T (prod_l |theta^(l)|) 1`` (notes eqs 6-7,
  ``eq-synflow-objective`` and ``eq-synflow-score``) {cite}`tanaka2020synflow`, no data needed.

All scores are computed on a float64 copy of the model in eval mode; the model itself is never
changed. Weights zeroed by ``masks`` score 0 for every method but ``"random"``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data import Split
from ..masking import Masks, check_masks
from ..models import prunable_layers, prunable_names

__all__ = ["METHODS", "SCORERS", "GRASP_TEMPERATURE", "score", "magnitude_scores", "snip_scores",
           "grasp_scores", "synflow_scores", "random_scores", "synflow_objective", "synflow_score_formula"]

#: GraSP divides the logits by this temperature before the loss, as the GraSP authors' code
#: (``T=200`` in ``pruner/GraSP.py``) and the Synaptic-Flow reference code (``self.temp = 200``) do.
GRASP_TEMPERATURE = 200.0

Data = Any  # (x, y) tuple of tensors or a utils.data.Split


# --------------------------------------------------------------------------------------------------
# argument checks and helpers
# --------------------------------------------------------------------------------------------------

def check_int(value: int, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def as_batch(data: Data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from ``data`` (a tuple of tensors or a :class:`utils.data.Split`: its training set)."""
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


def input_shape_of(model: nn.Module, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of one input example for SynFlow's all-ones input (inferred for a first ``nn.Linear``)."""
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


def _check_model_masks(model: nn.Module, masks: Masks | None) -> Masks | None:
    prunable_layers(model)          # TypeError / ValueError for a non-model or nothing to prune
    return None if masks is None else check_masks(masks, model)


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


def _loss_batch(work: nn.Module, data: Data, loss_fn: Callable | None, what: str):
    x, y = as_batch(data, what)
    dev = next(work.parameters()).device
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(logits, y), got {type(loss_fn).__name__}")
    return x.to(dev, torch.float64), y.to(dev), loss_fn


# --------------------------------------------------------------------------------------------------
# the scorers (one each)
# --------------------------------------------------------------------------------------------------

def random_scores(model: nn.Module, *, seed: int = 0, generator: torch.Generator | None = None) -> Masks:
    """I.i.d. ``U(0, 1)`` float64 scores for every prunable weight, from ``generator`` (or one seeded
    with ``seed``). The baseline every method must beat."""
    if generator is None:
        generator = torch.Generator().manual_seed(check_int(seed, "seed", 0))
    params = dict(model.named_parameters())
    return {n: torch.rand(params[n].shape, generator=generator, dtype=torch.float64) for n in prunable_names(model)}


def magnitude_scores(model: nn.Module, masks: Masks | None = None) -> Masks:
    """``|theta|`` for every prunable weight {cite}`han2015learning`: *not* a synaptic saliency.

    (It is ``d||theta||_1/dtheta * theta``, of the Hadamard form, but ``||theta||_1`` is not a function
    of the network's output, and the conservation laws fail for it.)

    >>> from utils.models import mlp
    >>> net = mlp([2, 1], bias=False); _ = net.fc1.weight.data.copy_(torch.tensor([[-2.0, 0.5]]))
    >>> magnitude_scores(net)["fc1.weight"]
    tensor([[2.0000, 0.5000]], dtype=torch.float64)
    """
    work = _scoring_copy(model, _check_model_masks(model, masks))
    return {n: p.detach().abs() for n, p in _weights(work)}


def snip_scores(model: nn.Module, data: Data, masks: Masks | None = None, *,
                loss_fn: Callable | None = None) -> Masks:
    """SNIP's connection sensitivity ``|dL/dtheta * theta|`` {cite}`lee2019snip` on the batch ``data``.

    The absolute value of the synaptic saliency with ``R = L`` (the loss ``loss_fn(logits, y)``,
    default the mean cross-entropy). SNIP normalises by the total, which does not change the
    ranking, so it is omitted here.
    """
    work = _scoring_copy(model, _check_model_masks(model, masks))
    x, y, loss_fn = _loss_batch(work, data, loss_fn, "snip")
    weights = _weights(work)
    grads = torch.autograd.grad(loss_fn(work(x), y), [p for _, p in weights])
    return {n: (g * p).detach().abs() for (n, p), g in zip(weights, grads)}


def grasp_scores(model: nn.Module, data: Data, masks: Masks | None = None, *,
                 loss_fn: Callable | None = None, temperature: float = GRASP_TEMPERATURE) -> Masks:
    """GraSP {cite}`wang2020grasp`: ``(H g) * theta``, ``g = dL/dtheta``, ``H`` the Hessian of ``L``,
    with ``L = loss_fn(logits / temperature, y)``; **high scores are kept**.

    *Sign.* Wang et al. define the score ``S(-theta) = -theta * (H g)`` (their eq. 8) and remove the
    weights with the *largest* ``S``; their code (``alecwangcq/GraSP``, ``pruner/GraSP.py``) computes
    ``-theta * Hg`` and keeps ``S <= `` the threshold of the top fraction. The Synaptic-Flow reference code
    (``ganguli-lab/Synaptic-Flow``, ``Pruners/pruners.py``, class ``GraSP``) scores ``+Hg * theta``
    ("negate to remove top percent") and keeps the largest. Both keep the same weights: the largest
    ``(Hg) * theta``. We follow the Synaptic-Flow form because on this interface high scores are kept
    for every method, so the five methods share one selection rule.

    *Temperature.* Both codes divide the logits by ``T = 200`` before the cross-entropy (the GraSP
    authors found the softmax saturates otherwise); so do we. ``T`` changes ``Hg`` beyond a constant
    factor (it enters the softmax), so it can change the ranking. Neither code's normalisation by
    ``|sum S|`` changes the ranking of a one-batch score, so it is omitted.

    ``Hg`` is a Hessian-vector product: differentiate ``<stop_grad(g), g>`` once more.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    work = _scoring_copy(model, _check_model_masks(model, masks))
    x, y, loss_fn = _loss_batch(work, data, loss_fn, "grasp")
    weights = _weights(work)
    tensors = [p for _, p in weights]
    g0 = torch.autograd.grad(loss_fn(work(x) / temperature, y), tensors)
    grads = torch.autograd.grad(loss_fn(work(x) / temperature, y), tensors, create_graph=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g0, grads))
    hg = torch.autograd.grad(z, tensors, allow_unused=True)
    return {n: (torch.zeros_like(p) if h is None else h * p).detach() for (n, p), h in zip(weights, hg)}


class SynFlowScorer:
    """The linearised float64 copy of a model (every parameter replaced by its absolute value, biases
    included), reused across the iterations of Algorithm 1: ``scorer(masks)`` returns the SynFlow
    scores of the masked network."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None):
        self.work = _scoring_copy(model, None)
        with torch.no_grad():
            for p in self.work.parameters():
                p.abs_()  # biases too: they carry flow unless they are zero
        self.weights = _weights(self.work)
        self.abs0: dict[str, torch.Tensor] | None = None      # |theta_0|, kept once masks arrive
        self.x = torch.ones((1, *input_shape_of(model, input_shape)), dtype=torch.float64,
                            device=next(self.work.parameters()).device)

    def __call__(self, masks: Masks | None) -> Masks:
        if self.abs0 is None:
            self.abs0 = {name: p.detach().clone() for name, p in self.weights}
        with torch.no_grad():
            for name, p in self.weights:
                p.copy_(self.abs0[name] if masks is None else self.abs0[name] * masks[name].to(p))
        R = self.work(self.x).sum()
        grads = torch.autograd.grad(R, [p for _, p in self.weights])
        return {name: (g * p).detach() for (name, p), g in zip(self.weights, grads)}


def synflow_scores(model: nn.Module, masks: Masks | None = None, *,
                   input_shape: tuple[int, ...] | None = None) -> Masks:
    """SynFlow scores ``dR_SF/dtheta * theta`` (notes eq. 7, ``eq-synflow-score``) {cite}`tanaka2020synflow`.

    Returns ``{param name: float64 tensor of the weight's shape}``, every score >= 0; weights masked by
    ``masks`` score exactly 0. Computed on a float64 copy in eval mode with ``|theta|`` for every
    parameter (biases included, as in the reference implementation: nonzero biases add flow that
    eq. 7 does not have; without biases it is eq. 7 exactly) and an all-ones input of shape
    ``input_shape`` (inferred for a model that starts with ``nn.Linear``). The model is left unchanged.

    >>> from utils.models import mlp
    >>> net = mlp([2, 2, 1], bias=False)
    >>> _ = net.fc1.weight.data.fill_(1.0); _ = net.fc2.weight.data.fill_(-2.0)
    >>> synflow_scores(net)["fc2.weight"]   # R_SF = 8; each output weight carries half of it
    tensor([[4., 4.]], dtype=torch.float64)
    """
    masks = _check_model_masks(model, masks)
    return SynFlowScorer(model, input_shape)(masks)


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
    work = _scoring_copy(model, _check_model_masks(model, masks))
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
        x = torch.ones((1, *input_shape_of(model, input_shape)), dtype=torch.float64,
                       device=next(work.parameters()).device)
        return float(work(x).sum())


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


# --------------------------------------------------------------------------------------------------
# one interface
# --------------------------------------------------------------------------------------------------

#: The lookup table of methods: ``SCORERS[method](model, data, masks, loss_fn, seed, input_shape)``.
SCORERS: dict[str, Callable[..., Masks]] = {
    "random": lambda model, data, masks, loss_fn, seed, input_shape: random_scores(model, seed=seed),
    "magnitude": lambda model, data, masks, loss_fn, seed, input_shape: magnitude_scores(model, masks),
    "snip": lambda model, data, masks, loss_fn, seed, input_shape: snip_scores(model, data, masks,
                                                                               loss_fn=loss_fn),
    "grasp": lambda model, data, masks, loss_fn, seed, input_shape: grasp_scores(model, data, masks,
                                                                                 loss_fn=loss_fn),
    "synflow": lambda model, data, masks, loss_fn, seed, input_shape: synflow_scores(
        model, masks, input_shape=input_shape),
}
METHODS = tuple(SCORERS)


def check_method(method: str) -> str:
    if method not in SCORERS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def score(model: nn.Module, method: str, data: Data = None, masks: Masks | None = None, *,
          loss_fn: Callable | None = None, seed: int = 0, input_shape: tuple[int, ...] | None = None) -> Masks:
    """Score every prunable parameter of ``model`` with ``method`` (one of :data:`METHODS`); high scores
    are kept.

    ``"snip"`` and ``"grasp"`` need ``data`` (a tuple ``(x, y)`` or a :class:`utils.data.Split`, whose
    training set is used) and use ``loss_fn(logits, y)`` (default cross-entropy). ``masks`` (from a
    previous pruning step; :func:`utils.masking.check_masks`) zero weights before scoring; masked
    weights score 0 for every method but ``"random"``. ``seed`` seeds ``"random"``. Returns
    ``{param name: float64 tensor of the weight's shape}``; the model is not changed.

    >>> from utils.models import mlp
    >>> s = score(mlp([4, 3, 2]), "magnitude")
    >>> sorted(s), s["fc1.weight"].shape, s["fc1.weight"].dtype
    (['fc1.weight', 'fc2.weight'], torch.Size([3, 4]), torch.float64)
    """
    check_method(method)
    _check_model_masks(model, masks)
    if method == "random":
        check_int(seed, "seed", 0)
    return SCORERS[method](model, data, masks, loss_fn, seed, input_shape)
