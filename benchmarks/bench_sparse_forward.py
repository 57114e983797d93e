"""Forward time of a pruned MLP in four representations, against the fraction pruned k.

Chapter 5 (``chapters/05_weight_vs_unit.ipynb``) redoes the timing study of note 002 (its
Figure 5). The network is the note's: a bias-free ReLU MLP 784-1000-1000-500-200-10 (PyTorch's
default initialisation; the time of a forward pass depends on the sparsity pattern, not on the
values). At each k it is pruned layer-wise (the output layer stays dense) and run as

* ``dense (zeros in)``: the weight-pruned network as ordinary dense matrices with zeros in them;
* ``coo`` / ``csr``: the weight-pruned network with ``torch.sparse`` COO / CSR weights
  (``utils.sparse.to_sparse_model``);
* ``shrunk (unit)``: the unit-pruned network as smaller dense matrices
  (``utils.sparse.shrink_units``);

next to the unpruned dense network. All representations at all k are timed **interleaved** (each
round runs every one once, in a fresh random order: ``utils.sparse.time_interleaved``), on CPU,
and the medians are reported as ratios to the dense reference, which are robust to the machine's
load. The reference is the median of the medians of the 11 dense-equivalent variants (the unpruned
network and "dense (zeros in)" at every k), which all do the same work. Each representation's
output is checked against the masked dense network first.
It prints a table and the crossover k of each representation (from where it stays faster than
dense), and writes ``results/sparse_forward.json`` with its provenance.

Run:  python benchmarks/bench_sparse_forward.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from utils.models import mlp  # noqa: E402
from utils.results import save_results  # noqa: E402
from utils.sparse import (REPRESENTATIONS as REPS, crossover, forward_flops,  # noqa: E402
                          masked_copy, prune_units_layerwise, pruned_representations,
                          time_interleaved, weight_bytes)

SIZES = [784, 1000, 1000, 500, 200, 10]
KS = [0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, nargs="+", default=[21, 9],
                        help="timed rounds for each batch size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if len(args.repeats) != len(args.batches):
        parser.error("give one --repeats value per batch size")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = mlp(SIZES, bias=False).eval()
    nets = {k: pruned_representations(model, k) for k in KS}
    g = torch.Generator().manual_seed(args.seed)
    x_check = torch.rand(8, SIZES[0], generator=g)
    with torch.inference_mode():
        for k, reps in nets.items():
            ref = reps["dense (zeros in)"](x_check)
            for rep in ("coo", "csr"):
                assert torch.allclose(reps[rep](x_check), ref, atol=1e-5), (k, rep)
            unit_ref = masked_copy(model, prune_units_layerwise(model, k))(x_check)
            assert torch.allclose(reps["shrunk (unit)"](x_check), unit_ref, atol=1e-5), k

    rows, crossings = [], {}
    print(f"torch {torch.__version__}, {args.threads} thread(s); MLP {SIZES}, no biases")
    for batch, repeats in zip(args.batches, args.repeats):
        x = torch.rand(batch, SIZES[0], generator=g)
        fns = {("dense", 0.0): (lambda m=model: m(x))}
        for k, reps in nets.items():
            for rep, net in reps.items():
                fns[(rep, k)] = (lambda m=net: m(x))
        keyed = {f"{rep}|{k}": fn for (rep, k), fn in fns.items()}
        med = time_interleaved(keyed, repeats=repeats, warmup=1, seed=args.seed)
        # every dense-equivalent variant (the unpruned net, and zeros-in at each k) does the same
        # work; the median of their medians is a reference that one unlucky key cannot move
        dense = statistics.median([med["dense|0.0"]] +
                                  [med[f"dense (zeros in)|{k}"] for k in nets])
        print(f"\nbatch {batch}: dense forward {1e3 * dense:.2f} ms (median over the dense "
              f"variants of their medians of {repeats} rounds); time / dense time:")
        print(f"{'k':>5s}" + "".join(f"{rep:>18s}" for rep in REPS))
        for k, reps in nets.items():
            times = {rep: med[f"{rep}|{k}"] for rep in REPS}
            ratio = {rep: t / dense for rep, t in times.items()}
            rows.append({"batch": batch, "k": k, "time_ms": {r: 1e3 * t for r, t in times.items()},
                         "ratio": ratio,
                         "gflops": {r: forward_flops(n, batch) / 1e9 for r, n in reps.items()},
                         "mbytes": {r: weight_bytes(n) / 1e6 for r, n in reps.items()}})
            print(f"{k:5.2f}" + "".join(f"{ratio[rep]:18.3f}" for rep in REPS))
        crossings[str(batch)] = {
            rep: crossover(KS, [r["ratio"][rep] for r in rows if r["batch"] == batch])
            for rep in REPS[1:]}
        print("crossover k (faster than dense from there on):", crossings[str(batch)])
        rows[-1]["dense_ms"] = 1e3 * dense
    last_rows = [x for x in rows if "dense_ms" in x]
    data = {"sizes": SIZES, "ks": KS, "representations": list(REPS), "batches": args.batches,
            "repeats": args.repeats, "rows": rows, "crossover": crossings,
            "dense_ms": {str(b): r["dense_ms"] for b, r in zip(args.batches, last_rows)}}
    if not args.no_save:
        path = save_results("sparse_forward", data,
                            command=f"python benchmarks/bench_sparse_forward.py --threads "
                                    f"{args.threads}", seeds=[args.seed])
        print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
