"""Bound the lost wake-ups that stalled headless notebook execution (issue 12).

What we measured: executing a notebook with nbclient (the book build through MyST-NB, the
Colab-style test, the soak test) sometimes stops on an explorer cell. The kernel has finished the
cell (its ``idle`` status arrives on iopub) and has sent the ``execute_reply``, but nbclient hears
nothing until its per-cell timeout fires, and then receives the reply at once: 58.6 s after the
idle at a 60 s timeout, 597.8 s after it at 600 s. A reply delivered exactly at the client's own
timeout, with no message from the client to wake the kernel, was sitting in the client's socket:
the wake-up was lost on the client side. pyzmq's asyncio ``poll`` waits for a "message arrived"
event future; when that event is missed the poll only looks at the socket again (a level-triggered
``poll(0)``) when its timeout fires. It happened with ipykernel 7 and, less often, with 6.31.

The fix here: jupyter_client's asyncio channels wait in slices of at most ``SLICE`` seconds, each
ending in that level-triggered look, until the caller's own timeout. A lost wake-up then costs at
most half a second instead of the whole cell timeout; messages, timeouts and errors are unchanged.
nbval uses the blocking client (``zmq_poll``, level-triggered) and needs no fix.

Loaded as a Sphinx extension by the book build (``_config.yml``); the test helpers call
:func:`install` themselves.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.channels import AsyncZMQSocketChannel

SLICE = 0.5  # seconds between two level-triggered looks at the socket

_original_get_msg = AsyncZMQSocketChannel.get_msg


async def _get_msg_in_slices(self, timeout: float | None = None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = SLICE if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await _original_get_msg(self, min(SLICE, remaining))
        except Empty:
            if deadline is not None and time.monotonic() >= deadline:
                raise


_get_msg_in_slices.book_sliced = True


def install() -> None:
    """Make every asyncio jupyter_client channel in this process wait in slices (idempotent)."""
    if not getattr(AsyncZMQSocketChannel.get_msg, "book_sliced", False):
        AsyncZMQSocketChannel.get_msg = _get_msg_in_slices


def setup(app):
    install()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
