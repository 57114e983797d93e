"""Per-example gradient norms at the cost of one backward pass {cite}`goodfellow2015perexample`.

Chapter ``chapters/06_per_example_gradients.ipynb``; notes section 4.1, eqs 8-10.

For a linear layer ``z = W h`` (the bias is an extra column of ``W`` with a 1 appended to ``h``,
notes eq 8) the gradient of example ``j``'s loss is the rank-one matrix ``zbar_j h_j^T``, so its
squared Frobenius norm (notes eq 9) is ``||zbar_j||^2 ||h_j||^2`` (notes eq 10, the book's
``eq-pex-trick``). ``H`` is kept by a recorder in front of the layer's ``forward`` and
``Zbar = dC/dZ`` is what an ordinary backward pass of ``C = sum_j L^(j)`` computes anyway, so every
per-example norm costs ``O(B (d + p))`` extra work per layer instead of the ``B x P`` numbers of
the materialised per-example gradients.

When a layer's weights are shared over positions (an input of shape ``(B, T, d)``, an
``nn.Conv2d``, whose patches are the positions (``eq-pex-conv``), a layer called twice) the
gradient is a sum of ``T`` outer products and the squared norm is the Gram-matrix form
``sum_{t,s} (zbar_t . zbar_s)(h_t . h_s)`` (``eq-pex-gram``, the "ghost norm"), or, past the
crossover ``T (d + p) > d p`` (``eq-pex-crossover``), the norm of the materialised per-layer
gradient (for a convolution: one grouped convolution backward).

Public API
----------
* :func:`per_example_grad_norms`: ``(B,)`` (or ``(B, n_layers)``) norms for a batch, no side
  effects on ``.grad``.
* :class:`NormTracker`: the capture engine (a recorder in front of each layer's ``forward``
  keeps ``H``, a pre-hook on the autograd node of each layer's output keeps ``Zbar``). Per step
  via :func:`track_norms`, or attached once across steps (``attach`` / ``detach`` /
  ``with tracker:``); ``norms``, ``sq_norms`` and ``captured`` (every layer's ``(H, Zbar)`` in
  the sum convention, as :class:`Captured`, for clipping).
* :func:`track_norms`: context manager; the ordinary ``loss.backward()`` of a training step also
  yields the per-example norms.
* :func:`per_example_grads`: the materialised per-example gradients via ``torch.func`` (reference
  and for the clipping chapter), and :func:`norms_from_grads` to take their norms.
* :func:`layer_sq_norms`: the trick for one layer from ``H`` and ``Zbar`` (outer or Gram form);
  :func:`gram_is_cheaper`: the crossover rule.
* :func:`trainable_layers` (``nn.Linear`` and ``nn.Conv2d``) and :func:`trainable_linear_layers`
  (``nn.Linear`` only): the layers covered, in module order.
* :func:`flip_labels`, :func:`train_with_norm_snapshots`, :func:`top_k_precision`,
  :func:`rank_by_norm_and_loss`: the mislabelled-examples experiment and its loss baseline.
* :func:`bench_table`: the chapter's benchmark table from ``results/per_example_bench.json``.
* :func:`plot_norm_snapshot`: explorer panel (norm histogram and the top-k examples at one step).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import default_progress
from .plotting import PALETTE

__all__ = [
    "trainable_linear_layers",
    "trainable_layers",
    "layer_sq_norms",
    "gram_is_cheaper",
    "per_example_grad_norms",
    "Captured",
    "NormTracker",
    "track_norms",
    "per_example_grads",
    "norms_from_grads",
    "flip_labels",
    "top_k_precision",
    "bench_table",
    "rank_by_norm_and_loss",
    "NormRun",
    "train_with_norm_snapshots",
    "plot_norm_snapshot",
]

_METHODS = ("auto", "outer", "gram")
_REDUCTIONS = ("sum", "mean")


# ----------------------------------------------------------------------------------------------
# which layers are covered
# ----------------------------------------------------------------------------------------------

def _trainable(model: nn.Module, kinds: tuple[type, ...], what: str) -> list[tuple[str, nn.Module]]:
    """Layers of exactly the types ``kinds`` that own a trainable parameter; any other raises."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    found = []
    for name, module in model.named_modules():
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        label = name or "<the model itself>"
        if type(module) not in kinds:
            raise ValueError(
                f"model contains a trainable layer per-example norms cannot handle: {label!r} "
                f"({type(module).__name__}); only {what} layers are supported "
                "(freeze it with requires_grad_(False), or use per_example_grads)")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"Conv2d layer {label!r} has groups={module.groups}; only groups=1 is "
                             "supported (freeze it, or use per_example_grads)")
        found.append((name, module))
    if not found:
        raise ValueError(f"model has no trainable {what} layer")
    return found


def trainable_linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers of ``model`` with at least one trainable parameter, in forward order.

    Raises ``TypeError`` if ``model`` is not an ``nn.Module``, and ``ValueError`` naming the layer if
    the model holds a trainable parameter in any other kind of layer (a convolution, a norm layer,
    an embedding, a bare ``nn.Parameter``). Also ``ValueError`` if no trainable linear layer is
    left. :func:`trainable_layers` also accepts ``nn.Conv2d``.

    >>> from utils.models import mlp
    >>> [name for name, _ in trainable_linear_layers(mlp([4, 3, 2]))]
    ['fc1', 'fc2']
    """
    return _trainable(model, (nn.Linear,), "torch.nn.Linear")


def trainable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers the norm trick covers: trainable ``nn.Linear`` and ``nn.Conv2d``, in module order.

    A convolution is a linear layer shared over the output positions (``eq-pex-conv``); ``groups``
    must be 1. Any other layer with a trainable parameter (a norm layer, an embedding, a bare
    ``nn.Parameter``) raises ``ValueError`` naming it: eq 10 would silently miss it. Freeze it
    (``requires_grad_(False)``) or use :func:`per_example_grads`.

    >>> from utils.pruning import digits_convnet
    >>> [type(m).__name__ for _, m in trainable_layers(digits_convnet())]
    ['Conv2d', 'Conv2d', 'Conv2d', 'Linear']
    """
    return _trainable(model, (nn.Linear, nn.Conv2d), "torch.nn.Linear and torch.nn.Conv2d")


# ----------------------------------------------------------------------------------------------
# one layer: eq 10 and its Gram-matrix form
# ----------------------------------------------------------------------------------------------

def layer_sq_norms(h: torch.Tensor, zbar: torch.Tensor, *, weight: bool = True, bias: bool = True,
                   method: str = "auto") -> torch.Tensor:
    """Squared Frobenius norms ``||dL^(j)/dW||^2`` of one linear layer, for every example ``j``.

    ``h`` is the layer's input and ``zbar`` the gradient of the cost ``C = sum_j L^(j)`` with respect
    to the layer's output (``Zbar``). Shapes: ``h (B, d)`` and ``zbar (B, p)`` for a layer applied
    once per example, giving notes eq 10 (``eq-pex-trick``)::

        ||zbar_j||^2 (||h_j||^2 + 1)          # "+ 1": the bias, a column of W fed by a constant 1

    or ``h (B, T, d)`` and ``zbar (B, T, p)`` when the weights are shared over ``T`` positions, where
    the gradient is ``sum_t zbar_t h_t^T`` and two forms are available (``eq-pex-gram``):

    * ``method="gram"``: ``sum_{t,s} (zbar_t . zbar_s)(h_t . h_s + 1)``, cost ``O(B T^2 (d + p))``;
    * ``method="outer"``: materialise ``sum_t zbar_t h_t^T`` per example, cost ``O(B T d p)``;
    * ``method="auto"`` (default) picks the cheaper one: Gram when ``T (d + p) <= d p``.

    ``weight`` / ``bias`` say which of the two parameters are trainable (counted). Returns a
    ``(B,)`` tensor (clamped at 0: the Gram form can round to a tiny negative number).

    >>> h, zbar = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 2.0, 2.0]])
    >>> layer_sq_norms(h, zbar, bias=False)            # 3^2 * 5^2
    tensor([225.])
    """
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"h must be a torch.Tensor, got {type(h).__name__}")
    if not isinstance(zbar, torch.Tensor):
        raise TypeError(f"zbar must be a torch.Tensor, got {type(zbar).__name__}")
    if h.ndim not in (2, 3):
        raise ValueError(f"h must have shape (B, d) or (B, T, d), got {tuple(h.shape)}")
    if zbar.ndim != h.ndim or zbar.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"zbar must have shape {tuple(h.shape[:-1]) + ('p',)} to match h "
                         f"{tuple(h.shape)}, got {tuple(zbar.shape)}")
    if not isinstance(weight, bool) or not isinstance(bias, bool):
        raise TypeError("weight and bias must be bools")
    if not (weight or bias):
        raise ValueError("at least one of weight and bias must be True")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    return _layer_sq_norms(h.detach(), zbar.detach(), weight, bias, method)


def gram_is_cheaper(t: int, d: int, p: int) -> bool:
    """The flop rule of ``eq-pex-crossover``: Gram form iff ``T (d + p) <= d p``.

    ``t`` positions, ``d`` inputs (bias column included), ``p`` outputs of a shared layer.

    >>> gram_is_cheaper(32, 64, 64), gram_is_cheaper(33, 64, 64)
    (True, False)
    """
    for name, value in (("t", t), ("d", d), ("p", p)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return t * (d + p) <= d * p


def _sq(t: torch.Tensor) -> torch.Tensor:
    """Row-wise squared Euclidean norms over the last axis (no temporary the size of ``t``)."""
    return torch.linalg.vector_norm(t, dim=-1).square()


def _layer_sq_norms(h: torch.Tensor, zbar: torch.Tensor, weight: bool, bias: bool,
                    method: str) -> torch.Tensor:
    """:func:`layer_sq_norms` without the input checks."""
    if h.ndim == 2:                                             # eq-pex-trick (notes eq 10)
        if weight:
            return _sq(zbar) * (_sq(h) + 1.0) if bias else _sq(zbar) * _sq(h)
        return _sq(zbar)
    t, d, p = h.shape[1], h.shape[2] + int(bias), zbar.shape[2]
    if method == "auto":
        method = "gram" if t * (d + p) <= d * p else "outer"
    if method == "gram":                                        # eq-pex-gram
        gz = zbar @ zbar.transpose(1, 2)                        # (B, T, T): zbar_t . zbar_s
        gh = h @ h.transpose(1, 2) if weight else torch.zeros_like(gz)
        if bias:
            gh = gh + 1.0
        return (gz * gh).sum(dim=(1, 2)).clamp_min(0.0)
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    if weight:
        g = zbar.transpose(1, 2) @ h                            # (B, p, d): sum_t zbar_t h_t^T
        total = total + torch.linalg.vector_norm(g, dim=(1, 2)).square()
    if bias:
        total = total + _sq(zbar.sum(dim=1))                    # (B, p): sum_t zbar_t
    return total


def _positions(layer: nn.Module, h: torch.Tensor, zbar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One call's ``(H, Zbar)`` as ``(B, d), (B, p)`` or ``(B, T, d), (B, T, p)`` (eq-pex-conv).

    A linear layer's middle axes become positions; a convolution is unfolded into its ``T`` input
    patches of ``d = C_in k_h k_w`` numbers, and its output gradient into ``T`` rows of ``p``.
    """
    batch = h.shape[0]
    if isinstance(layer, nn.Conv2d):
        h, padding = _padded(layer, h)
        patches = F.unfold(h, layer.kernel_size, dilation=layer.dilation, padding=padding,
                           stride=layer.stride)                 # (B, d, T)
        return patches.transpose(1, 2), zbar.reshape(batch, zbar.shape[1], -1).transpose(1, 2)
    if h.ndim == 2:
        return h, zbar
    return h.reshape(batch, -1, h.shape[-1]), zbar.reshape(batch, -1, zbar.shape[-1])


def _trainable_parts(layer: nn.Module) -> tuple[bool, bool]:
    """Whether the layer's weight and its bias are trainable."""
    return layer.weight.requires_grad, layer.bias is not None and layer.bias.requires_grad


def _padded(layer: nn.Conv2d, h: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | int]:
    """A convolution's input and the padding left for the convolution itself to apply."""
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        return F.pad(h, layer._reversed_padding_repeated_twice, mode=mode), 0
    return h, layer.padding


def _conv_sq_norms(layer: nn.Conv2d, h: torch.Tensor, zbar: torch.Tensor, weight: bool,
                   bias: bool) -> torch.Tensor:
    """``||dL^(j)/dW||^2`` of a convolution by materialising each example's weight gradient.

    ``eq-pex-shared`` summed over the positions is the gradient of a convolution, so the ``B``
    per-example gradients are the weight gradient of *one* convolution with ``groups = B`` whose
    channels are the examples' channels side by side (what ``torch.func.vmap`` does too); the
    bias part is ``||sum_t zbar_t||^2``. ``h (B, C, H, W)``, ``zbar (B, p, H', W')``.
    """
    batch = h.shape[0]
    total = torch.zeros(batch, dtype=zbar.dtype, device=zbar.device)
    if weight:
        h, padding = _padded(layer, h)
        c, p = h.shape[1], zbar.shape[1]
        g = torch.nn.grad.conv2d_weight(
            h.reshape(1, batch * c, *h.shape[2:]), (batch * p, c, *layer.kernel_size),
            zbar.reshape(1, batch * p, *zbar.shape[2:]), stride=layer.stride, padding=padding,
            dilation=layer.dilation, groups=batch)            # (B p, C, k_h, k_w)
        total = total + torch.linalg.vector_norm(g.reshape(batch, -1), dim=1).square()
    if bias:
        total = total + _sq(zbar.sum(dim=(2, 3)))
    return total


def _check_losses(losses, batch: int) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor):
        raise TypeError("loss_fn must return a torch.Tensor of per-example losses, got "
                        f"{type(losses).__name__}")
    if losses.ndim == 0:
        raise ValueError("loss_fn returned a scalar; it must return per-example losses of shape "
                         "(B,) (e.g. F.cross_entropy(..., reduction='none'))")
    if tuple(losses.shape) != (batch,):
        raise ValueError(f"loss_fn must return per-example losses of shape (B,) = ({batch},), "
                         f"got {tuple(losses.shape)}")
    return losses


def _check_batch(x, y) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a batch dimension B >= 1 first, got shape {tuple(x.shape)}")
    if isinstance(y, torch.Tensor) and (y.ndim < 1 or y.shape[0] != x.shape[0]):
        raise ValueError(f"y must hold one target per example of x (B = {x.shape[0]}), "
                         f"got shape {tuple(y.shape)}")
    return int(x.shape[0])


# ----------------------------------------------------------------------------------------------
# the capture engine
# ----------------------------------------------------------------------------------------------

class Captured(NamedTuple):
    """One tracked layer's ingredients of a step, in the convention of ``C = sum_j L^(j)``.

    ``h`` is ``(B, d)`` or, for shared weights, ``(B, T, d)`` (a convolution unfolded into its
    patches, several calls of one layer stacked as positions); ``zbar`` is ``(B, p)`` or
    ``(B, T, p)``. ``weight`` / ``bias`` say which parameters are trainable. The per-example
    gradient of the layer is ``sum_t zbar_t [h_t, 1]^T`` (``eq-pex-shared``).
    """

    name: str
    layer: nn.Module
    h: torch.Tensor
    zbar: torch.Tensor
    weight: bool
    bias: bool


class NormTracker:
    """Collects ``H`` (layer inputs) and ``Zbar`` (gradients of the layer outputs) in ordinary steps.

    Covers the layers of :func:`trainable_layers` (``nn.Linear``, ``nn.Conv2d``). Two ways to use it:

    * per step, with :func:`track_norms` (attaches on entry, detaches on exit);
    * across steps: ``tracker = NormTracker(model, "mean").attach()`` once, then every step runs
      its ordinary forward and ``backward()`` and reads :meth:`norms`; the first tracked forward
      pass after :meth:`norms` (or :meth:`captured`) was read starts a new step, so nothing is
      rebuilt per step. :meth:`detach` (or leaving a ``with tracker:`` block) takes it out again.

    ``reduction`` says how the backpropagated loss was reduced over the batch (``"sum"``, the
    notes' ``C = sum_j L^(j)``, or ``"mean"``); the norms are those of ``dL^(j)/dtheta`` either
    way. ``layer_names`` lists the tracked layers (the columns of ``norms(per_layer=True)``).

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> model = mlp([4, 3, 2])
    >>> tracker = NormTracker(model, "mean").attach()
    >>> for step in range(2):
    ...     F.cross_entropy(model(torch.randn(5, 4)), torch.zeros(5, dtype=torch.long)).backward()
    ...     norms = tracker.norms()
    >>> tracker.detach(); norms.shape
    torch.Size([5])
    """

    def __init__(self, model: nn.Module, reduction: str = "sum"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self._layers = trainable_layers(model)
        self.reduction = reduction
        self.layer_names = [name for name, _ in self._layers]
        self._calls: dict[str, list[list]] = {name: [] for name in self.layer_names}
        self._recorders: list[_InputRecorder] = []
        self._read = False              # set when the norms of the recorded step were read

    # capture ----------------------------------------------------------------------------------
    def attach(self) -> "NormTracker":
        """Put a recorder in front of every tracked layer's ``forward`` (idempotent); returns self.

        The recorder (:class:`_InputRecorder`) is set as the layer's instance attribute
        ``forward``, not registered as a module forward hook: a module without hooks keeps
        ``nn.Module``'s fast call path, and with a forward hook the capture was the larger part
        of the fixed cost of tracking a small model (``benchmarks/bench_per_example.py``, the
        "capture only" row).
        """
        if not self._recorders:
            self._recorders = [_InputRecorder(self, layer, self._calls[name])
                               for name, layer in self._layers]
        return self

    def detach(self) -> None:
        """Take the recorders out again; the records of the last step stay readable."""
        for recorder in self._recorders:
            recorder.remove()
        self._recorders = []

    _attach, _detach = attach, detach          # the names used before the engine was public

    def __enter__(self) -> "NormTracker":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        """Whether the recorders are in place (between :meth:`attach` and :meth:`detach`)."""
        return bool(self._recorders)

    def _record(self, calls: list[list], h: torch.Tensor, output: torch.Tensor) -> None:
        """One tracked call: keep ``H`` now, ``Zbar`` when the backward pass reaches ``output``.

        ``Zbar`` is the gradient flowing into the autograd node that made ``output``, caught by a
        pre-hook on that node: it is the gradient of the layer's own output even when a later
        in-place operation (``ReLU(inplace=True)``) rewrites the tensor.
        """
        if not (isinstance(output, torch.Tensor) and output.requires_grad):
            return                             # evaluation under no_grad: nothing to track
        if self._read:                         # the previous step was read: a new step begins
            self.reset()
        record = [h.detach(), None]
        calls.append(record)
        output.grad_fn.register_prehook(partial(_keep_zbar, record, output.output_nr))

    def reset(self) -> None:
        """Forget what was recorded (happens by itself at the first forward after a read)."""
        for records in self._calls.values():
            records.clear()
        self._read = False

    # reading ----------------------------------------------------------------------------------
    def _records(self, name: str) -> list[list]:
        records = self._calls[name]
        if not records:
            raise RuntimeError(f"layer {name!r} was not called with gradients enabled while the "
                               "tracker was attached; run the forward pass inside the with-block")
        if any(record[1] is None for record in records):
            raise RuntimeError(f"the backward pass did not reach layer {name!r}: call "
                               "loss.backward() inside the with-block before norms(), and make "
                               "sure the layer's output affects the loss")
        return records

    def _batch(self, name: str, records: list[list], batch: int | None) -> int:
        """The batch size of a layer's calls, checked against the layers before it."""
        if any(r[0].ndim < 2 for r in records):
            raise ValueError(f"layer {name!r} was called on an unbatched input; inputs must "
                             "be (B, ..., d)")
        sizes = [r[0].shape[0] for r in records]
        if len(set(sizes)) > 1:
            raise ValueError(f"layer {name!r} was called on batches of different sizes "
                             f"{sizes}; one batch per forward pass")
        if batch is not None and sizes[0] != batch:
            raise ValueError(f"layer {name!r} saw a batch of {sizes[0]} examples, "
                             f"the layers before it {batch}")
        return sizes[0]

    def _capture(self, layer: nn.Module, records: list[list],
                 batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's ``(H, Zbar)`` as positions (``_positions``), calls stacked, sum convention."""
        pairs = [_positions(layer, r[0], r[1]) for r in records]
        if len(pairs) == 1:
            h, z = pairs[0]
        else:      # one layer called several times shares its weights: calls are positions
            h = torch.cat([hh.reshape(batch, -1, hh.shape[-1]) for hh, _ in pairs], dim=1)
            z = torch.cat([zz.reshape(batch, -1, zz.shape[-1]) for _, zz in pairs], dim=1)
        return h, (z * batch if self.reduction == "mean" else z)

    def captured(self) -> list[Captured]:
        """Every tracked layer's ``(H, Zbar)`` of the recorded step (see :class:`Captured`).

        ``Zbar`` is rescaled to the convention ``C = sum_j L^(j)`` (times ``B`` for
        ``reduction="mean"``), so the per-example gradient of a layer is exactly
        ``sum_t zbar_t [h_t, 1]^T``: what clipping and other per-example quantities build on.
        """
        out, batch = [], None
        for name, layer in self._layers:
            records = self._records(name)
            batch = self._batch(name, records, batch)
            h, z = self._capture(layer, records, batch)
            out.append(Captured(name, layer, h, z, *_trainable_parts(layer)))
        self._read = True
        return out

    def _eq10_factors(self) -> tuple[int, list[list[torch.Tensor]]] | None:
        """The hot path: every layer an ``nn.Linear`` called once on a ``(B, d)`` input.

        Returns ``B`` and, per layer, the ``(B,)`` columns whose squares add up to its squared
        norms (``eq-pex-trick`` split as ``||zbar_j||^2 ||h_j||^2 + ||zbar_j||^2``, weight and
        bias): ``||zbar_j|| ||h_j||`` and ``||zbar_j||``. ``None`` when another form is needed,
        or when a record is incomplete (the general path then says what is wrong).
        """
        factors, batch = [], None
        for name, layer in self._layers:
            records = self._calls[name]
            if len(records) != 1 or type(layer) is not nn.Linear:
                return None
            h, zbar = records[0]
            if zbar is None or h.ndim != 2:
                return None
            if batch is None:
                batch = h.shape[0]
            elif h.shape[0] != batch:
                raise ValueError(f"layer {name!r} saw a batch of {h.shape[0]} examples, "
                                 f"the layers before it {batch}")
            z_norm = torch.linalg.vector_norm(zbar, dim=1)
            columns = []
            if layer.weight.requires_grad:
                columns.append(z_norm * torch.linalg.vector_norm(h, dim=1))
            if layer.bias is not None and layer.bias.requires_grad:
                columns.append(z_norm)
            factors.append(columns)
        return batch, factors

    def sq_norms(self) -> torch.Tensor:
        """Squared per-example, per-layer gradient norms ``(B, n_layers)`` of the recorded step."""
        with torch.no_grad():
            fast = self._eq10_factors()
            if fast is None:      # shared weights, convolutions, several calls
                return self._general_sq_norms()
            batch, factors = fast
            sq = torch.stack([torch.stack(cols, dim=1).square().sum(dim=1) for cols in factors],
                             dim=1)
            self._read = True
            return sq * float(batch) ** 2 if self.reduction == "mean" else sq

    def _general_sq_norms(self) -> torch.Tensor:
        """``(B, n_layers)`` squared norms, layer by layer, each by the cheaper form (eq-pex-crossover).

        A convolution called once whose flop rule prefers materialising gets its per-example
        weight gradients from one grouped convolution backward (``_conv_sq_norms``); every other
        layer goes through its positions and :func:`layer_sq_norms` (``"auto"``).
        """
        columns, batch = [], None
        for name, layer in self._layers:
            records = self._records(name)
            batch = self._batch(name, records, batch)
            weight, bias = _trainable_parts(layer)
            if isinstance(layer, nn.Conv2d) and len(records) == 1:
                h, zbar = records[0]
                t = zbar[0, 0].numel()
                d = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1] + int(bias)
                if not gram_is_cheaper(t, d, layer.out_channels):
                    scale = float(batch) ** 2 if self.reduction == "mean" else 1.0
                    columns.append(_conv_sq_norms(layer, h, zbar, weight, bias) * scale)
                    continue
            h, z = self._capture(layer, records, batch)
            columns.append(_layer_sq_norms(h, z, weight, bias, "auto"))
        self._read = True
        return torch.stack(columns, dim=1)

    def norms(self, per_layer: bool = False) -> torch.Tensor:
        """Per-example gradient norms ``(B,)`` (or ``(B, n_layers)``) of the recorded step.

        Eq 10 (``eq-pex-trick``) per layer, ``eq-pex-gram`` for shared weights and convolutions,
        ``eq-pex-total`` over the layers. With ``reduction="mean"`` the backpropagated cost was
        ``C = (1/B) sum_j L^(j)``, so ``Zbar`` is ``1/B`` times that of the sum and the norms are
        multiplied back by ``B``: the result is always ``||dL^(j)/dtheta||``, as
        :func:`per_example_grad_norms` returns. Reading the norms marks the step as done: the next
        tracked forward pass starts a new one.
        """
        if not isinstance(per_layer, bool):
            raise TypeError(f"per_layer must be a bool, got {type(per_layer).__name__}")
        if per_layer:
            return self.sq_norms().sqrt()
        with torch.no_grad():
            fast = self._eq10_factors()
            if fast is None:
                return self.sq_norms().sum(dim=1).sqrt()
            # eq-pex-total in one reduction: the norm of all layers' factor columns side by side
            batch, factors = fast
            total = torch.linalg.vector_norm(
                torch.stack([c for cols in factors for c in cols], dim=1), dim=1)
            self._read = True
            return total.mul_(batch) if self.reduction == "mean" else total


def _keep_zbar(record: list, index: int, grads: tuple[torch.Tensor, ...]) -> None:
    record[1] = grads[index]


class _InputRecorder:
    """Stands in for one layer's ``forward`` while a :class:`NormTracker` is attached.

    Calls the forward it replaced (the class's, or a wrapper set before it) and hands the
    layer's input ``H`` and output to the tracker. :meth:`remove` puts the replaced forward
    back; if something was set on top of the recorder meanwhile, the recorder stays in that
    chain but only passes calls through. A deep copy of a tracked model gets the plain
    forward, not a recorder feeding this tracker.
    """

    __slots__ = ("tracker", "layer", "calls", "inner", "own", "active")

    def __init__(self, tracker: NormTracker, layer: nn.Module, calls: list[list]):
        self.tracker, self.layer, self.calls, self.active = tracker, layer, calls, True
        self.own = vars(layer).get("forward")        # an instance forward set before us, if any
        self.inner = layer.forward
        object.__setattr__(layer, "forward", self)   # plain attribute: skip Module.__setattr__

    def __call__(self, *args, **kwargs):
        output = self.inner(*args, **kwargs)
        if self.active:
            h = args[0] if args else kwargs["input"]
            self.tracker._record(self.calls, h, output)
        return output

    def remove(self) -> None:
        self.active = False
        if vars(self.layer).get("forward") is self:
            if self.own is None:
                object.__delattr__(self.layer, "forward")
            else:
                object.__setattr__(self.layer, "forward", self.own)

    def __deepcopy__(self, memo: dict):
        return copy.deepcopy(self.inner, memo)


@contextmanager
def track_norms(model: nn.Module, reduction: str = "sum") -> Iterator[NormTracker]:
    """Context manager: the ordinary ``loss.backward()`` of a training step also yields norms.

    ``reduction`` says how the backpropagated loss was reduced over the batch, ``"sum"`` (the notes'
    ``C = sum_j L^(j)``) or ``"mean"`` (PyTorch's default); the norms are those of ``dL^(j)/dtheta``
    either way. A recorder in front of each layer's ``forward`` keeps ``H``, a pre-hook on the
    autograd node of each layer's output keeps ``Zbar``; the recorders are removed when the block
    exits, and the tracker keeps its records for :meth:`NormTracker.norms`.
    Eq 10 / ``eq-pex-trick`` per layer, ``eq-pex-gram`` for shared weights. For a loop of many
    steps, build one :class:`NormTracker` and keep it attached instead (less fixed cost).

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> model = mlp([4, 3, 2])
    >>> with track_norms(model, reduction="mean") as tracker:
    ...     loss = F.cross_entropy(model(torch.randn(5, 4)), torch.zeros(5, dtype=torch.long))
    ...     loss.backward()
    >>> tracker.norms().shape
    torch.Size([5])
    """
    tracker = NormTracker(model, reduction)
    with tracker:
        yield tracker


# ----------------------------------------------------------------------------------------------
# the whole model
# ----------------------------------------------------------------------------------------------

def per_example_grad_norms(model: nn.Module,
                           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           x: torch.Tensor, y: torch.Tensor, per_layer: bool = False) -> torch.Tensor:
    """Norms ``||dL^(j)/dtheta||`` of every example's gradient, from one forward and one backward.

    ``loss_fn(output, y)`` must return the per-example losses ``L^(j)``, shape ``(B,)`` (a scalar is
    rejected: the per-example information is gone). ``theta`` is every trainable parameter of the
    model's ``nn.Linear`` and ``nn.Conv2d`` layers (:func:`trainable_layers`; any other trainable
    layer raises ``ValueError`` naming it). Per layer, notes eq 10 (``eq-pex-trick``), or the Gram /
    outer form ``eq-pex-gram`` when a layer sees ``(B, T, d)`` inputs, is a convolution or is called
    more than once; the total is ``sqrt`` of the sum over layers (``eq-pex-total``).

    Returns ``(B,)``, or ``(B, n_layers)`` with ``per_layer=True`` (columns in the order of
    :func:`trainable_layers`). Detached; the parameters' ``.grad`` are left untouched.
    A trainable layer that ``model(x)`` does not use, or whose output does not reach the
    loss, raises ``RuntimeError`` (freeze it to exclude it).

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> model = mlp([4, 3, 2])
    >>> per_example_grad_norms(model, lambda o, t: F.cross_entropy(o, t, reduction="none"),
    ...                        torch.randn(5, 4), torch.zeros(5, dtype=torch.long)).shape
    torch.Size([5])
    """
    tracker = NormTracker(model, "sum")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(output, y), got "
                        f"{type(loss_fn).__name__}")
    if not isinstance(per_layer, bool):
        raise TypeError(f"per_layer must be a bool, got {type(per_layer).__name__}")
    batch = _check_batch(x, y)
    params = [p for _, layer in tracker._layers for p in layer.parameters(recurse=False)
              if p.requires_grad]
    with tracker, torch.enable_grad():
        losses = _check_losses(loss_fn(model(x), y), batch)
        # one ordinary backward pass of C = sum_j L^(j); the hooks on the layer outputs keep
        # Zbar = dC/dZ. autograd.grad (not backward) leaves the parameters' .grad untouched.
        torch.autograd.grad(losses.sum(), params, allow_unused=True)
    with torch.no_grad():
        return tracker.norms(per_layer=per_layer)


# ----------------------------------------------------------------------------------------------
# the materialised reference
# ----------------------------------------------------------------------------------------------

def per_example_grads(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Materialised per-example gradients ``dL^(j)/dtheta`` via ``torch.func.vmap(grad(...))``.

    Returns ``{parameter name: tensor of shape (B, *parameter.shape)}`` for every trainable
    parameter (of any layer type: this is the reference the trick is checked against, and what the
    clipping chapter clips). Costs ``B x P`` numbers of memory. ``loss_fn(output, y)`` returns
    per-example losses ``(B,)``; each example is run as a batch of one. Layers that mix examples
    (batch norm in training mode) are not per-example and fail inside ``torch.func``.

    >>> from utils.models import mlp
    >>> import torch.nn.functional as F
    >>> g = per_example_grads(mlp([4, 3, 2]), lambda o, t: F.cross_entropy(o, t, reduction="none"),
    ...                       torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    >>> g["fc1.weight"].shape
    torch.Size([5, 3, 4])
    """
    from torch.func import functional_call, grad, vmap

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(output, y), got {type(loss_fn).__name__}")
    batch = _check_batch(x, y)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor with one target per example, got {type(y).__name__}")
    # check the loss on the real batch first: a scalar loss_fn would vmap into a wrong answer
    with torch.no_grad():
        _check_losses(loss_fn(model(x), y), batch)
    trainable = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not trainable:
        raise ValueError("model has no trainable parameter")
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(params, xi, yi):
        out = functional_call(model, (params, frozen, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0)).sum()

    return vmap(grad(loss_one), in_dims=(None, 0, 0))(trainable, x, y)


def norms_from_grads(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` Euclidean norms of materialised per-example gradients (all parameters flattened).

    ``grads`` maps names to tensors of shape ``(B, ...)``, as :func:`per_example_grads` returns.

    >>> norms_from_grads({"w": torch.tensor([[3.0, 0.0], [0.0, 0.0]]), "b": torch.tensor([[4.0], [1.0]])})
    tensor([5., 1.])
    """
    if not isinstance(grads, dict) or not grads:
        raise ValueError("grads must be a non-empty dict of name -> tensor of shape (B, ...)")
    batch = None
    total = None
    for name, g in grads.items():
        if not isinstance(g, torch.Tensor) or g.ndim < 1:
            raise ValueError(f"grads[{name!r}] must be a tensor of shape (B, ...)")
        if batch is None:
            batch = g.shape[0]
        elif g.shape[0] != batch:
            raise ValueError(f"grads[{name!r}] has batch size {g.shape[0]}, expected {batch}")
        # the norm of each example's block, with no temporary the size of g
        g = g.detach()
        sq = g.square() if g.ndim == 1 else torch.linalg.vector_norm(
            g, dim=tuple(range(1, g.ndim))).square()
        total = sq if total is None else total + sq
    return total.sqrt()


# ----------------------------------------------------------------------------------------------
# what the norms are good for: an experiment
# ----------------------------------------------------------------------------------------------

def flip_labels(y: torch.Tensor, fraction: float, n_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of ``y`` with ``round(fraction * n)`` labels changed to a different, random class.

    Returns ``(noisy_labels, flipped)`` with ``flipped`` a bool mask ``(n,)``. ``fraction`` in [0, 1).

    >>> noisy, flipped = flip_labels(torch.arange(10) % 3, 0.2, 3)
    >>> int(flipped.sum()), bool((noisy[flipped] != (torch.arange(10) % 3)[flipped]).all())
    (2, True)
    """
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype != torch.int64:
        raise ValueError("y must be a 1-D int64 tensor of class labels")
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)[:round(fraction * len(y))]
    noisy = y.clone()
    shift = torch.randint(1, n_classes, (len(idx),), generator=g)
    noisy[idx] = (y[idx] + shift) % n_classes
    flipped = torch.zeros(len(y), dtype=torch.bool)
    flipped[idx] = True
    return noisy, flipped


def top_k_precision(scores, flagged, k: int) -> float:
    """Precision at ``k``: the fraction of the ``k`` highest ``scores`` whose ``flagged`` is True.

    ``scores`` and ``flagged`` are 1-D of the same length ``n`` (arrays or tensors); ``k`` in
    ``[1, n]``. Ties are broken by position (a stable sort), so the result is deterministic.

    >>> top_k_precision([0.1, 5.0, 3.0, 0.2], [False, True, False, True], k=2)
    0.5
    """
    scores = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores,
                        dtype=float)
    flagged = np.asarray(flagged.cpu() if isinstance(flagged, torch.Tensor) else flagged)
    if scores.ndim != 1 or flagged.shape != scores.shape or flagged.dtype != bool:
        raise ValueError("scores must be 1-D and flagged a bool array of the same length, got "
                         f"shapes {scores.shape} and {flagged.shape} ({flagged.dtype})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(scores):
        raise ValueError(f"k must be an int in [1, {len(scores)}], got {k!r}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(flagged[top].mean())


def rank_by_norm_and_loss(norms, losses, flagged, k: int = 50) -> dict[str, float]:
    """Mislabel detection by per-example gradient norm and by per-example loss, side by side.

    Returns ``{"norm": precision at k by norm, "loss": precision at k by loss,
    "corr_log": Pearson correlation of log norm and log loss}`` (both ``(n,)``, positive).

    >>> rank_by_norm_and_loss([1.0, 4.0, 2.0], [0.5, 2.0, 1.0], [False, True, False], k=1)
    {'norm': 1.0, 'loss': 1.0, 'corr_log': 1.0}
    """
    norms = np.asarray(norms.detach().cpu() if isinstance(norms, torch.Tensor) else norms,
                       dtype=float)
    losses = np.asarray(losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses,
                        dtype=float)
    if norms.shape != losses.shape or norms.ndim != 1:
        raise ValueError(f"norms and losses must be 1-D of the same length, got {norms.shape} "
                         f"and {losses.shape}")
    if not (norms > 0).all() or not (losses > 0).all():
        raise ValueError("norms and losses must be > 0 (their logs are correlated)")
    corr = float(np.corrcoef(np.log(norms), np.log(losses))[0, 1])
    return {"norm": top_k_precision(norms, flagged, k), "loss": top_k_precision(losses, flagged, k),
            "corr_log": round(corr, 12)}


_BENCH_LABELS = {"trick": "book, tracker", "trick_ctx": "book, track_norms", "hooks": "capture only",
                 "opacus_ghost": "Opacus ghost", "backpack": "BackPACK", "vmap": "torch.func vmap",
                 "opacus": "Opacus GSM", "naive": "loop over B"}


def bench_table(data: dict, threads: int = 1, timer: str = "cpu") -> str:
    """The chapter's benchmark table from ``results/per_example_bench.json`` (its ``data``).

    One row per method, one column per (model, batch): the method's median time divided by the
    ordinary step's, by CPU time (``timer="cpu"``) or wall clock (``"wall"``), at ``threads``
    threads; then the ordinary step's median in ms, each column's largest relative difference of
    any method from ``vmap`` (checked before timing), and, when measured, the peak-memory growth
    (MiB) of one call. The columns are aligned and lines fit in 79 characters.
    """
    if timer not in ("cpu", "wall"):
        raise ValueError(f"timer must be 'cpu' or 'wall', got {timer!r}")
    rows = [r for r in data.get("rows", []) if r["threads"] == threads]
    if not rows:
        raise ValueError(f"no benchmark rows at threads={threads!r}")
    key, med = ("cpu_ratio", "median_cpu_s") if timer == "cpu" else ("ratio", "median_s")
    short = {"small": "S", "large": "L", "conv": "C"}
    head = [f"{short[r['model']]}{r['batch']}" for r in rows]
    w = 21  # label column: the longest label, "+MiB torch.func vmap", and a space
    lines = [f"{'':{w}}" + "".join(f"{h:>8}" for h in head)]
    for m, label in _BENCH_LABELS.items():
        if m in rows[0][key]:
            lines.append(f"{label:{w}}" + "".join(f"{r[key][m]:>7.2f}x" for r in rows))
    lines.append(f"{'standard step, ms':{w}}" + "".join(f"{1e3 * r[med]['standard']:>8.2f}"
                                                          for r in rows))
    lines.append(f"{'max rel. diff':{w}}" + "".join(
        f"{max(r['max_rel_diff_vs_vmap'].values()):>8.0e}" for r in rows))
    if all("memory_MiB" in r for r in rows):
        for m in ("standard", "trick", "backpack", "opacus_ghost", "vmap", "opacus"):
            if m in rows[0]["memory_MiB"]:
                name = "ordinary step" if m == "standard" else _BENCH_LABELS[m].split(",")[0]
                label = f"+MiB {name}"
                lines.append(f"{label:{w}}" + "".join(
                    f"{r['memory_MiB'][m]:>8.0f}" if r["memory_MiB"][m] is not None
                    else f"{'-':>8}" for r in rows))
    return "\n".join(lines)


@dataclass
class NormRun:
    """What :func:`train_with_norm_snapshots` recorded."""

    snapshots: dict[int, np.ndarray] = field(default_factory=dict)   # step -> (n_probe,) norms
    step: list[int] = field(default_factory=list)                     # every optimizer step
    loss: list[float] = field(default_factory=list)                   # minibatch mean loss
    batch_norm_median: list[float] = field(default_factory=list)      # median per-example norm in the batch
    batch_norm_max: list[float] = field(default_factory=list)


def train_with_norm_snapshots(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 600,
                              batch_size: int = 64, lr: float = 0.05, momentum: float = 0.9,
                              snapshot_every: int = 30, probe: torch.Tensor | None = None, seed: int = 0,
                              progress: bool | None = None) -> NormRun:
    """Train ``model`` in place (SGD, mean cross-entropy) and watch its per-example gradient norms.

    One :class:`NormTracker` stays attached for the whole loop, so every ordinary
    ``loss.backward()`` also gives the per-example norms of the minibatch (their median and max are recorded). At step 0 and every
    ``snapshot_every`` steps, :func:`per_example_grad_norms` measures the norms of a fixed probe set
    (``x[probe]``, default all of ``x``). Minibatches come from a generator seeded by ``seed``.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("snapshot_every", snapshot_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    _check_batch(x, y)
    progress = default_progress() if progress is None else progress
    ce = lambda out, t: nn.functional.cross_entropy(out, t, reduction="none")  # noqa: E731
    probe = torch.arange(len(x)) if probe is None else probe
    xp, yp = x[probe], y[probe]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    run = NormRun()
    run.snapshots[0] = per_example_grad_norms(model, ce, xp, yp).numpy()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="training", leave=False)
    with NormTracker(model, reduction="mean") as tracker:     # one tracker for every step
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(x), (batch_size,), generator=g)
            opt.zero_grad(set_to_none=True)
            tracker.reset()                  # forget the probe pass of the last snapshot
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            norms = tracker.norms()
            run.step.append(step)
            run.loss.append(float(loss.detach()))
            run.batch_norm_median.append(float(norms.median()))
            run.batch_norm_max.append(float(norms.max()))
            if step % snapshot_every == 0 or step == steps:
                run.snapshots[step] = per_example_grad_norms(model, ce, xp, yp).numpy()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return run


# ----------------------------------------------------------------------------------------------
# explorer panel
# ----------------------------------------------------------------------------------------------

def plot_norm_snapshot(fig, step: int, snapshots: dict[int, np.ndarray], images: np.ndarray,
                       labels: np.ndarray, k: int = 6, flipped: np.ndarray | None = None,
                       image_shape: tuple[int, int] = (8, 8), bins: int = 40) -> None:
    """Explorer panel: the per-example norm histogram at training ``step`` and its top-``k`` examples.

    ``snapshots`` maps training steps to ``(n,)`` arrays of per-example gradient norms of a fixed set
    of ``n`` examples (``images (n, prod(image_shape))``, ``labels (n,)``); ``step`` is snapped to the
    nearest recorded step. ``flipped`` (bool ``(n,)``) marks examples whose label was corrupted:
    they are drawn in orange in the histogram and their titles are marked.
    """
    if not snapshots:
        raise ValueError("snapshots must be a non-empty dict of step -> norms")
    steps = np.array(sorted(snapshots))
    nearest = int(steps[np.argmin(np.abs(steps - step))])
    norms = np.asarray(snapshots[nearest], dtype=float)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(norms):
        raise ValueError(f"k must be an int in [1, {len(norms)}], got {k!r}")
    left, right = fig.subfigures(1, 2, width_ratios=[1.25, 1])
    ax = left.subplots()
    all_norms = np.concatenate([np.asarray(v, dtype=float) for v in snapshots.values()])
    lo, hi = max(all_norms[all_norms > 0].min(), 1e-6), all_norms.max()
    edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
    clipped = np.clip(norms, lo, hi)
    if flipped is None:
        ax.hist(clipped, bins=edges, color=PALETTE[0])
    else:
        flipped = np.asarray(flipped, dtype=bool)
        ax.hist([clipped[~flipped], clipped[flipped]], bins=edges, stacked=True,
                color=[PALETTE[0], PALETTE[1]], label=["clean label", "flipped label"])
        ax.legend(fontsize="x-small")
    ax.set_xscale("log")
    ax.set_xlabel(r"per-example gradient norm $\|\nabla_\theta L^{(j)}\|$")
    ax.set_ylabel("number of examples")
    ax.set_title(f"step {nearest}", fontsize="small")
    top = np.argsort(-norms)[:k]
    ncols = math.ceil(k / 2) if k > 1 else 1
    axes = np.atleast_1d(right.subplots(2 if k > 1 else 1, ncols)).ravel()
    for a in axes:
        a.axis("off")
    for a, idx in zip(axes, top):
        a.imshow(np.asarray(images[idx]).reshape(image_shape), cmap="gray_r")
        mark = "*" if flipped is not None and flipped[idx] else ""
        a.set_title(f"y={int(labels[idx])}{mark}\n{norms[idx]:.2g}", fontsize="x-small")
