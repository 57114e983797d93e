"""The figures of chapter ``03_synflow``: layer profiles, the collapse sweep, accuracy vs compression.

Each function draws one figure (or explorer panel) from the records of
:func:`utils.pruning.sweep` or from training results; the data behind them is tested in
``tests/test_pruning.py``.
"""

from __future__ import annotations

import numpy as np

from ..plotting import PALETTE

__all__ = ["METHOD_COLORS", "plot_layer_profile", "plot_collapse_sweep", "plot_method_layers",
           "plot_accuracy_vs_compression", "plot_controls", "plot_per_layer"]

METHOD_COLORS = {"random": PALETTE[7], "magnitude": PALETTE[2], "snip": PALETTE[4], "grasp": PALETTE[3],
                 "synflow": PALETTE[0], "synflow-1shot": PALETTE[5]}


def _nearest(records: list[dict], method: str, log10_compression: float) -> dict:
    rows = [r for r in records if r["method"] == method]
    if not rows:
        raise ValueError(f"no records for method {method!r}; the sweep has {sorted({r['method'] for r in records})}")
    return min(rows, key=lambda r: abs(r["log10_compression"] - log10_compression))


def plot_layer_profile(fig, method: str = "synflow", log10_compression: float = 2.0, *, records: list[dict],
                       layer_labels: list[str] | None = None) -> None:
    """Explorer panel: the fraction of weights left in each layer (log scale) for one method and
    compression, taken from a :func:`sweep` (the nearest compression swept), with a collapse flag in the
    title, the global density ``1/rho`` dashed and a red cross for each empty layer."""
    r = _nearest(records, method, log10_compression)
    ax = fig.subplots()
    dens = np.array(r["density"], dtype=float)
    x = np.arange(1, len(dens) + 1)
    floor = 1e-5
    ax.bar(x, np.where(dens > 0, dens, np.nan), color=METHOD_COLORS.get(method, PALETTE[0]))
    empty = dens == 0
    if empty.any():   # an empty layer has no bar on a log axis: mark it
        ax.plot(x[empty], np.full(empty.sum(), floor * 3), "x", color="#B00000", ms=8, mew=2, label="empty layer")
    ax.axhline(10.0 ** -r["log10_compression"], color="#444444", ls="--", lw=1, label="global density $1/\\rho$")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xticks(x, layer_labels or [f"{i}" for i in x])
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of weights left")
    flag = "COLLAPSED" if r["collapsed"] else "connected"
    ax.set_title(f"{method}, $\\rho = 10^{{{r['log10_compression']:.2f}}}$: {flag}",
                 color="#B00000" if r["collapsed"] else "#222222", fontsize="small")


def plot_collapse_sweep(axes, records: list[dict], *, rho_max: float | None = None,
                        layers: list[int] | None = None) -> None:
    """The layer-collapse figure: ``axes[0]`` the fraction left in the smallest-density layer per method
    vs compression; ``axes[1]`` the number of input-output paths (log) vs compression.

    Collapsed points are drawn hollow; ``rho_max`` is marked with a vertical line.
    """
    ax_d, ax_p = axes
    for method in dict.fromkeys(r["method"] for r in records):
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
        c = np.array([r["log10_compression"] for r in rows])
        dmin = np.array([min(r["density"]) if layers is None else min(r["density"][i] for i in layers) for r in rows])
        paths = np.array([r["paths"] for r in rows])
        color = METHOD_COLORS.get(method, None)
        ax_d.plot(10 ** c, np.maximum(dmin, 1e-6), "-", color=color, label=method)
        ax_p.plot(10 ** c, np.maximum(paths, 0.5), "-", color=color, label=method)
        dead = np.array([r["collapsed"] for r in rows])
        ax_d.plot(10 ** c[dead], np.maximum(dmin[dead], 1e-6), "o", mfc="white", color=color, ms=4)
        ax_p.plot(10 ** c[dead], np.maximum(paths[dead], 0.5), "o", mfc="white", color=color, ms=4)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression ratio $\\rho$")
        if rho_max is not None:
            ax.axvline(rho_max, color="#444444", ls=":", lw=1)
    ax_d.set_ylabel("fraction left in the sparsest layer")
    ax_p.set_ylabel("input-output paths (0 drawn at 0.5)")
    ax_d.legend(fontsize="x-small")


def plot_accuracy_vs_compression(ax, results: list[dict], *, chance: float | None = 0.1,
                                 rho_max: float | None = None, dense: list[float] | None = None,
                                 critical: dict[str, float] | None = None, legend: bool = True) -> None:
    """Test accuracy (%) vs compression (log x): mean over seeds with a min/max band, one curve per
    method; the axes of Tanaka et al.'s Fig. 1 when the options are given. ``legend=False`` leaves
    the legend to the caller (e.g. one legend below several panels).

    ``results`` holds dicts with ``method``, ``log10_compression``, ``seed``, ``test_accuracy`` (in
    [0, 1]). ``rho_max`` draws a dashed vertical line and ends the x axis there; ``dense`` (test
    accuracies in [0, 1] of the unpruned network, one per seed) draws their mean as a grey line;
    ``critical`` maps a method to its ``log10 rho_cr`` and draws an arrow there in the method's colour.
    """
    for method in dict.fromkeys(r["method"] for r in results):
        cs = sorted({r["log10_compression"] for r in results if r["method"] == method})
        acc = [[100 * r["test_accuracy"] for r in results if r["method"] == method and r["log10_compression"] == c]
               for c in cs]
        mean = np.array([np.mean(a) for a in acc])
        lo, hi = np.array([min(a) for a in acc]), np.array([max(a) for a in acc])
        x = 10.0 ** np.array(cs)
        color = METHOD_COLORS.get(method, None)
        ax.plot(x, mean, "o-", color=color, label=method, ms=3)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    if chance is not None:
        ax.axhline(100 * chance, color="#444444", ls=":", lw=1, label="chance")
    if dense is not None:
        ax.axhline(100 * float(np.mean(dense)), color="#888888", ls="-", lw=1.5, label="dense")
    if rho_max is not None:
        ax.axvline(rho_max, color="#444444", ls="--", lw=1, label="$\\rho_{\\max}$")
        ax.set_xlim(1.0, rho_max * 1.5)
    for method, c in (critical or {}).items():
        ax.annotate("", xy=(10.0 ** c, 2), xytext=(10.0 ** c, 16),
                    arrowprops=dict(arrowstyle="-|>", color=METHOD_COLORS.get(method, "#222222"), lw=1.5))
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("compression ratio $\\rho$")
    ax.set_ylabel("test accuracy (%)")
    if legend:
        ax.legend(fontsize="x-small")


def plot_method_layers(ax, records: list[dict], method: str, *, rho_max: float | None = None,
                       layer_labels: list[str] | None = None) -> None:
    """Fraction of weights left in each layer (one line per layer, log-log) vs compression for one method
    of a :func:`sweep`; the first collapsed compression is shaded and ``rho_max`` marked."""
    rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["log10_compression"])
    if not rows:
        raise ValueError(f"no records for method {method!r}")
    rho = 10.0 ** np.array([r["log10_compression"] for r in rows])
    dens = np.array([r["density"] for r in rows], dtype=float)
    floor = 1e-5
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n_layers = dens.shape[1]
    for l in range(n_layers):
        label = layer_labels[l] if layer_labels else f"layer {l + 1}"
        ax.plot(rho, np.maximum(dens[:, l], floor), color=cmap(l / max(1, n_layers - 1)), lw=1.5, label=label)
    ax.plot(rho, 1.0 / rho, "k--", lw=1, label="$1/\\rho$")
    dead = [r["log10_compression"] for r in rows if r["collapsed"]]
    if dead:
        ax.axvspan(10.0 ** min(dead), rho[-1], color="#B00000", alpha=0.08, lw=0)
    if rho_max is not None:
        ax.axvline(rho_max, color="#444444", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, 1.5)
    ax.set_title(method, fontsize="small")
    ax.set_xlabel("compression ratio $\\rho$")
    ax.set_ylabel("fraction of weights left")


CONTROL_MARKERS = "os^D"


def plot_controls(ax, groups: dict[str, list[dict]], methods: list[str], log10_compression: float) -> None:
    """Test accuracy (%) of each method at one compression under several training conditions: one
    marker per entry of ``groups`` (label -> results as for :func:`plot_accuracy_vs_compression`),
    side by side per method, mean over seeds with min/max bars."""
    if not 1 <= len(groups) <= len(CONTROL_MARKERS):
        raise ValueError(f"groups must have 1 to {len(CONTROL_MARKERS)} entries, got {len(groups)}")
    width = 0.6 / len(groups)
    for j, (label, rows) in enumerate(groups.items()):
        for i, method in enumerate(methods):
            acc = [100 * r["test_accuracy"] for r in rows
                   if r["method"] == method and r["log10_compression"] == log10_compression]
            if not acc:
                raise ValueError(f"groups[{label!r}] has no result for {method!r} at 10^{log10_compression}")
            mean = float(np.mean(acc))
            ax.errorbar(i + width * (j - (len(groups) - 1) / 2), mean,
                        yerr=[[max(0.0, mean - min(acc))], [max(0.0, max(acc) - mean)]], fmt=CONTROL_MARKERS[j], capsize=3,
                        color=METHOD_COLORS.get(method, "#222222"), mfc=None if j == 0 else "white",
                        label=label if i == 0 else None)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="x-small", loc="lower left")


def plot_per_layer(ax, values: dict[str, list[list[float]]], *, ylabel: str, log: bool = False) -> None:
    """A per-layer statistic against the layer, one line per method: ``values`` maps a method to one
    list per seed (e.g. of :func:`utils.pruning.top_direction_share`); the line is the mean over
    seeds (geometric with ``log``, on a log y axis), the band spans min to max."""
    for method, per_seed in values.items():
        a = np.asarray(per_seed, dtype=float)
        if a.ndim != 2 or not np.isfinite(a).all() or (log and not (a > 0).all()):
            raise ValueError(f"values[{method!r}] must be a list of per-layer lists of finite numbers"
                             + (" > 0 (log axis)" if log else ""))
        layers = np.arange(1, a.shape[1] + 1)
        color = METHOD_COLORS.get(method, "#888888")
        mean = np.exp(np.log(a).mean(0)) if log else a.mean(0)
        ax.plot(layers, mean, "o-", ms=3, color=color, label=method)
        ax.fill_between(layers, a.min(0), a.max(0), color=color, alpha=0.2, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))  # off the data
