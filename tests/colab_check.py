"""What Colab users get: every chapter alone, with the newest releases of Colab's packages (issue 12).

Not part of ``make test`` (it installs packages); run it with ``make colab-check``. Colab does not
install ``requirements.txt``: it has its own, usually newer, torch, numpy, matplotlib, ipywidgets,
scikit-learn, scipy and tqdm, and each chapter's setup cell installs only what is missing. This
script rebuilds that situation:

1. a fresh virtual environment (``_build/colab-env``) with the newest release of each of
   ``COLAB_PACKAGES`` that the package index offers, plus the kernel machinery pinned by
   ``requirements.txt`` (Colab brings its own kernel). The exception is torch: releases newer
   than the pinned CPU wheel exist only as CUDA builds that import only with several GB of
   nvidia libraries installed, so torch stays at the pin unless ``--torch`` names a version;
2. each notebook copied alone into an empty folder, ``BOOK_REPO_URL`` pointing at this repository,
   executed headless with nbclient inside that environment: the setup cell clones the book and
   pip-installs what is missing (mnist1d, QuantLib, opacus: their newest releases, as on Colab);
3. a report: the versions used, and per notebook ok / failed with the first error line.

Exit status 1 when a notebook fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB_PACKAGES = ["torch", "numpy", "matplotlib", "ipywidgets", "scikit-learn", "scipy", "tqdm"]
KERNEL_PACKAGES = ["ipykernel", "jupyter_client", "nbclient", "nbformat", "pyzmq"]
REPORTED = COLAB_PACKAGES + ["mnist1d", "QuantLib", "opacus", "ipykernel"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _pip(env: Path, *args: str) -> None:
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
                   check=True)


def make_env(env: Path, torch_version: str | None = None) -> None:
    """A fresh environment: Colab's packages at their newest, the kernel stack as pinned."""
    if env.exists():
        shutil.rmtree(env)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    _pip(env, "--upgrade", "pip")
    pins = _pins()
    torch = f"torch=={torch_version or pins['torch']}"
    _pip(env, "--upgrade", torch, *[p for p in COLAB_PACKAGES if p != "torch"])
    kernel = [f"{p}=={pins[p.lower().replace('_', '-')]}" if p.lower().replace("_", "-") in pins
              else p for p in KERNEL_PACKAGES]
    _pip(env, *kernel)


def versions(env: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            f"for name in {REPORTED!r}:\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: out[name] = 'not installed'\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(env / "bin" / "python"), "-c", code], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def run_one(notebook: Path, timeout: int) -> dict:
    """Execute ``notebook`` alone in an empty folder (inside the current interpreter's env)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from soak_notebooks import execute_once  # one executor: outcome, slowest cell, reply lag
    from soak_notebooks import reliable_replies

    reliable_replies.install()  # what the book build runs with

    with tempfile.TemporaryDirectory() as tmp:
        content = Path(tmp) / "content"  # like Colab's /content: nothing of the book in it
        content.mkdir()
        return execute_once(notebook, timeout, cwd=content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--env", type=Path, default=ROOT / "_build" / "colab-env")
    parser.add_argument("--reuse-env", action="store_true", help="keep an existing environment")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--torch", help="torch version to install (default: the pin)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))

    if args.inside:  # the child: run the notebooks with this interpreter's packages
        results = {}
        for nb in notebooks:
            r = run_one(nb, args.timeout)
            results[nb.name] = {"ok": r["outcome"] == "ok", "seconds": round(r["wall"], 1),
                                "error": r["detail"], "slowest": [r["slowest_cell"],
                                round(r["slowest_time"], 1)], "lag": round(r["worst_lag"], 2)}
            print(json.dumps({nb.name: results[nb.name]}), flush=True)
        return 0

    if not (args.reuse_env and (args.env / "bin" / "python").exists()):
        print(f"creating {args.env} with the newest {', '.join(COLAB_PACKAGES)} ...", flush=True)
        make_env(args.env, args.torch)
    before = versions(args.env)
    env = dict(os.environ, BOOK_REPO_URL=str(ROOT), BOOK_PROGRESS="0")
    done = subprocess.run([str(args.env / "bin" / "python"), __file__, "--inside",
                           "--timeout", str(args.timeout), *map(str, notebooks)],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    after = versions(args.env)
    print("\npackage            version used"
          + "".join(f"\n{name:18s} {after[name]}"
                    + ("" if before[name] == after[name] else "  (installed by the setup cell)")
                    for name in REPORTED))
    print("\nnotebook                        result  seconds  slowest cell   reply lag")
    for nb in notebooks:
        r = results.get(nb.name, {"ok": False, "seconds": 0.0, "error": "did not run",
                                  "slowest": [-1, 0.0], "lag": 0.0})
        print(f"{nb.name:31s} {'ok' if r['ok'] else 'FAILED':7s} {r['seconds']:8.1f}  "
              f"{r['slowest'][0]:4d} ({r['slowest'][1]:5.1f} s)  {r['lag']:6.2f} s"
              + ("" if r["ok"] else f"\n    {r['error']}"))
    if done.returncode != 0:
        print(done.stderr[-2000:])
    failed = [n for n in notebooks if not results.get(n.name, {}).get("ok")]
    print(f"\n{len(notebooks) - len(failed)} of {len(notebooks)} notebooks ran as on Colab")
    return 1 if failed or done.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
