"""Soak test: execute notebooks headless many times and count stalls (issue 12).

Not part of ``make test`` (it takes tens of minutes); run it with ``make soak`` or e.g.

    .venv/bin/python tests/soak_notebooks.py --runs 20 --cell-timeout 60 --busy 1

Each execution is what the book build and the Colab-style test do: nbclient, a fresh kernel,
standard input closed, a per-cell timeout. A *stall* is a cell that the kernel finished (it
reported itself idle on iopub) but whose reply reached the client 5 s or more later, or never
(ipykernel issue 1554: with ipykernel 7 the lost reply turned up only when nbclient's timeout
fired). A cell still running at the timeout is reported as *slow*, not as a stall.
``--busy N`` keeps N cores busy with spin loops beside the soak, as on a loaded CI machine.
Prints one line per execution and a summary: runs, stalls, the slowest cell of each notebook.
Exit status 1 when any execution stalled or failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import reliable_replies  # noqa: E402  (the client-side fix the soak tests; --no-fix leaves it out)


def _spin(parent: int) -> None:  # pragma: no cover - a busy core
    while os.getppid() == parent:  # stops when the soak does, even if it was killed
        for _ in range(1_000_000):
            pass


def _notebooks(names: list[str]) -> list[Path]:
    if names:
        return [Path(n).resolve() for n in names]
    return sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))


class _TimedClient(NotebookClient):
    """nbclient that notes when the kernel reports each cell finished (iopub status idle)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle_at: dict[int, float] = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            self.idle_at.setdefault(cell_index, time.perf_counter())
        return super().process_message(msg, cell, cell_index)


def execute_once(path: Path, cell_timeout: int, lag_limit: float = 5.0,
                 cwd: Path | None = None) -> dict:
    """Execute ``path`` once; return its outcome, wall time, slowest cell and worst reply lag.

    Outcomes: ``ok``; ``stall`` when the kernel had finished a cell (iopub idle) but its reply
    reached the client only ``lag_limit`` seconds later or never (the ipykernel 7 race);
    ``slow`` when a cell was still running at the timeout (an overloaded machine, not a stall);
    ``error`` when a cell raised. ``cwd``: the folder to run in (default: the notebook's).
    """
    nb = nbformat.read(path, as_version=4)
    client = _TimedClient(nb, timeout=cell_timeout, kernel_name="python3",
                          resources={"metadata": {"path": str(cwd or path.parent)}})
    starts: dict[int, float] = {}
    durations: dict[int, float] = {}
    lags: dict[int, float] = {}

    def executed(cell, cell_index, execute_reply):
        now = time.perf_counter()
        durations[cell_index] = now - starts[cell_index]
        lags[cell_index] = now - client.idle_at.get(cell_index, now)

    client.on_cell_execute = lambda cell, cell_index: starts.__setitem__(
        cell_index, time.perf_counter())
    client.on_cell_executed = executed
    outcome, detail = "ok", ""
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellTimeoutError:
        running = max(starts) if starts else -1
        # idle before the deadline: the kernel had finished and the reply never came; idle
        # after it: the cell was still running when the timeout fired
        deadline = starts.get(running, 0.0) + cell_timeout
        if client.idle_at.get(running, float("inf")) < deadline - 1.0:
            outcome = "stall"
            detail = f"cell {running}: kernel idle, no reply before the timeout"
        else:
            outcome, detail = "slow", f"cell {running} still running at the timeout"
    except Exception as err:  # a failing cell is a failure, not a stall
        outcome, detail = "error", f"{type(err).__name__}: {str(err).splitlines()[0][:100]}"
    wall = time.perf_counter() - t0
    slowest = max(durations.items(), key=lambda kv: kv[1]) if durations else (-1, 0.0)
    worst_lag = max(lags.items(), key=lambda kv: kv[1]) if lags else (-1, 0.0)
    if outcome == "ok" and worst_lag[1] >= lag_limit:
        outcome = "stall"
        detail = f"cell {worst_lag[0]}: reply {worst_lag[1]:.1f} s after the kernel went idle"
    return {"notebook": path.name, "outcome": outcome, "wall": wall,
            "slowest_cell": slowest[0], "slowest_time": slowest[1],
            "worst_lag": worst_lag[1], "detail": detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebook of the book")
    parser.add_argument("--runs", type=int, default=20, help="executions per notebook")
    parser.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell")
    parser.add_argument("--busy", type=int, default=1, help="cores to keep busy beside the soak")
    parser.add_argument("--json", type=Path, help="also write every execution's record here")
    parser.add_argument("--no-fix", action="store_true",
                        help="leave out book/_ext/reliable_replies.py (to reproduce the stall)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cell_timeout < 1 or args.busy < 0:
        parser.error("--runs and --cell-timeout must be >= 1, --busy >= 0")

    if not args.no_fix:
        reliable_replies.install()
    os.environ.setdefault("BOOK_PROGRESS", "0")
    sys.stdin.close()  # as on CI: no standard input
    import jupyter_client, ipykernel, zmq  # noqa: E401  (versions for the report)
    print(f"ipykernel {ipykernel.__version__}, jupyter_client {jupyter_client.__version__}, "
          f"pyzmq {zmq.__version__}; {args.runs} runs per notebook, cell timeout "
          f"{args.cell_timeout} s, {args.busy} busy core(s), client fix "
          f"{'off' if args.no_fix else 'on'}", flush=True)
    spinners = [mp.Process(target=_spin, args=(os.getpid(),), daemon=True)
                for _ in range(args.busy)]
    for p in spinners:
        p.start()
    records = []
    notebooks = _notebooks(args.notebooks)
    try:
        for run in range(args.runs):
            for path in notebooks:
                r = execute_once(path, args.cell_timeout)
                r["run"] = run
                records.append(r)
                print(f"run {run:2d} {r['notebook']:32s} {r['outcome']:5s} {r['wall']:6.1f} s"
                      f"  slowest cell {r['slowest_cell']} ({r['slowest_time']:.1f} s),"
                      f" worst reply lag {r['worst_lag']:.2f} s {r['detail']}", flush=True)
    finally:
        for p in spinners:
            p.terminate()
    print("\nnotebook                      runs stalls slow errors median s  max s  slowest cell")
    for name in sorted({r["notebook"] for r in records}):
        rs = [r for r in records if r["notebook"] == name]
        walls = sorted(r["wall"] for r in rs)
        worst = max(rs, key=lambda r: r["slowest_time"])
        count = {k: sum(r["outcome"] == k for r in rs) for k in ("stall", "slow", "error")}
        print(f"{name:28s} {len(rs):5d} {count['stall']:6d} {count['slow']:4d} "
              f"{count['error']:6d} {walls[len(walls) // 2]:8.1f} {walls[-1]:6.1f}  "
              f"cell {worst['slowest_cell']} ({worst['slowest_time']:.1f} s)")
    stalls = sum(r["outcome"] == "stall" for r in records)
    errors = sum(r["outcome"] in ("error", "slow") for r in records)
    lag = max(r["worst_lag"] for r in records)
    print(f"\n{len(records)} executions, {stalls} stalls, {errors} errors or timeouts; "
          f"worst reply lag after the kernel went idle: {lag:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 1 if stalls or errors else 0


if __name__ == "__main__":
    sys.exit(main())
