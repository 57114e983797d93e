"""Comparing masks: canonical forms up to permutations of hidden units, Jaccard overlap, agreement.

Chapter ``03_synflow`` asks whether SynFlow finds the same mask from different initialisations (the
notes' research question). Two masks that differ by a permutation of hidden units describe isomorphic
networks, so they are compared after :func:`canonical_masks`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..masking import Masks, check_masks
from .masks import layer_density

__all__ = ["canonical_masks", "jaccard", "mask_agreement"]


def canonical_masks(masks: Masks) -> Masks:
    """Reorder the hidden units of a fully connected mask stack into a canonical order.

    Permuting the hidden units of a layer (rows of ``M^(l)`` with the columns of ``M^(l+1)``) gives an
    isomorphic network. Units are sorted, layer by layer from the input, by (out-degree, in-degree, the
    sorted incoming pattern) in decreasing order, so that two masks that differ by such a permutation
    usually map to the same canonical form (a heuristic: ties in degree may remain). Input and output
    units keep their order. Linear layers only.
    """
    ms = [(n, (m.detach() != 0).to(torch.float64).cpu().clone()) for n, m in check_masks(masks).items()]
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
