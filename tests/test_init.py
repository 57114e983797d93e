import random

import numpy as np
import pytest
import torch

import utils


def test_version_is_a_string():
    assert isinstance(utils.__version__, str) and utils.__version__.count(".") == 2


def test_seed_everything_makes_all_generators_repeat():
    gen = utils.seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    gen = utils.seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])
    utils.seed_everything(124)
    assert random.random() != first[0]


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True, None])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        utils.seed_everything(bad)


def test_device_is_cpu_or_cuda():
    assert utils.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_full_mode_honours_flag_and_environment(monkeypatch):
    monkeypatch.delenv("BOOK_FULL", raising=False)
    assert utils.full_mode(False) is False
    assert utils.full_mode(True) is True
    monkeypatch.setenv("BOOK_FULL", "1")
    assert utils.full_mode(False) is True
    monkeypatch.setenv("BOOK_FULL", "0")
    assert utils.full_mode(False) is False
    monkeypatch.setenv("BOOK_FULL", "maybe")
    with pytest.raises(ValueError, match="BOOK_FULL"):
        utils.full_mode(False)
    with pytest.raises(TypeError, match="full"):
        utils.full_mode("yes")


def test_default_progress(monkeypatch):
    monkeypatch.delenv("BOOK_PROGRESS", raising=False)
    assert utils.default_progress() is True
    monkeypatch.setenv("BOOK_PROGRESS", "0")
    assert utils.default_progress() is False
