import gzip
import hashlib
import random

import numpy as np
import pytest
import torch

from utils.data import (MNIST_FILES, DataUnavailableError, Split, load_digits_tensors, load_mnist,
                        load_mnist1d)


def test_digits_shapes_scaling_and_split():
    data = load_digits_tensors(seed=0)
    assert isinstance(data, Split)
    assert data.x_train.shape == (1347, 64) and data.x_test.shape == (450, 64)
    assert data.y_train.dtype == torch.int64 and data.x_train.dtype == torch.float32
    assert data.n_features == 64 and data.n_classes == 10
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    # stratified: every class is in the test set in about its overall proportion
    counts = torch.bincount(data.y_test, minlength=10)
    assert counts.min() >= 40 and counts.max() <= 50


def test_digits_split_is_deterministic_and_disjoint():
    a, b, c = load_digits_tensors(seed=3), load_digits_tensors(seed=3), load_digits_tensors(seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    train_rows = {tuple(r) for r in a.x_train.tolist()}
    test_rows = {tuple(r) for r in a.x_test.tolist()}
    # the digits data has a few exact duplicate images; almost all test rows are unseen
    assert len(train_rows & test_rows) <= 5


def test_digits_float64():
    assert load_digits_tensors(dtype=torch.float64).x_train.dtype == torch.float64


@pytest.mark.parametrize("kwargs, name", [({"seed": -1}, "seed"), ({"test_fraction": 0.0}, "test_fraction"),
                                          ({"test_fraction": 1.0}, "test_fraction"),
                                          ({"dtype": torch.int32}, "dtype")])
def test_digits_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        load_digits_tensors(**kwargs)


def test_mnist1d_generated_offline_deterministic_and_leaves_global_rng_alone():
    random.seed(7)
    np.random.seed(7)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(7)
    np.random.seed(7)
    a = load_mnist1d(seed=1, n=300)
    assert random.random() == expected_py and np.random.rand() == expected_np
    b = load_mnist1d(seed=1, n=300)
    c = load_mnist1d(seed=2, n=300)
    assert a.x_train.shape == (240, 40) and a.x_test.shape == (60, 40)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.n_classes == 10


@pytest.mark.parametrize("n", [0, 10, 1.5, 10**6])
def test_mnist1d_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be"):
        load_mnist1d(n=n)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_mnist_mirror(tmp_path):
    """A tiny MNIST in IDX format served from a local folder through a file:// URL (no network)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (12, 28, 28)), "train_labels": np.arange(12) % 10,
              "test_images": rng.integers(0, 256, (5, 28, 28)), "test_labels": np.arange(5)}
    files = {key: (MNIST_FILES[key][0], _write_idx(mirror / MNIST_FILES[key][0], arrays[key])) for key in arrays}
    return mirror.as_uri() + "/", files, arrays


def test_load_mnist_downloads_verifies_caches_and_parses(tmp_path, fake_mnist_mirror):
    url, files, arrays = fake_mnist_mirror
    cache = tmp_path / "cache"
    data = load_mnist(cache_dir=cache, mirrors=(url,), files=files)
    assert data.x_train.shape == (12, 784) and data.x_test.shape == (5, 784)
    assert float(data.x_train.max()) <= 1.0
    assert sorted(data.y_train.tolist()) == sorted(arrays["train_labels"].tolist())
    # second call works from the cache even with no mirror at all
    again = load_mnist(cache_dir=cache, mirrors=(), files=files)
    assert torch.equal(again.x_train, data.x_train)


def test_load_mnist_rejects_a_checksum_mismatch(tmp_path, fake_mnist_mirror):
    url, files, _ = fake_mnist_mirror
    files = dict(files, test_labels=(files["test_labels"][0], "0" * 32))
    with pytest.raises(DataUnavailableError, match="checksum"):
        load_mnist(cache_dir=tmp_path / "cache", mirrors=(url,), files=files)


def test_load_mnist_offline_raises_data_unavailable(tmp_path):
    missing = (tmp_path / "nowhere").as_uri() + "/"
    with pytest.raises(DataUnavailableError, match="could not fetch"):
        load_mnist(cache_dir=tmp_path / "cache", mirrors=(missing,))


def test_load_mnist_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="files"):
        load_mnist(cache_dir=tmp_path, files={"train_images": ("x", "y")})
    with pytest.raises(ValueError, match="timeout"):
        load_mnist(cache_dir=tmp_path, timeout=0)
