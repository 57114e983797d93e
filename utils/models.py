"""Model builders shared by the chapters."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "mlp", "linear_layers"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu", bias: bool = True,
        dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Layers are named so a reader can address them: ``fc1, act1, fc2, act2, ..., fcL`` (no activation
    after the last layer, which outputs logits). Layer ``fcl`` computes ``z = W h + b`` with
    ``W`` of shape ``(sizes[l], sizes[l-1])``: row ``i`` of ``W`` is the notes' ``theta_i^(l)``.
    ``activation`` is one of :data:`ACTIVATIONS`.

    >>> model = mlp([64, 32, 10])
    >>> [name for name, _ in model.named_children()]
    ['fc1', 'act1', 'fc2']
    """
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(f"sizes must be a list of at least 2 layer widths, got {sizes!r}")
    for width in sizes:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"every entry of sizes must be an int >= 1, got {sizes!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n_layers = len(sizes) - 1
    for l in range(1, n_layers + 1):
        layers[f"fc{l}"] = nn.Linear(sizes[l - 1], sizes[l], bias=bias, dtype=dtype)
        if l < n_layers:
            layers[f"act{l}"] = ACTIVATIONS[activation]()
    return nn.Sequential(layers)


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers of ``model`` in forward order, as ``(name, layer)`` pairs.

    These are the prunable layers of the book's MLPs. Raises ``ValueError`` for a model without any.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError("model has no prunable layer (no torch.nn.Linear inside it)")
    return found
