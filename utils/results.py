"""Results files: full-mode and benchmark numbers that the chapters load and print.

A number quoted in a chapter's prose comes from a cell above it or from ``results/<name>.json``,
written by a script (``make results``, ``benchmarks/*.py``) or a ``FULL=1`` run and read back by
the chapter with :func:`load_results`, which also returns where the numbers came from. Every file
records its provenance: the command that wrote it, the git commit, the date, the machine, the
library versions and the seeds.

>>> import tempfile; root = tempfile.mkdtemp()
>>> path = save_results("demo", {"acc": 0.9}, command="python x.py", seeds=[0, 1, 2], root=root)
>>> load_results("demo", root=root)["data"]["acc"]
0.9
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["results_dir", "save_results", "load_results", "provenance_text", "rerun_commands",
           "current_commit"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def results_dir(root: str | os.PathLike | None = None) -> Path:
    """The ``results/`` folder at the repository root (or under ``root`` when given)."""
    if root is not None:
        return Path(root)
    return Path(__file__).resolve().parent.parent / "results"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be lower-case letters, digits, '_' or '-' (a file stem), got {name!r}")
    return name


def current_commit() -> str:
    """The repository's short ``HEAD``, with ``+dirty`` when tracked files differ ("unknown"
    outside a git checkout)."""
    return _git_commit(Path(__file__).resolve().parent)


def _check_commit(commit: str) -> str:
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?|unknown", commit):
        raise ValueError("commit must be a git hash (4-40 hex digits, optionally '+dirty') or "
                         f"'unknown', got {commit!r}")
    return commit


def _git_commit(folder: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder,
                             capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True, timeout=10)
        return commit + ("+dirty" if dirty.stdout.strip() else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _plain(value: Any) -> Any:
    """Turn tensors, arrays and NumPy scalars into JSON-ready Python values."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_results(name: str, data: dict, *, command: str, seeds: list[int] | None = None,
                 root: str | os.PathLike | None = None, commit: str | None = None) -> Path:
    """Write ``data`` with its provenance to ``results/<name>.json``; return the path.

    ``command`` is the shell command that reproduces the file (e.g. ``"BOOK_FULL=1 make results"``);
    ``seeds`` the seeds the numbers rest on. Tensors and arrays become lists. ``commit`` is the
    code the numbers were computed with; by default the repository's ``HEAD`` now (``+dirty``
    when tracked files differ from it). A long run that rewrites its own results file as it goes
    reads :func:`current_commit` at its start and passes it, so that the file it already wrote
    does not make the tree look changed.
    """
    _check_name(name)
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict, got {type(data).__name__}")
    if not isinstance(command, str) or not command.strip():
        raise ValueError("command must be the non-empty shell command that reproduces the file")
    folder = results_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "command": command,
        "provenance": {
            "commit": current_commit() if commit is None else _check_commit(commit),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "threads": torch.get_num_threads(),
            "seeds": list(seeds) if seeds is not None else None,
        },
        "data": _plain(data),
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load_results(name: str, root: str | os.PathLike | None = None) -> dict:
    """Read ``results/<name>.json``: a dict with ``command``, ``provenance`` and ``data``."""
    path = results_dir(root) / f"{_check_name(name)}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path}; write it with its command first")
    record = json.loads(path.read_text())
    for key in ("command", "provenance", "data"):
        if key not in record:
            raise ValueError(f"results file {path} has no {key!r} entry")
    return record


def provenance_text(record: dict) -> str:
    """One short paragraph saying where a results file's numbers came from, for printing."""
    p = record["provenance"]
    seeds = "" if not p.get("seeds") else f", seeds {p['seeds']}"
    text = (f"from results/{record['name']}.json, written by `{record['command']}` "
            f"on {p['date']} at commit {p['commit']} ({p['machine']}, torch {p['torch']}, "
            f"{p['threads']} thread(s){seeds})")
    return textwrap.fill(text, 76, break_on_hyphens=False)  # fits the book's column


def rerun_commands(names: list[str] | None = None, root: str | os.PathLike | None = None,
                   dry_run: bool = False) -> list[tuple[str, str]]:
    """Run again the command recorded in each results file (``make results``).

    Commands run from the repository root with the virtual environment's ``bin`` first on
    ``PATH``; ``names`` picks files (default: all). Returns ``(name, command)`` pairs in order.
    """
    folder = results_dir(root)
    repo = Path(__file__).resolve().parent.parent
    chosen = sorted(p.stem for p in folder.glob("*.json")) if not names else list(names)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ran = []
    for name in chosen:
        command = load_results(name, root=root)["command"]
        ran.append((name, command))
        if not dry_run:
            subprocess.run(["bash", "-c", command], cwd=repo, env=env, check=True)
    return ran


if __name__ == "__main__":  # python -m utils.results [--run] [NAME ...]
    import argparse

    parser = argparse.ArgumentParser(description="List, or run again, the commands behind results/")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--run", action="store_true", help="run the commands (slow: full mode)")
    args = parser.parse_args()
    for name, command in rerun_commands(args.names, dry_run=True):
        record = load_results(name)
        print(f"{name}: {command}\n  {provenance_text(record)}")
    if args.run:
        rerun_commands(args.names)
