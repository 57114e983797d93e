"""Per-example gradient norms: what they cost next to one ordinary forward + backward pass.

Chapter 6 (``chapters/06_per_example_gradients.ipynb``) claims that the norm trick of notes eq 10
{cite}`goodfellow2015perexample` costs about as much as the ordinary training step. This script
measures it. For MLPs 784-300-100-10 and 784-1000-1000-10, float32, batch 64 and 256, it times,
in interleaved rounds on the same inputs:

* ``standard``: ``F.cross_entropy(model(x), y).backward()``, the ordinary step (the denominator);
* ``trick``: the same step inside ``utils.per_example.track_norms`` followed by ``tracker.norms()``,
  i.e. the ordinary batch gradient *and* every per-example norm;
* ``vmap``: ``torch.func`` ``vmap(grad(...))`` materialising all ``B x P`` per-example gradients,
  then their norms (``utils.per_example.per_example_grads``);
* ``naive``: ``B`` separate forward + backward passes, one per example;
* ``opacus`` / ``backpack``: only when those packages are installed (optional, not in requirements).

Every round times ``standard`` and ``trick`` (in alternating order); the slow methods are timed
every ``--slow-every`` rounds, inside the same loop, so all methods see the same machine state.
It prints medians, each method's ratio to ``standard``, whether the targets (trick <= 1.10x on the
large MLP, <= 1.20x on the small one) are met, and the peak-memory growth (max RSS) of one call of
each method measured in a fresh subprocess.

Run:  python benchmarks/bench_per_example.py [--rounds 100] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from utils.models import mlp  # noqa: E402
from utils.per_example import norms_from_grads, per_example_grads, track_norms  # noqa: E402

SIZES = {"small": [784, 300, 100, 10], "large": [784, 1000, 1000, 10]}
TARGET = {"small": 1.20, "large": 1.10}
FAST = ("standard", "trick")


def ce_none(output, target):
    return F.cross_entropy(output, target, reduction="none")


def make_methods(model, x, y):
    """name -> zero-argument callable doing one call of the method on (x, y)."""

    def standard():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def trick():
        model.zero_grad(set_to_none=True)
        with track_norms(model, reduction="mean") as tracker:
            F.cross_entropy(model(x), y).backward()
        return tracker.norms()

    def vmap():
        return norms_from_grads(per_example_grads(model, ce_none, x, y))

    def naive():
        out = torch.empty(len(x))
        for j in range(len(x)):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[j:j + 1]), y[j:j + 1]).backward()
            out[j] = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
        return out

    methods = {"standard": standard, "trick": trick, "vmap": vmap, "naive": naive}

    try:  # optional: BackPACK's BatchL2Grad extension
        from backpack import backpack, extend
        from backpack.extensions import BatchL2Grad

        bp_model = extend(mlp(SIZES_BY_MODEL[id(model)]))
        bp_model.load_state_dict(model.state_dict())
        bp_loss = extend(torch.nn.CrossEntropyLoss())

        def backpack_norms():
            bp_model.zero_grad(set_to_none=True)
            with backpack(BatchL2Grad()):
                bp_loss(bp_model(x), y).backward()
            return sum(p.batch_l2 for p in bp_model.parameters()).sqrt()

        methods["backpack"] = backpack_norms
    except ImportError:
        pass

    try:  # optional: Opacus' GradSampleModule (materialises per-sample gradients with hooks)
        from opacus import GradSampleModule

        op_model = GradSampleModule(mlp(SIZES_BY_MODEL[id(model)]))
        op_model._module.load_state_dict(model.state_dict())

        def opacus_norms():
            op_model.zero_grad(set_to_none=True)
            F.cross_entropy(op_model(x), y, reduction="sum").backward()
            return torch.stack([p.grad_sample.flatten(1).pow(2).sum(1) for p in op_model.parameters()]).sum(0).sqrt()

        methods["opacus"] = opacus_norms
    except ImportError:
        pass
    return methods


SIZES_BY_MODEL: dict[int, list[int]] = {}


def setup(name: str, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = mlp(SIZES[name])
    SIZES_BY_MODEL[id(model)] = SIZES[name]
    x = torch.randn(batch, 784)
    y = torch.randint(0, 10, (batch,))
    return model, x, y


def check_agreement(methods) -> float:
    """Largest relative difference between the trick's norms and the vmap reference (float32)."""
    trick, ref = methods["trick"](), methods["vmap"]()
    return float(((trick - ref).abs() / ref).max())


def time_config(name: str, batch: int, rounds: int, slow_every: int) -> dict:
    model, x, y = setup(name, batch)
    methods = make_methods(model, x, y)
    rel_err = check_agreement(methods)
    for fn in methods.values():      # warm-up
        fn()
    times = {m: [] for m in methods}
    slow = [m for m in methods if m not in FAST]
    for r in range(rounds):
        order = list(FAST) if r % 2 == 0 else list(reversed(FAST))
        if r % slow_every == 0:
            order += slow
        for m in order:
            t0 = time.perf_counter()
            methods[m]()
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) for m, v in times.items()}
    return {"model": name, "batch": batch, "rel_err_vs_vmap": rel_err,
            "median_s": med, "samples": {m: len(v) for m, v in times.items()},
            "ratio": {m: med[m] / med["standard"] for m in med}}


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name: str, batch: int, method: str) -> None:
    """In a fresh process: peak-RSS growth (MiB) of one call of ``method`` after model and data exist.

    On Linux the peak (VmHWM) is reset to the current RSS just before the call (``/proc/self/clear_refs``),
    so import-time peaks do not hide the method's own allocations; elsewhere ``ru_maxrss`` is used.
    """
    torch.set_num_threads(1)
    model, x, y = setup(name, batch)
    methods = make_methods(model, x, y)
    if method not in methods:
        print(json.dumps(None))
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_status_kib("VmRSS")
        methods[method]()
        growth_kib = _proc_status_kib("VmHWM") - before
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        methods[method]()
        scale = 1 / 1024 if sys.platform == "darwin" else 1     # ru_maxrss: bytes on macOS, KiB on Linux
        growth_kib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * scale
    print(json.dumps(growth_kib / 1024))


def memory_growth(name: str, batch: int, method: str) -> float | None:
    out = subprocess.run([sys.executable, __file__, "--memory-child", name, str(batch), method],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds (>= 100 for the chapter's table)")
    parser.add_argument("--slow-every", type=int, default=5, help="time vmap/naive/... every this many rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (fixed for the whole run)")
    parser.add_argument("--quick", action="store_true", help="10 rounds, no memory measurement (a smoke test)")
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-subprocess memory measurement")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODEL", "BATCH", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, batch, method = args.memory_child
        memory_child(name, int(batch), method)
        return
    if args.quick:
        args.rounds, args.no_memory = 10, True
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s), float32, {args.rounds} interleaved rounds, "
          f"slow methods every {args.slow_every} rounds")
    rows = []
    for name in SIZES:
        for batch in (64, 256):
            row = time_config(name, batch, args.rounds, args.slow_every)
            if not args.no_memory:
                row["memory_MiB"] = {m: memory_growth(name, batch, m) for m in row["median_s"]}
            rows.append(row)
            sizes = "-".join(map(str, SIZES[name]))
            print(f"\nMLP {sizes}, batch {batch}: trick vs vmap max rel. diff {row['rel_err_vs_vmap']:.1e}")
            print(f"  {'method':<10}{'median ms':>11}{'x standard':>12}{'samples':>9}"
                  + (f"{'peak mem +MiB':>15}" if "memory_MiB" in row else ""))
            for m, t in row["median_s"].items():
                mem = f"{row['memory_MiB'][m]:>15.1f}" if "memory_MiB" in row else ""
                print(f"  {m:<10}{1e3 * t:>11.2f}{row['ratio'][m]:>12.2f}{row['samples'][m]:>9}{mem}")
            ok = row["ratio"]["trick"] <= TARGET[name]
            print(f"  target trick <= {TARGET[name]:.2f}x standard: {'met' if ok else 'NOT met'} "
                  f"({row['ratio']['trick']:.3f}x)")
    missing = [p for p in ("opacus", "backpack") if p not in rows[0]["median_s"]]
    if missing:
        print(f"\nnot installed (optional extras, skipped): {', '.join(missing)}")


if __name__ == "__main__":
    main()
