"""Iterative SynFlow: time per pruning iteration next to one forward + backward pass (the floor).

Chapter 3 (``chapters/03_synflow.ipynb``) prunes with ``utils.pruning.prune(model, "synflow",
compression, iterations=100)``. Each iteration is one forward + backward pass of the linearised float64
network on an all-ones input, plus the global selection of the kept weights. This script times, in
interleaved rounds on the same machine state:

* ``prune``: ``prune(model, "synflow", 100, iterations=100)``, divided by 100 (time per iteration);
* ``floor``: one forward + backward pass of a float64 copy of the model on a single all-ones input,
  which is the autograd work an iteration cannot avoid;

for a LeNet-300-100-sized MLP (784-300-100-10) and the chapter's conv net for the 8x8 digits
(``utils.pruning.digits_convnet``: three 3x3 convolutions, 8/16/16 channels, then a linear layer).
It prints medians and the ratio prune-iteration / floor. No assertion: the numbers are for the chapter's notes.

Run:  python benchmarks/bench_pruning.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from utils.models import mlp  # noqa: E402
from utils.pruning import digits_convnet, prune  # noqa: E402


def floor_step(model: nn.Module, input_shape: tuple[int, ...]):
    work = copy.deepcopy(model).double().eval()
    x = torch.ones((1, *input_shape), dtype=torch.float64)
    weights = [m.weight for m in work.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]

    def step():
        torch.autograd.grad(work(x).sum(), weights)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = {"LeNet-300-100 MLP": (mlp([784, 300, 100, 10]), (784,)),
             "digits conv net": (digits_convnet(seed=0), (64,))}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, 100 SynFlow iterations")
    for name, (model, shape) in cases.items():
        n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
        floor = floor_step(model, shape)
        floor()
        per_iter, floors = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            prune(model, "synflow", 100, iterations=100, input_shape=shape)
            per_iter.append((time.perf_counter() - t) / 100)
            t = time.perf_counter()
            for _ in range(100):
                floor()
            floors.append((time.perf_counter() - t) / 100)
        a, b = statistics.median(per_iter), statistics.median(floors)
        print(f"{name:20s} {n:8d} weights: SynFlow iteration {1e3 * a:7.3f} ms, forward+backward floor "
              f"{1e3 * b:7.3f} ms, ratio {a / b:5.2f}x")


if __name__ == "__main__":
    main()
