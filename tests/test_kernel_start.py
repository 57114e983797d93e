"""tests/kernel_start.py: a kernel that dies while starting is started again, and says why."""

import os

import pytest

from tests import kernel_start


def fake_start(failures: int, calls: list):
    """Dies ``failures`` times (writing to the stderr it was given), then starts."""
    def start(startup_timeout, kernel_name, stderr, **kwargs):
        calls.append((startup_timeout, kernel_name, kwargs))
        if len(calls) <= failures:
            stderr.write(f"zmq.error.ZMQError: Address already in use (start {len(calls)})\n")
            stderr.flush()
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "km", "kc"
    return start


def test_a_kernel_that_dies_is_started_again_and_its_stderr_shown(monkeypatch):
    calls = []
    monkeypatch.setattr(kernel_start, "_original_start", fake_start(2, calls))
    with pytest.warns(kernel_start.KernelStartWarning) as record:
        started = kernel_start.start_new_kernel(startup_timeout=7, kernel_name="k",
                                                stderr=open(os.devnull, "w"), cwd="chapters")
    assert started == ("km", "kc") and len(calls) == 3
    assert calls[0] == (7, "k", {"cwd": "chapters"})          # nbval's devnull is not passed on
    messages = [str(w.message) for w in record if w.category is kernel_start.KernelStartWarning]
    assert len(messages) == 2 and "start 1 of 3 failed" in messages[0]
    assert "Address already in use (start 2)" in messages[1]


def test_the_last_failure_is_raised(monkeypatch):
    calls = []
    monkeypatch.setattr(kernel_start, "_original_start", fake_start(5, calls))
    with pytest.warns(kernel_start.KernelStartWarning):
        with pytest.raises(RuntimeError, match="kernel_info"):
            kernel_start.start_new_kernel(kernel_name="k")
    assert len(calls) == kernel_start.ATTEMPTS


def test_a_kernel_that_starts_is_started_once(monkeypatch, recwarn):
    calls = []
    monkeypatch.setattr(kernel_start, "_original_start", fake_start(0, calls))
    assert kernel_start.start_new_kernel(kernel_name="k") == ("km", "kc") and len(calls) == 1
    assert not [w for w in recwarn if w.category is kernel_start.KernelStartWarning]
