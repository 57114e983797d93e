"""Layer collapse: paths, the two collapse criteria, maximal and critical compression (chapter 3).

Two criteria of collapse are in use, and they differ:

* ``"empty-layer"``: some prunable layer keeps no weight. This is the criterion of Tanaka et al.'s
  own figures {cite}`tanaka2020synflow` (the fraction left in the sparsest layer reaching 0);
* ``"no-path"``: no input-output path survives, ``1^T M^(L) ... M^(1) 1 = 0``. An empty layer leaves no
  path, but a network can lose every path with every layer non-empty (its kept weights do not line
  up), so ``"no-path"`` collapses at the same or a smaller compression. It is the book's default.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .. import default_progress
from ..masking import Masks, check_masks
from ..models import prunable_names
from .masks import layer_density, prune
from .scores import Data, check_method

__all__ = ["CRITERIA", "path_count", "is_collapsed", "max_compression", "sweep", "critical_compression",
           "find_critical"]

CRITERIA = ("no-path", "empty-layer")


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return criterion


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
    graphs = _channel_graphs(check_masks(masks))
    v = torch.ones(graphs[0].shape[1], dtype=torch.float64)
    for g in graphs:
        v = g @ v
    return float(v.sum())


def is_collapsed(masks: Masks, criterion: str = "no-path") -> bool:
    """Layer collapse under ``criterion``: ``"no-path"`` (no input-output path is left; the default)
    or ``"empty-layer"`` (some prunable layer keeps no weight). See the module docstring.

    >>> m = {"fc1.weight": torch.tensor([[1., 0.], [0., 0.]]), "fc2.weight": torch.tensor([[0., 1.]])}
    >>> is_collapsed(m), is_collapsed(m, "empty-layer")     # no layer is empty, but no path is left
    (True, False)
    """
    check_criterion(criterion)
    if any(float((m != 0).sum()) == 0 for m in check_masks(masks).values()):
        return True
    return criterion == "no-path" and path_count(masks) == 0.0


def max_compression(model: nn.Module) -> float:
    """``rho_max``: prunable weights / number of prunable layers (one weight per layer on a single path).

    >>> from utils.models import mlp
    >>> max_compression(mlp([64, 100, 10]))   # (6400 + 1000) / 2
    3700.0
    """
    params = dict(model.named_parameters())
    names = prunable_names(model)
    return sum(params[n].numel() for n in names) / len(names)


def method_spec(method: str) -> tuple[str, int | None]:
    """'synflow-1shot' -> ('synflow', 1); other names -> (name, None)."""
    if isinstance(method, str) and method.endswith("-1shot"):
        return check_method(method.removesuffix("-1shot")), 1
    return check_method(method), None


def sweep(model: nn.Module, methods: Iterable[str], log10_compressions: Iterable[float], *, data: Data = None,
          iterations: dict[str, int] | None = None, seed: int = 0, stop_at_collapse: bool = False,
          scope: str = "global", input_shape: tuple[int, ...] | None = None,
          progress: bool | None = None) -> list[dict]:
    """Prune ``model`` with each method at each compression ``10**c`` and record what is left.

    ``methods`` may include ``"synflow-1shot"`` (SynFlow with one iteration). ``iterations`` maps a method
    to its number of pruning iterations (default: 100 for SynFlow, 1 for the others, as in the paper).
    With ``stop_at_collapse`` a method's sweep stops at its first compression without a path (enough
    for :func:`critical_compression`). Returns one record per (method, compression): ``method``,
    ``log10_compression``, ``density`` (per layer, list), ``collapsed`` (no path left), ``paths``.
    """
    iterations = {"synflow": 100, **(iterations or {})}
    grid = [float(c) for c in log10_compressions]
    methods = list(methods)
    for method in methods:
        method_spec(method)
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
        base, n_iter = method_spec(method)
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


def _record_collapsed(record: dict, criterion: str) -> bool:
    if criterion == "empty-layer":
        return min(record["density"]) == 0.0
    return bool(record["collapsed"])


def critical_compression(records: list[dict], criterion: str = "no-path") -> dict[str, float]:
    """``log10 rho_cr`` per method: the largest compression on the grid below the method's first
    collapse under ``criterion`` (``"no-path"``, the default, or ``"empty-layer"``; see
    :func:`is_collapsed`), from the records of :func:`sweep`.

    ``nan`` if the method collapses already at the smallest compression swept. (If a method never
    collapses on the grid, this is the largest compression swept: a lower bound.)

    >>> rows = [{"method": "m", "log10_compression": c, "density": d, "collapsed": k}
    ...         for c, d, k in [(1.0, [.1, .1], False), (2.0, [.01, .01], True), (3.0, [0., .001], True)]]
    >>> critical_compression(rows), critical_compression(rows, "empty-layer")
    ({'m': 1.0}, {'m': 2.0})
    """
    check_criterion(criterion)
    if not isinstance(records, list) or not records:
        raise ValueError("records must be a non-empty list of sweep records")
    out: dict[str, float] = {}
    for method in dict.fromkeys(r["method"] for r in records):
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
        best = math.nan
        for r in rows:
            if _record_collapsed(r, criterion):
                break
            best = r["log10_compression"]
        out[method] = best
    return out


def find_critical(model: nn.Module, method: str, log10_grid: Iterable[float], *, data: Data = None,
                  iterations: int | None = None, seed: int = 0, scope: str = "global",
                  input_shape: tuple[int, ...] | None = None, criterion: str = "no-path") -> float:
    """``log10 rho_cr`` of ``method`` on ``log10_grid`` by bisection (about log2(len(grid)) prunings),
    collapse judged by ``criterion`` (``"no-path"``, the default, or ``"empty-layer"``).

    Assumes collapse is monotone in the compression (once collapsed, collapsed at every larger
    compression), which :func:`sweep` lets you check on a full grid. ``scope`` is passed to
    :func:`prune` (with ``"layer"`` every layer keeps at least one weight, so the nominal compression
    can exceed the achieved one near ``rho_max``). ``method`` may be
    ``"synflow-1shot"``; ``iterations`` defaults to 100 for SynFlow and 1 otherwise. Returns ``nan`` if
    the smallest compression already collapses, the largest if none does (a lower bound).
    """
    check_criterion(criterion)
    grid = sorted(float(c) for c in log10_grid)
    if not grid:
        raise ValueError("log10_grid must hold at least one log10 compression")
    base, n_iter = method_spec(method)
    n_iter = n_iter or iterations or (100 if base == "synflow" else 1)

    def collapsed(i: int) -> bool:
        return is_collapsed(prune(model, base, 10.0 ** grid[i], iterations=n_iter, data=data, seed=seed,
                                  scope=scope, input_shape=input_shape), criterion)

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
