"""Shared code behind the chapters of the book.

Each chapter has one small module here (``utils.masking``, ``utils.rates``, ...); the shared
infrastructure is ``data``, ``models``, ``training``, ``plotting`` and ``widgets``. This file holds
the few helpers every notebook calls first: :func:`seed_everything`, :func:`device`,
:func:`full_mode` and :func:`default_progress`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"

__all__ = ["__version__", "seed_everything", "device", "full_mode", "default_progress"]

_MAX_SEED = 2**32 - 1


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's global generators with ``seed``.

    Every random draw in a notebook flows from the seed set in its parameters cell, so two runs
    print the same numbers. Returns a fresh ``torch.Generator`` seeded the same way, for code that
    prefers an explicit generator to global state.

    >>> g = seed_everything(0); a = torch.rand(2); _ = seed_everything(0); bool((a == torch.rand(2)).all())
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int in [0, 2**32 - 1], got {type(seed).__name__}")
    if not 0 <= int(seed) <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def device() -> torch.device:
    """The device the book computes on: ``cuda`` when a GPU is present, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    value = value.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"environment variable {name} must be one of 1/0/true/false/yes/no/on/off, got {value!r}")


def full_mode(full: bool = False) -> bool:
    """Resolve the parameters cell's ``FULL`` flag: ``True`` if ``full`` is, or if ``BOOK_FULL=1``.

    Quick mode (``False``) is the CI default and keeps each chapter under a minute on a laptop CPU;
    full mode runs the paper-scale version (more seeds, bigger models).
    """
    if not isinstance(full, bool):
        raise TypeError(f"full must be a bool, got {type(full).__name__}")
    return full or bool(_env_flag("BOOK_FULL"))


def default_progress() -> bool:
    """Whether long loops show a tqdm bar when called with ``progress=None``.

    On by default; ``BOOK_PROGRESS=0`` silences every bar (the book build and the tests set it, so
    the HTML holds no dead progress widgets).
    """
    flag = _env_flag("BOOK_PROGRESS")
    return True if flag is None else flag
