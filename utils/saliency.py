"""Synaptic saliency and its conservation laws (chapter ``02_saliency``).

A *synaptic saliency* is a score of the form ``S(theta) = dR/dtheta * theta`` (notes eq. 5,
``eq-saliency-saliency``), where ``R`` is a scalar function of the network's output. For a
feed-forward network with homogeneous activations (``phi(z) = phi'(z) z``: ReLU, LeakyReLU, identity)
it is conserved:

* neuron-wise (Theorem 1, ``thm-saliency-neuron``): the saliency flowing *into* a hidden neuron (its
  incoming weights and its bias) equals the saliency flowing *out* of it (its outgoing weights);
* network-wise (Theorem 2, ``thm-saliency-network``): without biases, the total saliency of every set
  of weights that exactly separates input from output, e.g. one weight matrix, equals
  ``<dR/dx, x> = <dR/dy, y>``.

This module computes the saliency of any model, the per-neuron and per-layer sums the theorems are
about, the quantities on their right-hand sides and the defect that appears when the activation is not
homogeneous. The pruning scores the chapter compares (magnitude, SNIP, GraSP, SynFlow) are the book's
one set of scorers, :func:`utils.pruning.score`, shared with the SynFlow chapter. The
network-level functions work on ``nn.Sequential`` stacks of ``nn.Linear`` layers with elementwise
activations in between, as built by :func:`utils.models.mlp` or :func:`saliency_mlp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

from .models import mlp
from .plotting import PALETTE

__all__ = [
    "SALIENCY_ACTIVATIONS",
    "saliency_mlp",
    "synaptic_saliency",
    "input_output_saliency",
    "NeuronFlows",
    "neuron_flows",
    "neuron_flows_from_scores",
    "layer_totals",
    "bias_totals",
    "cut_saliency",
    "cut_edges",
    "homogeneity_defect",
    "conservation_report",
    "loglog_slope",
    "plot_conservation",
    "plot_layer_size_law",
    "draw_cut",
]

Objective = Callable[[torch.Tensor], torch.Tensor]

#: Activations the chapter's explorer offers; the homogeneous ones are relu, leaky_relu and identity.
SALIENCY_ACTIVATIONS = ("relu", "leaky_relu", "identity", "tanh", "sigmoid", "softplus", "gelu")

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.GELU, nn.ELU,
                nn.SiLU, nn.Hardtanh)


# --------------------------------------------------------------------------------------------------
# models and argument checks
# --------------------------------------------------------------------------------------------------

def saliency_mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu", bias: bool = False,
                 dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """An MLP for the conservation checks: :func:`utils.models.mlp` plus ``softplus``, float64 by default.

    Same layer names as ``mlp`` (``fc1, act1, ..., fcL``). ``activation`` is one of
    :data:`SALIENCY_ACTIVATIONS` (``"identity"`` is the linear network).

    >>> [n for n, _ in saliency_mlp([4, 3, 2], "softplus").named_children()]
    ['fc1', 'act1', 'fc2']
    """
    if activation not in SALIENCY_ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(SALIENCY_ACTIVATIONS)}, got {activation!r}")
    if activation == "softplus":
        model = mlp(sizes, activation="identity", bias=bias, dtype=dtype)
        for name, child in list(model.named_children()):
            if name.startswith("act"):
                setattr(model, name, nn.Softplus())
        return model
    return mlp(sizes, activation=activation, bias=bias, dtype=dtype)


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_objective(objective) -> None:
    if not callable(objective):
        raise TypeError(f"objective must be callable, mapping the model output to a scalar, got "
                        f"{type(objective).__name__}")


def _check_input(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (a batch of inputs), got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch of shape (B, n_in) with B >= 1, got shape {tuple(x.shape)}")


def _check_dtype(x: torch.Tensor, param: torch.Tensor) -> None:
    if x.dtype != param.dtype:
        raise ValueError(f"x has dtype {x.dtype} but the model's parameters are {param.dtype}; "
                         f"convert one of them (the conservation checks want float64)")


def _scalar(value, what: str = "objective") -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{what} must return a scalar tensor (R is a scalar function of the output), got {shape}")
    return value.reshape(())


def _blocks(model: nn.Module) -> list[tuple[str, nn.Linear, list[nn.Module]]]:
    """Split an ``nn.Sequential`` into ``(name, linear, [activations after it])`` blocks."""
    _check_model(model)
    if not isinstance(model, nn.Sequential):
        raise ValueError("model must be an nn.Sequential of nn.Linear layers and elementwise activations")
    blocks: list[tuple[str, nn.Linear, list[nn.Module]]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            if blocks and blocks[-1][1].out_features != child.in_features:
                raise ValueError(f"model: layer {name} takes {child.in_features} inputs but the previous "
                                 f"layer has {blocks[-1][1].out_features} outputs")
            blocks.append((name, child, []))
        elif isinstance(child, _ELEMENTWISE):
            if not blocks:
                raise ValueError("model must start with an nn.Linear layer")
            blocks[-1][2].append(child)
        else:
            raise ValueError(f"model must be an nn.Sequential of nn.Linear layers and elementwise activations; "
                             f"child {name!r} is a {type(child).__name__}")
    if not blocks:
        raise ValueError("model has no prunable layer (no torch.nn.Linear inside it)")
    return blocks


def _apply(acts: list[nn.Module], z: torch.Tensor) -> torch.Tensor:
    for act in acts:
        z = act(z)
    return z


# --------------------------------------------------------------------------------------------------
# synaptic saliency (eq 5) and the right-hand sides of Theorem 2
# --------------------------------------------------------------------------------------------------

def synaptic_saliency(model: nn.Module, objective: Objective, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Synaptic saliency ``S(theta) = dR/dtheta * theta`` of every parameter (notes eq. 5, ``eq-saliency-saliency``).

    ``R = objective(model(x))`` is one scalar for the whole batch ``x`` (shape ``(B, n_in)``), so the
    gradient, and with it the saliency, is summed over the batch. Returns ``{parameter name: tensor}``
    with each tensor shaped like its parameter (``fc1.weight`` is ``(n_1, n_0)``), detached.

    >>> model = saliency_mlp([3, 4, 2]); x = torch.randn(5, 3, dtype=torch.float64)
    >>> S = synaptic_saliency(model, lambda y: y.sum(), x)
    >>> sorted(S), tuple(S["fc1.weight"].shape)
    (['fc1.weight', 'fc2.weight'], (4, 3))
    """
    _check_model(model)
    _check_objective(objective)
    _check_input(x)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameter that requires a gradient")
    _check_dtype(x, named[0][1])
    R = _scalar(objective(model(x)))
    grads = torch.autograd.grad(R, [p for _, p in named], allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g * p).detach() for (n, p), g in zip(named, grads)}


def input_output_saliency(model: nn.Module, objective: Objective, x: torch.Tensor) -> tuple[float, float]:
    """The two right-hand sides of Theorem 2: ``(<dR/dx, x>, <dR/dy, y>)`` (``eq-saliency-network``).

    ``x`` has shape ``(B, n_in)``, ``y = model(x)``, ``R = objective(y)``; the inner products sum over the
    batch and the features. For a bias-free network with homogeneous activations the two agree.

    >>> model = saliency_mlp([3, 4, 2]); x = torch.randn(5, 3, dtype=torch.float64)
    >>> a, b = input_output_saliency(model, lambda y: y.sum(), x); abs(a - b) < 1e-12
    True
    """
    _check_model(model)
    _check_objective(objective)
    _check_input(x)
    params = list(model.parameters())
    if params:
        _check_dtype(x, params[0])
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    R = _scalar(objective(y))
    dx, dy = torch.autograd.grad(R, [x, y])
    return float((dx * x).detach().sum()), float((dy * y).detach().sum())


# --------------------------------------------------------------------------------------------------
# neuron-wise and layer-wise sums (Theorems 1 and 2)
# --------------------------------------------------------------------------------------------------

@dataclass
class NeuronFlows:
    """Saliency into and out of the neurons of one hidden layer (Theorem 1, ``thm-saliency-neuron``).

    ``layer`` names the linear layer whose outputs these neurons are; ``incoming[j]`` sums the
    saliency of row ``j`` of its weight plus bias ``j``; ``outgoing[j]`` sums column ``j`` of the next
    layer's weight. Both have shape ``(n_l,)``.
    """

    layer: str
    incoming: torch.Tensor
    outgoing: torch.Tensor

    @property
    def gap(self) -> torch.Tensor:
        """``incoming - outgoing`` per neuron: zero for homogeneous activations."""
        return self.incoming - self.outgoing


def neuron_flows_from_scores(model: nn.Module, scores: dict[str, torch.Tensor]) -> list[NeuronFlows]:
    """Per hidden neuron, the incoming (weights + bias) and outgoing sums of given scores.

    ``scores`` maps parameter names to tensors shaped like the parameters (e.g. from
    :func:`synaptic_saliency` or :func:`utils.pruning.score`; a missing bias counts as zero). Returns one
    :class:`NeuronFlows` per hidden layer, in forward order (``L - 1`` of them for ``L`` linear layers).
    """
    blocks = _blocks(model)
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict of parameter name -> tensor, got {type(scores).__name__}")
    flows = []
    for (name, layer, _), (next_name, next_layer, _) in zip(blocks[:-1], blocks[1:]):
        for key, shape in ((f"{name}.weight", layer.weight.shape), (f"{next_name}.weight", next_layer.weight.shape)):
            if key not in scores:
                raise ValueError(f"scores has no entry {key!r}")
            if tuple(scores[key].shape) != tuple(shape):
                raise ValueError(f"scores[{key!r}] has shape {tuple(scores[key].shape)}, expected {tuple(shape)}")
        incoming = scores[f"{name}.weight"].sum(dim=1)
        if f"{name}.bias" in scores:
            incoming = incoming + scores[f"{name}.bias"]
        flows.append(NeuronFlows(name, incoming, scores[f"{next_name}.weight"].sum(dim=0)))
    return flows


def neuron_flows(model: nn.Module, objective: Objective, x: torch.Tensor) -> list[NeuronFlows]:
    """Incoming and outgoing synaptic saliency of every hidden neuron (Theorem 1, ``thm-saliency-neuron``).

    ``S_in_j = <dR/dtheta_j^(l), theta_j^(l)> + (dR/db_j) b_j`` and
    ``S_out_j = <dR/dtheta_{:,j}^(l+1), theta_{:,j}^(l+1)>``, computed from :func:`synaptic_saliency`.
    Returns one :class:`NeuronFlows` per hidden layer.

    >>> model = saliency_mlp([3, 4, 2], bias=True); x = torch.randn(5, 3, dtype=torch.float64)
    >>> flows = neuron_flows(model, lambda y: y.sum(), x)
    >>> len(flows), bool(flows[0].gap.abs().max() < 1e-12)
    (1, True)
    """
    return neuron_flows_from_scores(model, synaptic_saliency(model, objective, x))


def _totals(scores: dict[str, torch.Tensor], suffix: str) -> dict[str, float]:
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be a dict of parameter name -> tensor, got {type(scores).__name__}")
    return {k: float(v.sum()) for k, v in scores.items() if k.endswith(suffix)}


def layer_totals(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Total score of each weight matrix: ``{"fc1.weight": sum, ...}`` (the layer-wise sums of Theorem 2).

    >>> layer_totals({"fc1.weight": torch.ones(2, 3), "fc1.bias": torch.ones(2)})
    {'fc1.weight': 6.0}
    """
    return _totals(scores, ".weight")


def bias_totals(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Total score of each bias vector: ``{"fc1.bias": sum, ...}`` (what breaks Theorem 2 between layers)."""
    return _totals(scores, ".bias")


def _check_cut(model, layer, neurons) -> tuple[list, set[int]]:
    blocks = _blocks(model)
    n_hidden = len(blocks) - 1
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n_hidden:
        raise ValueError(f"layer must be a hidden layer index in [1, {n_hidden}], got {layer!r}")
    width = blocks[layer - 1][1].out_features
    chosen = set()
    for j in neurons:
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= int(j) < width:
            raise ValueError(f"neurons must be indices in [0, {width - 1}] of hidden layer {layer}, got {j!r}")
        chosen.add(int(j))
    return blocks, chosen


def cut_saliency(model: nn.Module, scores: dict[str, torch.Tensor], layer: int, neurons: Iterable[int]) -> float:
    """Total score over an exact cut (Theorem 2, ``thm-saliency-network``): a set of weights that
    every input-to-output path crosses exactly once.

    The cut puts the inputs, hidden layers ``1..layer-1`` and the neurons ``J = neurons`` of hidden layer
    ``layer`` on the input side. Its weights are the *outgoing* weights of ``J`` (columns ``J`` of
    ``W^(layer+1)``) and the *incoming* weights of the other neurons of ``layer`` (rows not in ``J`` of
    ``W^(layer)``). ``J = []`` gives the whole matrix ``W^(layer)``, ``J = all`` gives ``W^(layer+1)``.
    Biases are not counted.
    """
    blocks, chosen = _check_cut(model, layer, neurons)
    name_in, lin_in, _ = blocks[layer - 1]
    name_out = blocks[layer][0]
    rest = [j for j in range(lin_in.out_features) if j not in chosen]
    J = sorted(chosen)
    total = scores[f"{name_out}.weight"][:, J].sum() + scores[f"{name_in}.weight"][rest, :].sum()
    return float(total)


def cut_edges(sizes: list[int] | tuple[int, ...], layer: int, neurons: Iterable[int]) -> list[tuple[int, int, int]]:
    """The edges of the exact cut of :func:`cut_saliency`, as ``(weight layer l, row i, column j)`` triples
    (edge from neuron ``j`` of layer ``l-1`` to neuron ``i`` of layer ``l``), for drawing with :func:`draw_cut`.

    >>> cut_edges([2, 2, 1], 1, [0])
    [(2, 0, 0), (1, 1, 0), (1, 1, 1)]
    """
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 3:
        raise ValueError(f"sizes must list at least 3 layer widths (one hidden layer), got {sizes!r}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= len(sizes) - 2:
        raise ValueError(f"layer must be a hidden layer index in [1, {len(sizes) - 2}], got {layer!r}")
    chosen = {int(j) for j in neurons}
    if any(not 0 <= j < sizes[layer] for j in chosen):
        raise ValueError(f"neurons must be indices in [0, {sizes[layer] - 1}], got {sorted(chosen)}")
    out = [(layer + 1, i, j) for j in sorted(chosen) for i in range(sizes[layer + 1])]
    inc = [(layer, i, j) for i in range(sizes[layer]) if i not in chosen for j in range(sizes[layer - 1])]
    return out + inc


def homogeneity_defect(model: nn.Module, objective: Objective, x: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden neuron, ``sum_b dR/dh_j (phi'(z_j) z_j - phi(z_j))``: what Theorem 1's proof leaves over.

    The proof of ``thm-saliency-neuron`` shows ``S_in_j - S_out_j`` equals exactly this sum (over the batch
    ``b``), which vanishes when ``phi(z) = phi'(z) z``. Returns one tensor of shape ``(n_l,)`` per hidden layer.
    """
    _check_objective(objective)
    _check_input(x)
    blocks = _blocks(model)
    h, records = x, []
    for k, (_, layer, acts) in enumerate(blocks):
        z = layer(h)
        h = _apply(acts, z)
        if k < len(blocks) - 1:
            records.append((z, h))
    R = _scalar(objective(h))
    dR_dh = torch.autograd.grad(R, [r[1] for r in records], allow_unused=True)
    defects = []
    for (z, h), g, (_, _, acts) in zip(records, dR_dh, blocks):
        z_leaf = z.detach().requires_grad_(True)
        (dphi,) = torch.autograd.grad(_apply(acts, z_leaf).sum(), z_leaf)  # elementwise: this is phi'(z)
        g = torch.zeros_like(h) if g is None else g
        defects.append((g * (dphi * z - h)).sum(dim=0).detach())
    return defects


def conservation_report(model: nn.Module, objective: Objective, x: torch.Tensor) -> dict[str, float]:
    """How far Theorems 1 and 2 are from holding, each measure relative to the size of the scores.

    * ``neuron_gap``: ``max_j |S_in_j - S_out_j| / max_j |S_in_j|`` (``thm-saliency-neuron``);
    * ``neuron_gap_without_bias``: the same with the bias left out of ``S_in`` (``nan`` without biases);
    * ``defect_error``: ``max_j |S_in_j - S_out_j - defect_j| / max_j |S_in_j|``, with the defect of
      :func:`homogeneity_defect` (``eq-saliency-defect``; rounding error for *every* activation);
    * ``layer_spread``: ``(max - min)`` of the weight-matrix totals over their largest ``|total|``
      (``thm-saliency-network``);
    * ``io_gap``: ``|<dR/dx, x> - <dR/dy, y>|`` over the larger of the two;
    * ``bias_shift_error``: ``max_l |S(W^(l+1)) - S(W^(l)) - S(b^(l))|`` over the largest ``|total|``
      (``eq-saliency-biasshift``; ``nan`` without biases).

    Homogeneous activations without biases give rounding-level values (about ``1e-15``) everywhere.
    """
    scores = synaptic_saliency(model, objective, x)
    flows = neuron_flows_from_scores(model, scores)
    scale = max(float(f.incoming.abs().max()) for f in flows) if flows else 1.0
    scale = scale or 1.0
    defects = homogeneity_defect(model, objective, x)
    weights, biases = list(layer_totals(scores).values()), list(bias_totals(scores).values())
    size = max(abs(t) for t in weights) or 1.0
    dx, dy = input_output_saliency(model, objective, x)
    nan = float("nan")
    report = {
        "neuron_gap": max((float(f.gap.abs().max()) for f in flows), default=0.0) / scale,
        "neuron_gap_without_bias": nan,
        "defect_error": max((float((f.gap - d).abs().max()) for f, d in zip(flows, defects)), default=0.0) / scale,
        "layer_spread": (max(weights) - min(weights)) / size,
        "io_gap": abs(dx - dy) / (max(abs(dx), abs(dy)) or 1.0),
        "bias_shift_error": nan,
    }
    if biases:
        without = [float((f.gap - scores[f"{f.layer}.bias"]).abs().max()) for f in flows if f"{f.layer}.bias" in scores]
        report["neuron_gap_without_bias"] = max(without, default=0.0) / scale
        report["bias_shift_error"] = max((abs(weights[l + 1] - weights[l] - biases[l])
                                          for l in range(min(len(weights) - 1, len(biases)))), default=0.0) / size
    return report


# --------------------------------------------------------------------------------------------------
# the layer-size law and the pictures
# --------------------------------------------------------------------------------------------------

def loglog_slope(sizes, values) -> float:
    """Least-squares slope of ``log(values)`` against ``log(sizes)`` (``-1`` for a conserved score).

    >>> round(loglog_slope([10, 100, 1000], [5.0, 0.5, 0.05]), 12)
    -1.0
    """
    sizes = np.asarray(sizes, dtype=float)
    values = np.asarray(values, dtype=float)
    if sizes.shape != values.shape or sizes.ndim != 1 or sizes.size < 2:
        raise ValueError(f"sizes and values must be 1-D of the same length >= 2, got {sizes.shape} and {values.shape}")
    if (sizes <= 0).any() or (values <= 0).any():
        raise ValueError("sizes and values must be > 0 to take logarithms")
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def plot_layer_size_law(ax, counts, means: dict[str, list[float]]) -> None:
    """Log-log scatter of the mean score per parameter against the number of parameters of each layer,
    one series per entry of ``means``, with its fitted slope in the legend and a dashed slope ``-1`` guide."""
    counts = np.asarray(counts, dtype=float)
    markers = "osD^v"
    for k, (label, values) in enumerate(means.items()):
        values = np.asarray(values, dtype=float)
        slope = loglog_slope(counts, values)
        ax.loglog(counts, values, markers[k % len(markers)], color=PALETTE[k % len(PALETTE)], ms=6,
                  label=f"{label} (slope {slope:+.2f})")
    first = np.asarray(next(iter(means.values())), dtype=float)
    guide = np.array([counts.min() / 1.5, counts.max() * 1.5])
    anchor = np.exp(np.mean(np.log(first) + np.log(counts)))
    ax.loglog(guide, anchor / guide, "--", color="#888888", lw=1, label="slope $-1$")
    ax.set_xlabel("parameters in the layer $N_l$")
    ax.set_ylabel("mean score per parameter")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))


def draw_cut(ax, sizes, edges, title: str | None = None) -> None:
    """Draw a small fully connected network (inputs left, outputs right) with the ``edges`` of a cut
    highlighted; ``edges`` are ``(weight layer l, row i, column j)`` triples as from :func:`cut_edges`."""
    highlight = set(edges)
    xs = range(len(sizes))
    pos = {(l, i): (l, i - (n - 1) / 2) for l, n in zip(xs, sizes) for i in range(n)}
    for l in range(1, len(sizes)):
        for i in range(sizes[l]):
            for j in range(sizes[l - 1]):
                (x0, y0), (x1, y1) = pos[(l - 1, j)], pos[(l, i)]
                on = (l, i, j) in highlight
                ax.plot([x0, x1], [y0, y1], color=PALETTE[1] if on else "#cccccc", lw=2.2 if on else 0.8,
                        zorder=2 if on else 1)
    for (l, i), (px, py) in pos.items():
        colour = PALETTE[0] if l == 0 else (PALETTE[2] if l == len(sizes) - 1 else "#444444")
        ax.plot(px, py, "o", color=colour, ms=9, zorder=3)
    ax.set_xticks(list(xs), ["$x$"] + [f"$h^{{({l})}}$" for l in range(1, len(sizes) - 1)] + ["$y$"])
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize="small")


def plot_conservation(fig, activation: str = "relu", bias: bool = False, depth: int = 3, width: int = 16,
                      seed: int = 0, batch: int = 32) -> dict[str, float]:
    """Explorer panel: a random ``[8] + [width] * depth + [3]`` MLP (float64) scored with the cross-entropy
    of random labels on a Gaussian batch. Left: incoming vs outgoing saliency per hidden neuron (Theorem 1);
    right: total saliency per weight matrix with ``<dR/dx, x>`` and ``<dR/dy, y>`` (Theorem 2).
    Returns the largest neuron gap and the spread of the layer totals."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1 (number of hidden layers), got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = saliency_mlp([8] + [width] * depth + [3], activation, bias=bias)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(batch, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (batch,), generator=gen)

    def objective(y):
        return nn.functional.cross_entropy(y, labels)

    scores = synaptic_saliency(model, objective, x)
    flows = neuron_flows_from_scores(model, scores)
    totals = layer_totals(scores)
    lhs, rhs = input_output_saliency(model, objective, x)
    ax_n, ax_l = fig.subplots(1, 2)
    lim = 0.0
    for k, f in enumerate(flows):
        ax_n.plot(f.incoming, f.outgoing, "o", ms=3.5, alpha=0.8, color=PALETTE[k % len(PALETTE)],
                  label=f"hidden layer {k + 1}")
        lim = max(lim, float(f.incoming.abs().max()), float(f.outgoing.abs().max()))
    lim = lim * 1.1 or 1.0
    ax_n.plot([-lim, lim], [-lim, lim], ":", color="black", lw=1)
    ax_n.set_xlim(-lim, lim)
    ax_n.set_ylim(-lim, lim)
    ax_n.xaxis.set_major_locator(MaxNLocator(3))
    ax_n.yaxis.set_major_locator(MaxNLocator(3))
    ax_n.set_xlabel(r"incoming $S^{\mathrm{in}}_j$")
    ax_n.set_ylabel(r"outgoing $S^{\mathrm{out}}_j$")
    if len(flows) <= 4:
        ax_n.legend(fontsize="x-small")
    gap = max(float(f.gap.abs().max()) for f in flows)
    ax_n.set_title(f"max |in - out| = {gap:.1e}", fontsize="small")
    values = list(totals.values())
    ax_l.bar(range(1, len(values) + 1), values, color=PALETTE[0])
    ax_l.axhline(lhs, color=PALETTE[1], ls="--", lw=1.2, label=r"$\langle \partial R/\partial x, x\rangle$")
    ax_l.axhline(rhs, color=PALETTE[2], ls=":", lw=1.5, label=r"$\langle \partial R/\partial y, y\rangle$")
    ax_l.set_xlabel("weight matrix $l$")
    ax_l.set_ylabel("total saliency of $\\theta^{(l)}$")
    ax_l.set_xticks(range(1, len(values) + 1))
    ax_l.legend(fontsize="x-small")
    spread = max(values) - min(values)
    return {"max_neuron_gap": gap, "layer_spread": spread}
