"""Per-example gradient norms: what they cost next to one ordinary forward + backward pass.

Chapter 6 (``chapters/06_per_example_gradients.ipynb``) claims that the norm trick of notes eq 10
{cite}`goodfellow2015perexample` costs about as much as the ordinary training step, and less than
the packages that compute the same numbers. This script measures it, on the MLPs 784-300-100-10
("small") and 784-1000-1000-10 ("large") and on the chapter's digits conv net
(``utils.pruning.digits_convnet``), float32, batch 64 and 256. Every method does one training
step's worth of work on the same batch with a *mean* loss (PyTorch's default) and returns the
per-example norms ``||dL^(j)/dtheta||``:

* ``standard``: ``F.cross_entropy(model(x), y).backward()``, the ordinary step (the denominator);
* ``hooks``: the same step with the book's ``NormTracker`` attached but no norm read (the fixed
  cost of capturing ``H`` and ``Zbar`` alone; "capture only" in the chapter's table);
* ``trick``: one ``NormTracker`` built once and attached around each step (``with tracker:``,
  which puts its recorders in front of the layers' ``forward`` and takes them out again, so the
  other methods on the same model run without them), the ordinary step, then ``tracker.norms()``;
* ``trick_ctx``: the same inside ``with track_norms(model, "mean")``, which also builds the tracker
  (finds the layers) every step;
* ``backpack``: BackPACK's ``BatchL2Grad`` {cite}`dangel2020backpack` (mean loss: its
  ``batch_l2`` are of ``L^(j)/B``, so the norms are multiplied by ``B``);
* ``opacus_ghost``: Opacus's ``GradSampleModuleFastGradientClipping`` with ghost clipping
  {cite}`yousefpour2021opacus` (``loss_reduction="mean"``), norms from ``get_norm_sample()``;
* ``opacus``: Opacus's materialising ``GradSampleModule`` (``loss_reduction="mean"``), norms of
  ``grad_sample``;
* ``vmap``: ``torch.func`` ``vmap(grad(...))`` materialising all ``B x P`` per-example gradients,
  then their norms with ``torch.linalg.vector_norm`` per parameter (no full-size temporary);
* ``naive``: ``B`` separate forward + backward passes, one per example.

Correct first: before anything is timed, every method's norms are compared with ``vmap`` on the
same batch (max relative difference printed and asserted <= 1e-5, float32), and ``vmap`` itself
with a float64 loop over examples. Then all methods are timed in interleaved rounds, in a random
order each round (seeded); the slow ones (``vmap``, ``naive``, ``opacus``) every
``--slow-every`` rounds inside the same loop, so all methods see the same machine state. Each call
is timed twice, by the wall clock and by the process's CPU time (at one thread the CPU-time ratio
is robust to other jobs on a shared machine; at two threads it also counts the second thread's
work). ``--runs N`` repeats the interleaved timing N times with the orders seeded ``--seed``,
``--seed + 1``, ...; the tables give the median over the runs and the results file keeps every
run's ratios, whose spread is the run-to-run noise. It prints medians and each method's ratio to
``standard``, the targets of issue 17 (trick <= 1.10x on the large MLP at B = 256, <= 1.20x on
the small MLP at B = 64, faster than BackPACK and Opacus ghost clipping everywhere), with the
range over the runs, the breakdown of the trick's fixed cost, and the peak-memory growth of one
call of each method in a fresh process. ``--save`` writes everything to
``results/per_example_bench.json`` with its provenance (``utils.results.save_results``); the
chapter prints its table from that file.

BackPACK is a benchmark-only extra (``requirements-bench.txt``, installed by ``make bench``);
a method whose package is missing is reported as skipped.

Run:  python benchmarks/bench_per_example.py [--rounds 200] [--runs 3] [--threads 1 2] [--quick]
      [--save]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from utils.models import mlp  # noqa: E402
from utils.per_example import NormTracker, norms_from_grads, per_example_grads, track_norms  # noqa: E402
from utils.pruning import digits_convnet  # noqa: E402
from utils.results import current_commit  # noqa: E402

MODELS = {"small": "MLP 784-300-100-10", "large": "MLP 784-1000-1000-10",
          "conv": "digits conv net (3 conv 3x3 + linear)"}
BATCHES = (64, 256)
TARGET = {("large", 256): 1.10, ("small", 64): 1.20}
FAST = ("standard", "hooks", "trick", "trick_ctx", "backpack", "opacus_ghost")
SLOW = ("vmap", "naive", "opacus")
MEMORY = ("standard", "trick", "vmap", "opacus")      # peak memory measured for these
TOL = 1e-5


def ce_none(output, target):
    return F.cross_entropy(output, target, reduction="none")


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if name == "conv":
        return digits_convnet(seed=seed)
    return mlp([784, 300, 100, 10] if name == "small" else [784, 1000, 1000, 10])


def setup(name: str, batch: int, seed: int = 0):
    model = build(name, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 64 if name == "conv" else 784, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return model, x, y


def make_methods(model, x, y) -> dict:
    """name -> zero-argument callable doing one step of the method on (x, y), returning norms."""
    batch = len(x)

    def standard():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    tracker = NormTracker(model, "mean")      # built once; attached around each step below

    def hooks():
        with tracker:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            tracker.reset()

    def trick():
        with tracker:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            return tracker.norms()

    def trick_ctx():
        model.zero_grad(set_to_none=True)
        with track_norms(model, reduction="mean") as t:
            F.cross_entropy(model(x), y).backward()
        return t.norms()

    def vmap():
        return norms_from_grads(per_example_grads(model, ce_none, x, y))

    def naive():
        return loop_norms(model, x, y)

    methods = {"standard": standard, "hooks": hooks, "trick": trick, "trick_ctx": trick_ctx,
               "vmap": vmap, "naive": naive}

    try:  # BackPACK's BatchL2Grad: squared norms of the per-example gradients of the *mean* loss
        from backpack import backpack, extend
        from backpack.extensions import BatchL2Grad

        bp_model = extend(copy.deepcopy(model))
        bp_loss = extend(torch.nn.CrossEntropyLoss())

        def backpack_norms():
            bp_model.zero_grad(set_to_none=True)
            with backpack(BatchL2Grad()):
                bp_loss(bp_model(x), y).backward()
            sq = torch.stack([p.batch_l2 for p in bp_model.parameters()]).sum(0)
            return sq.sqrt() * batch          # mean loss: batch_l2 is of L^(j) / B

        methods["backpack"] = backpack_norms
    except ImportError:
        pass

    try:  # Opacus: ghost clipping's norm pass, and the materialising GradSampleModule
        from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ghost = GradSampleModuleFastGradientClipping(
                copy.deepcopy(model), loss_reduction="mean", use_ghost_clipping=True)
            gsm = GradSampleModule(copy.deepcopy(model), loss_reduction="mean")

        def opacus_ghost():
            ghost.zero_grad(set_to_none=True)
            F.cross_entropy(ghost(x), y).backward()
            return ghost.get_norm_sample()

        def opacus():
            gsm.zero_grad(set_to_none=True)
            F.cross_entropy(gsm(x), y).backward()
            return torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.grad_sample.flatten(1), dim=1)
                 for p in gsm.parameters()]), dim=0)

        methods["opacus_ghost"] = opacus_ghost
        methods["opacus"] = opacus
    except ImportError:
        pass
    return methods


def loop_norms(model, x, y) -> torch.Tensor:
    """Per-example gradient norms by one backward pass per example (eq 9), in x's dtype."""
    out = torch.empty(len(x), dtype=x.dtype)
    for j in range(len(x)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[j:j + 1]), y[j:j + 1]).backward()
        out[j] = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    return out


def float64_loop(name: str, batch: int) -> torch.Tensor:
    """The definition, eq 9, in float64: one backward pass per example."""
    model, x, y = setup(name, batch)
    return loop_norms(model.double(), x.double(), y)


def check(name: str, batch: int, methods: dict) -> dict:
    """Max relative difference of every method's norms from vmap's; vmap's from a float64 loop."""
    ref = methods["vmap"]()
    exact = float64_loop(name, batch)
    errors = {"vmap_vs_float64_loop": float(((ref.double() - exact).abs() / exact).max())}
    for m, fn in methods.items():
        if m in ("standard", "hooks", "vmap"):
            continue
        norms = fn().detach()
        errors[m] = float(((norms - ref).abs() / ref).max())
    bad = {m: e for m, e in errors.items() if not e <= TOL}
    if bad:
        raise AssertionError(f"{MODELS[name]}, B={batch}: norms differ from vmap by more than "
                             f"{TOL:g} (relative): {bad}")
    return errors


def interleaved(methods: dict, rounds: int, slow_every: int, seed: int) -> dict:
    """One run: ``rounds`` rounds of every method in a random order (seeded), the slow ones every
    ``slow_every``-th round; each method's median wall and CPU time and its ratios to standard."""
    times = {m: [] for m in methods}
    cpu = {m: [] for m in methods}
    fast = [m for m in methods if m in FAST]
    slow = [m for m in methods if m in SLOW]
    rng = random.Random(seed)
    for r in range(rounds):
        order = fast + (slow if r % slow_every == 0 else [])
        rng.shuffle(order)
        for m in order:
            c0, t0 = time.process_time(), time.perf_counter()
            methods[m]()
            times[m].append(time.perf_counter() - t0)
            cpu[m].append(time.process_time() - c0)
    med = {m: statistics.median(v) for m, v in times.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    return {"median_s": med, "median_cpu_s": med_cpu,
            "samples": {m: len(v) for m, v in times.items()},
            "ratio": {m: med[m] / med["standard"] for m in med},
            "cpu_ratio": {m: med_cpu[m] / med_cpu["standard"] for m in med_cpu}}


def time_config(name: str, batch: int, rounds: int, slow_every: int, seeds: list[int],
                with_slow: bool = True) -> dict:
    """Check every method, then one interleaved run per seed; the row holds the medians over
    the runs and, under ``runs``, each run's ratios (their spread is the run-to-run noise)."""
    model, x, y = setup(name, batch)
    methods = make_methods(model, x, y)
    errors = check(name, batch, methods)          # correct first, then fast
    if not with_slow:        # checked all the same, then not timed
        methods = {m: fn for m, fn in methods.items() if m not in SLOW}
    for fn in methods.values():                   # warm-up
        fn()
    runs = [interleaved(methods, rounds, slow_every, seed) for seed in seeds]

    def over_runs(key: str) -> dict:
        return {m: statistics.median(run[key][m] for run in runs) for m in methods}

    return {"model": name, "batch": batch, "threads": torch.get_num_threads(),
            "max_rel_diff_vs_vmap": errors,
            **{key: over_runs(key) for key in ("median_s", "median_cpu_s", "ratio", "cpu_ratio")},
            "samples": {m: sum(run["samples"][m] for run in runs) for m in methods},
            "runs": {"seeds": list(seeds),
                     "ratio": {m: [run["ratio"][m] for run in runs] for m in methods},
                     "cpu_ratio": {m: [run["cpu_ratio"][m] for run in runs] for m in methods}}}


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name: str, batch: int, method: str) -> None:
    """In a fresh process: peak-RSS growth (MiB) of one call of ``method`` after setup and warm-up.

    On Linux the peak (VmHWM) is reset to the current RSS just before the call
    (``/proc/self/clear_refs``), so import-time peaks do not hide the method's own allocations;
    elsewhere ``ru_maxrss`` is used.
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
        scale = 1 / 1024 if sys.platform == "darwin" else 1   # ru_maxrss: bytes on macOS
        growth_kib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * scale
    print(json.dumps(growth_kib / 1024))


def memory_growth(name: str, batch: int, method: str) -> float | None:
    out = subprocess.run([sys.executable, __file__, "--memory-child", name, str(batch), method],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions() -> dict:
    found = {"torch": torch.__version__}
    for module, dist in (("opacus", "opacus"), ("backpack", "backpack-for-pytorch")):
        try:
            from importlib.metadata import version
            __import__(module)
            found[dist] = version(dist)
        except ImportError:
            found[dist] = None
    return found


def print_row(row: dict) -> None:
    print(f"\n{MODELS[row['model']]}, batch {row['batch']}, {row['threads']} thread(s); "
          "max rel. diff vs vmap: "
          + ", ".join(f"{m} {e:.1e}" for m, e in row["max_rel_diff_vs_vmap"].items()))
    mem = "memory_MiB" in row
    print(f"  {'method':<13}{'median ms':>11}{'x standard':>12}{'x (CPU)':>9}{'samples':>9}"
          + (f"{'peak +MiB':>11}" if mem else ""))
    for m in sorted(row["median_s"], key=row["ratio"].get):
        extra = ""
        if mem:
            v = row["memory_MiB"].get(m)
            extra = f"{v:>11.1f}" if v is not None else f"{'-':>11}"
        print(f"  {m:<13}{1e3 * row['median_s'][m]:>11.3f}{row['ratio'][m]:>12.2f}"
              f"{row['cpu_ratio'][m]:>9.2f}{row['samples'][m]:>9}{extra}")


def summary(rows: list[dict]) -> dict:
    """Targets of issue 17 and the fixed-cost breakdown, from the rows."""
    out = {"targets": [], "fastest_norm_method": [], "breakdown": []}
    for row in rows:
        r = row["ratio"]
        key = (row["model"], row["batch"])
        if key in TARGET:
            out["targets"].append({"model": row["model"], "batch": row["batch"],
                                   "threads": row["threads"], "target": TARGET[key],
                                   "trick": r["trick"], "trick_cpu": row["cpu_ratio"]["trick"],
                                   "trick_runs": row["runs"]["ratio"]["trick"],
                                   "trick_cpu_runs": row["runs"]["cpu_ratio"]["trick"],
                                   "met": r["trick"] <= TARGET[key]})
        rivals = {m: r[m] for m in ("backpack", "opacus_ghost") if m in r}
        out["fastest_norm_method"].append({
            "model": row["model"], "batch": row["batch"], "threads": row["threads"],
            "trick": r["trick"], **rivals,
            "trick_fastest": all(r["trick"] < v for v in rivals.values())})
        out["breakdown"].append({
            "model": row["model"], "batch": row["batch"], "threads": row["threads"],
            "hooks": r["hooks"] - 1.0, "norms": r["trick"] - r["hooks"],
            "build_per_step": r["trick_ctx"] - r["trick"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds")
    parser.add_argument("--slow-every", type=int, default=10,
                        help="time vmap / naive / opacus every this many rounds")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch.set_num_threads values, one full run each")
    parser.add_argument("--slow-threads", type=int, nargs="+", default=[1],
                        help="thread counts at which vmap / naive / opacus are timed")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--quick", action="store_true",
                        help="10 rounds, no memory measurement, nothing saved (a smoke test)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the fresh-subprocess memory measurement")
    parser.add_argument("--save", action="store_true",
                        help="write results/per_example_bench.json (the chapter's table)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run's order")
    parser.add_argument("--runs", type=int, default=1,
                        help="interleaved runs per configuration (seeds --seed, --seed + 1, ...); "
                             "the tables give the median over the runs, the targets its range")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODEL", "BATCH", "METHOD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    # BackPACK and Opacus hook whole modules; PyTorch warns that the first layer's input needs no
    # gradient, which is expected here
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    if args.memory_child:
        name, batch, method = args.memory_child
        memory_child(name, int(batch), method)
        return
    if args.quick:
        args.rounds, args.no_memory, args.save, args.slow_every = 10, True, False, 5
    if args.runs < 1 or args.rounds < 1 or args.slow_every < 1:
        parser.error("--runs, --rounds and --slow-every must be at least 1")
    load_before = os.getloadavg()
    started = time.time()
    args.commit = current_commit()      # before --save rewrites a tracked file of this tree
    args.started = _utc_now()
    print(f"{versions()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"float32, {args.runs} run(s) of {args.rounds} interleaved rounds, slow methods every "
          f"{args.slow_every}; "
          f"load average {load_before[0]:.2f}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.models:
            for batch in BATCHES:
                row = time_config(name, batch, args.rounds, args.slow_every, seeds(args),
                                  with_slow=threads in args.slow_threads)
                if not args.no_memory and threads == args.threads[0]:
                    row["memory_MiB"] = {m: memory_growth(name, batch, m) for m in MEMORY
                                         if m in row["median_s"]}
                rows.append(row)
                print_row(row)
                if args.save:        # after every configuration: a cut-short run keeps its rows
                    save(args, rows, load_before, complete=False)
    result = summary(rows)
    print("\ntargets (trick / standard):")
    for t in result["targets"]:
        print(f"  {t['model']:6} B={t['batch']:<4} {t['threads']} thread(s): {t['trick']:.3f}x "
              f"(runs {min(t['trick_runs']):.3f}-{max(t['trick_runs']):.3f}; CPU time "
              f"{t['trick_cpu']:.3f}x, runs {min(t['trick_cpu_runs']):.3f}-"
              f"{max(t['trick_cpu_runs']):.3f}; target <= {t['target']:.2f}x) "
              f"{'met' if t['met'] else 'NOT met'}")
    print("trick faster than BackPACK and Opacus ghost clipping in "
          f"{sum(f['trick_fastest'] for f in result['fastest_norm_method'])} of "
          f"{len(result['fastest_norm_method'])} configurations")
    print("fixed cost of the trick (fractions of the standard step): hooks / norms / "
          "building a tracker per step")
    for b in result["breakdown"]:
        print(f"  {b['model']:6} B={b['batch']:<4} {b['threads']} thread(s): {b['hooks']:+.3f} / "
              f"{b['norms']:+.3f} / {b['build_per_step']:+.3f}")
    missing = [m for m in ("backpack", "opacus", "opacus_ghost") if m not in rows[0]["median_s"]]
    if missing:
        print(f"\nnot installed, skipped: {', '.join(missing)} (pip install -r requirements-bench.txt)")
    load_after = os.getloadavg()
    print(f"load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"(the machine may be shared: ratios, not absolute times); {time.time() - started:.0f} s")
    if args.save:
        path = save(args, rows, load_before, complete=True)
        print(f"wrote {path.relative_to(ROOT)}")


def save(args, rows: list[dict], load_before: tuple, complete: bool) -> Path:
    from utils.results import save_results
    command = "python benchmarks/bench_per_example.py " + " ".join(sys.argv[1:])
    data = {"rows": rows, **summary(rows), "versions": versions(), "complete": complete,
            "started": args.started, "written": _utc_now(),
            "rounds": args.rounds, "slow_every": args.slow_every,
            "slow_threads": args.slow_threads, "tolerance_vs_vmap": TOL,
            "load_average_1min": [load_before[0], os.getloadavg()[0]],
            "cpu": platform.processor() or platform.machine(), "models": MODELS}
    return save_results("per_example_bench", data, command=command.strip(), seeds=seeds(args),
                        commit=args.commit)


def seeds(args) -> list[int]:
    return list(range(args.seed, args.seed + args.runs))


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    main()
