"""Iterative SynFlow: the project's prune against the SynFlow authors' reference loop.

Chapter 3 (``chapters/03_synflow.ipynb``) prunes with ``utils.pruning.prune(model, "synflow",
compression, iterations=100)``. The comparator is a re-implementation (not a copy) of the loop of the
authors' code, ``ganguli-lab/Synaptic-Flow`` (``prune.py: prune_loop`` with ``Pruners/pruners.py:
SynFlow`` and its masked ``Layers``): every parameter replaced by its absolute value, an all-ones
input in float32, ``sum(output).backward()``, scores ``|grad * weight|``, then one global threshold
``kthvalue(scores, int((1 - d) N))`` with every score ``<= threshold`` masked, at densities
``d = (1/rho)^(k/n)``. Its float64 variant runs the same loop in float64.

The script first compares masks, then times:

1. masks: for each network and compression, the Jaccard overlap |A and B| / |A or B| of the kept
   weights between the project's masks, the reference's (float32 and float64), and the reference
   in float64 with the project's kept count ``round(d N)`` instead of ``N - int((1 - d) N)``;
2. time (medians over interleaved rounds, one thread by default): the project's prune, the reference
   in float32 and in float64, and one forward + backward pass of the float64 linearised net on the
   all-ones input (the floor an iteration cannot go below), at compression 100, 100 iterations.

Networks: LeNet-300-100 (784-300-100-10) and 784-1000-1000-10 with PyTorch's default initialisation
(seeds 0, 1, 2 for the masks, seed 0 for the timing), and the chapter's conv net for the digits
(``utils.models.digits_convnet``).

Run:  python benchmarks/bench_pruning.py [--rounds 3] [--threads 1] [--save]
(``--save`` writes results/bench_pruning.json, which chapter 3 loads.)
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from utils.models import digits_convnet, mlp, prunable_names  # noqa: E402
from utils.pruning import prune  # noqa: E402


# ------------------------------------------------------------------------------------------------
# the comparator: the Synaptic-Flow reference loop, re-implemented
# ------------------------------------------------------------------------------------------------

def _masked_forward(net: nn.Sequential, masks: dict[nn.Module, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The reference's masked layers: a prunable layer computes with ``mask * weight``."""
    for layer in net:
        if layer in masks and isinstance(layer, nn.Linear):
            x = F.linear(x, masks[layer] * layer.weight, layer.bias)
        elif layer in masks:
            x = layer._conv_forward(x, masks[layer] * layer.weight, layer.bias)
        else:
            x = layer(x)
    return x


def reference_synflow(model: nn.Sequential, compression: float, iterations: int = 100, *,
                      input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32,
                      counts: str = "reference") -> dict[str, torch.Tensor]:
    """The SynFlow authors' prune loop (global scope, exponential schedule); returns masks keyed by
    parameter name. ``counts="project"`` prunes ``N - round(d N)`` instead of ``int((1 - d) N)``."""
    net = copy.deepcopy(model).to(dtype).eval()
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    masks = {m: torch.ones_like(m.weight) for m in layers}
    sparsity = 10.0 ** (-math.log10(compression))       # the reference's argument: the final density
    x = torch.ones((1, *input_shape), dtype=dtype)
    n = sum(m.weight.numel() for m in layers)
    for epoch in range(iterations):
        with torch.no_grad():                            # linearize: every parameter -> |parameter|
            signs = {p: torch.sign(p) for p in net.parameters()}
            for p in net.parameters():
                p.abs_()
        _masked_forward(net, masks, x).sum().backward()
        scores = {m: (m.weight.grad * m.weight).detach().abs_() for m in layers}
        for m in layers:
            m.weight.grad.zero_()
        with torch.no_grad():                            # nonlinearize
            for p in net.parameters():
                p.mul_(signs[p])
        density = sparsity ** ((epoch + 1) / iterations)
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = int((1.0 - density) * n) if counts == "reference" else n - round(density * n)
        if k >= 1:
            threshold = torch.kthvalue(flat, k).values
            for m in layers:
                masks[m] = torch.where(scores[m] <= threshold, 0.0, 1.0).to(dtype)
    return {name: masks[m] for name, m in zip(prunable_names(net), layers)}


def jaccard_all(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Jaccard overlap of the kept weights of two mask sets, over all layers together."""
    x = torch.cat([a[n].flatten() != 0 for n in a])
    y = torch.cat([b[n].flatten() != 0 for n in a])
    return float((x & y).sum()) / float((x | y).sum())


def floor_step(model: nn.Module, input_shape: tuple[int, ...]):
    """One forward + backward pass of the float64 linearised net on the all-ones input."""
    work = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
    x = torch.ones((1, *input_shape), dtype=torch.float64)
    weights = [m.weight for m in work.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]

    def step():
        torch.autograd.grad(work(x).sum(), weights)
    return step


def networks(seed: int = 0) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(seed)
    lenet = mlp([784, 300, 100, 10])
    torch.manual_seed(seed)
    wide = mlp([784, 1000, 1000, 10])
    return {"LeNet-300-100": (lenet, (784,)), "784-1000-1000-10": (wide, (784,)),
            "digits conv net": (digits_convnet(seed=seed), (64,))}


def compare_masks(compressions: list[float], seeds: list[int]) -> list[dict]:
    rows = []
    for seed in seeds:
        for name, (model, shape) in networks(seed).items():
            rows += _compare(name, model, shape, compressions, seed)
    return rows


def _compare(name: str, model: nn.Module, shape: tuple[int, ...], compressions: list[float], seed: int) -> list[dict]:
    rows = []
    for rho in compressions:
        ours = prune(model, "synflow", rho, iterations=100, input_shape=shape)
        r32 = reference_synflow(model, rho, input_shape=shape)
        r64 = reference_synflow(model, rho, input_shape=shape, dtype=torch.float64)
        r64p = reference_synflow(model, rho, input_shape=shape, dtype=torch.float64, counts="project")
        rows.append({"network": name, "seed": seed, "compression": rho,
                     "kept": [int(sum(m.sum() for m in x.values())) for x in (ours, r32, r64)],
                     "ours_vs_ref32": jaccard_all(ours, r32), "ours_vs_ref64": jaccard_all(ours, r64),
                     "ref32_vs_ref64": jaccard_all(r32, r64),
                     "ours_vs_ref64_our_counts": jaccard_all(ours, r64p)})
        r = rows[-1]
        print(f"{name:17s} seed {seed} rho {rho:6g}: kept ours/ref32/ref64 {r['kept']}; Jaccard ours-ref32 "
              f"{r['ours_vs_ref32']:.4f}, ours-ref64 {r['ours_vs_ref64']:.4f}, ref32-ref64 "
              f"{r['ref32_vs_ref64']:.4f}, ours-ref64 with our counts {r['ours_vs_ref64_our_counts']:.4f}",
              flush=True)
    return rows


def time_prune(rounds: int, compression: float = 100.0) -> list[dict]:
    rows = []
    for name, (model, shape) in networks().items():
        if name == "digits conv net":
            continue
        floor = floor_step(model, shape)
        runs = {"ours": lambda: prune(model, "synflow", compression, iterations=100, input_shape=shape),
                "reference float32": lambda: reference_synflow(model, compression, input_shape=shape),
                "reference float64": lambda: reference_synflow(model, compression, input_shape=shape,
                                                               dtype=torch.float64),
                "floor x 100": lambda: [floor() for _ in range(100)]}
        for run in runs.values():            # warm up
            run()
        times = {k: [] for k in runs}
        for _ in range(rounds):               # interleaved: every round runs each once
            for key, run in runs.items():
                t = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"network": name, "compression": compression, "rounds": rounds,
               "median_s": med, "all_s": times,
               "ref32_over_ours": med["reference float32"] / med["ours"],
               "ref64_over_ours": med["reference float64"] / med["ours"],
               "ours_over_floor": med["ours"] / med["floor x 100"]}
        rows.append(row)
        print(f"{name:17s}: ours {1e3 * med['ours']:7.1f} ms, reference float32 "
              f"{1e3 * med['reference float32']:7.1f} ms, float64 {1e3 * med['reference float64']:7.1f} ms, "
              f"floor x 100 {1e3 * med['floor x 100']:6.1f} ms | reference32/ours {row['ref32_over_ours']:.2f}x, "
              f"reference64/ours {row['ref64_over_ours']:.2f}x, ours/floor {row['ours_over_floor']:.1f}x",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compressions", type=float, nargs="+", default=[10.0, 100.0, 1000.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="initialisations compared")
    parser.add_argument("--save", action="store_true", help="write results/bench_pruning.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); masks first, then {args.rounds} "
          f"interleaved timing rounds of SynFlow, 100 iterations")
    masks = compare_masks(args.compressions, args.seeds)
    timing = time_prune(args.rounds)
    if args.save:
        from utils.results import save_results

        argv = " ".join(sys.argv[1:])
        path = save_results("bench_pruning", {"masks": masks, "timing": timing},
                            command=f"python benchmarks/bench_pruning.py {argv}".strip(), seeds=args.seeds)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
