"""Offline data sets with fixed train/test splits, as tensors.

* :func:`load_digits_tensors`: scikit-learn's bundled 8x8 handwritten digits (1797 images, no network).
* :func:`load_mnist1d`: MNIST-1D {cite}`greydanus2020mnist1d`, generated locally by the ``mnist1d``
  package's ``make_dataset`` (never its pickle download).
* :func:`load_mnist`: full MNIST for ``FULL`` mode. It downloads the four IDX files, checks their MD5
  sums, caches them, and parses them with NumPy (nothing is unpickled). When it cannot, it raises
  :class:`DataUnavailableError`, which notebooks catch to fall back to the offline data.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Split",
    "DataUnavailableError",
    "load_digits_tensors",
    "load_mnist1d",
    "load_mnist",
    "MNIST_FILES",
    "MNIST_MIRRORS",
]


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: inputs ``(n, d)`` float tensors, labels ``(n,)`` int64 tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str = ""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def __repr__(self) -> str:  # short, readable in a notebook
        return (f"Split({self.name!r}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"{self.n_classes} classes)")


class DataUnavailableError(RuntimeError):
    """Raised when a data set that needs the network cannot be fetched or verified."""


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32 - 1], got {seed!r}")
    return int(seed)


def _check_fraction(test_fraction: float) -> float:
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return float(test_fraction)


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-stratified train/test split, the same for the same seed."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    rng.shuffle(train_idx)
    rng.shuffle(test_idx)
    return train_idx, test_idx


def _to_split(x: np.ndarray, y: np.ndarray, train_idx, test_idx, dtype, name) -> Split:
    xt = torch.as_tensor(x, dtype=dtype)
    yt = torch.as_tensor(y, dtype=torch.int64)
    return Split(xt[train_idx], yt[train_idx], xt[test_idx], yt[test_idx], name=name)


def load_digits_tensors(seed: int = 0, test_fraction: float = 0.25,
                        dtype: torch.dtype = torch.float32) -> Split:
    """scikit-learn's bundled 8x8 digits as tensors, pixels scaled to [0, 1], stratified split.

    Shapes: ``x_train (n_train, 64)``, ``y_train (n_train,)``; 1797 images in all, 10 classes.
    The split depends only on ``seed`` and ``test_fraction``.

    >>> data = load_digits_tensors(seed=0)
    >>> data.x_train.shape[1], data.n_classes
    (64, 10)
    """
    from sklearn.datasets import load_digits

    seed, test_fraction, dtype = _check_seed(seed), _check_fraction(test_fraction), _check_dtype(dtype)
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0  # pixel intensities are 0..16
    train_idx, test_idx = _stratified_split(digits.target, test_fraction, seed)
    return _to_split(x, digits.target, train_idx, test_idx, dtype, "digits")


def load_mnist1d(seed: int = 0, n: int = 4000, test_fraction: float = 0.2,
                 dtype: torch.dtype = torch.float32) -> Split:
    """MNIST-1D: ``n`` length-40 signals in 10 classes, generated offline by ``mnist1d.make_dataset``.

    The generator is seeded with ``seed`` (the same seed gives the same signals), so nothing is
    downloaded. Shapes: ``x_train (n_train, 40)``, ``y_train (n_train,)``.

    >>> load_mnist1d(seed=0, n=200).x_train.shape
    torch.Size([160, 40])
    """
    from mnist1d.data import get_dataset_args, make_dataset

    seed, test_fraction, dtype = _check_seed(seed), _check_fraction(test_fraction), _check_dtype(dtype)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 20 <= n <= 100_000:
        raise ValueError(f"n must be an int in [20, 100000] (at least 2 examples per class), got {n!r}")
    args = get_dataset_args()
    args.num_samples = int(n)
    args.seed = seed
    args.train_split = 1.0 - test_fraction
    # make_dataset reseeds Python's and NumPy's global generators; leave the caller's state untouched
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([raw["x"], raw["x_test"]])
    y = np.concatenate([raw["y"], raw["y_test"]])
    n_train = len(raw["y"])
    return _to_split(x, y, np.arange(n_train), np.arange(n_train, len(y)), dtype, "mnist1d")


# name -> (file name, md5 of the gzipped file); the canonical MNIST distribution
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the MNIST format: magic, dims, then unsigned bytes)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataUnavailableError(f"{path.name} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataUnavailableError(f"{path.name} holds {data.size} values, its header says {dims}")
    return data.reshape(dims)


def _fetch(name: str, md5: str, cache_dir: Path, mirrors, timeout: float) -> Path:
    target = cache_dir / name
    if target.exists() and _md5(target) == md5:
        return target
    errors = []
    for mirror in mirrors:
        tmp = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(mirror + name, timeout=timeout) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{mirror}: {exc}")
            tmp.unlink(missing_ok=True)
            continue
        if _md5(tmp) != md5:
            errors.append(f"{mirror}: checksum mismatch")
            tmp.unlink(missing_ok=True)
            continue
        tmp.replace(target)
        return target
    raise DataUnavailableError(f"could not fetch {name}: " + "; ".join(errors or ["no mirrors given"]))


_DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "data_cache" / "mnist"


def load_mnist(cache_dir: str | Path = _DEFAULT_CACHE, seed: int = 0, dtype: torch.dtype = torch.float32,
               mirrors=MNIST_MIRRORS, files=None, timeout: float = 30.0) -> Split:
    """Full MNIST (60k train, 10k test, 784 pixels in [0, 1]) for ``FULL`` mode.

    Downloads into ``cache_dir`` (once; by default ``data_cache/mnist`` at the repository root), verifies each file's MD5 against :data:`MNIST_FILES`, and
    parses the IDX format with NumPy. Raises :class:`DataUnavailableError` when offline or when a
    checksum does not match, so a notebook can fall back to :func:`load_digits_tensors`. ``seed`` only
    shuffles the order of the fixed official split.
    """
    seed, dtype = _check_seed(seed), _check_dtype(dtype)
    files = dict(MNIST_FILES if files is None else files)
    if set(files) != set(MNIST_FILES):
        raise ValueError(f"files must have the keys {sorted(MNIST_FILES)}, got {sorted(files)}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {key: _read_idx(_fetch(fname, md5, cache_dir, mirrors, timeout)) for key, (fname, md5) in files.items()}
    x_train = arrays["train_images"].reshape(len(arrays["train_images"]), -1) / 255.0
    x_test = arrays["test_images"].reshape(len(arrays["test_images"]), -1) / 255.0
    rng = np.random.default_rng(seed)
    tr, te = rng.permutation(len(x_train)), rng.permutation(len(x_test))
    return Split(torch.as_tensor(x_train[tr], dtype=dtype), torch.as_tensor(arrays["train_labels"][tr], dtype=torch.int64),
                 torch.as_tensor(x_test[te], dtype=dtype), torch.as_tensor(arrays["test_labels"][te], dtype=torch.int64),
                 name="mnist")
