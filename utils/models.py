"""Model builders shared by the chapters, and which of their parameters are prunable.

* :func:`mlp`: the book's fully connected ReLU networks (layers ``fc1, act1, ..., fcL``);
* :func:`digits_convnet`: a small conv net for the 8x8 digits (chapter ``03_synflow``);
* :func:`kaiming_init`, :func:`zero_biases`: initialisation variants, **in place**;
* :func:`linear_layers`, :func:`prunable_layers`, :func:`prunable_names`: the layers a mask can
  address. A mask is keyed by the *parameter* name of a prunable weight, e.g. ``"fc1.weight"``
  (see :func:`utils.masking.check_masks`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "PRUNABLE_TYPES", "mlp", "linear_layers", "prunable_layers", "prunable_names",
           "zero_biases", "kaiming_init", "digits_convnet"]

#: The layer types whose weights are prunable: a mask may address ``<layer>.weight`` of these.
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

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


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The prunable layers of ``model`` (:data:`PRUNABLE_TYPES`) in module order.

    Raises ``TypeError`` if ``model`` is not an ``nn.Module`` and ``ValueError`` if it has no
    prunable layer.

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
    """Names of the prunable parameters, ``"<layer>.weight"``, in module order: the keys of a mask.

    >>> prunable_names(mlp([4, 3, 2]))
    ['fc1.weight', 'fc2.weight']
    """
    return [f"{name}.weight" for name, _ in prunable_layers(model)]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)


def zero_biases(model: nn.Module) -> nn.Module:
    """Set every bias of the prunable layers to zero, **in place**; returns ``model``.

    >>> float(zero_biases(mlp([3, 2])).fc1.bias.abs().sum())
    0.0
    """
    with torch.no_grad():
        for _, layer in prunable_layers(model):
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def kaiming_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain: std ``sqrt(2 / fan_in)``) and zero biases for every
    prunable layer, **in place**, from a generator seeded with ``seed``; returns ``model``.

    >>> net = kaiming_init(mlp([400, 300]), seed=0)
    >>> round(float(net.fc1.weight.detach().std()) * 20, 1)   # sqrt(2 / 400) = 1 / (10 sqrt 2)
    1.4
    """
    generator = torch.Generator().manual_seed(_check_seed(seed))
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

    >>> net = digits_convnet()
    >>> [p.numel() for n, p in net.named_parameters() if n in prunable_names(net)]
    [72, 1152, 2304, 10240]
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
