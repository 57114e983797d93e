"""book/_ext/reliable_replies.py: nbclient's waits end in a level-triggered look every half second."""

import asyncio
import sys
from pathlib import Path
from queue import Empty

import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import reliable_replies  # noqa: E402


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


@pytest.fixture
def lossy(monkeypatch):
    """A channel whose message arrives at t = 0.2 s but whose wake-up is lost: a wait returns it
    only when the wait's own timeout fires (what pyzmq's poll does after a missed event)."""
    clock = FakeClock()
    calls = []

    async def lossy_get_msg(self, timeout=None):
        calls.append(timeout)
        clock.now += timeout  # the whole wait passes: nobody woke us
        if clock.now >= 0.2 and not self.taken:
            self.taken = True
            return {"msg_type": "execute_reply"}
        raise Empty

    monkeypatch.setattr(reliable_replies, "_original_get_msg", lossy_get_msg)
    monkeypatch.setattr(reliable_replies.time, "monotonic", clock.monotonic)
    channel = type("Channel", (), {"taken": False})()
    return channel, clock, calls


def test_a_lost_wake_up_costs_one_slice_not_the_whole_timeout(lossy):
    channel, clock, calls = lossy
    msg = asyncio.run(reliable_replies._get_msg_in_slices(channel, timeout=600.0))
    assert msg["msg_type"] == "execute_reply"
    assert max(calls) <= reliable_replies.SLICE and clock.now <= 0.2 + reliable_replies.SLICE


def test_timeout_still_raises_empty_at_the_deadline(lossy):
    channel, clock, calls = lossy
    channel.taken = True  # no message will come
    with pytest.raises(Empty):
        asyncio.run(reliable_replies._get_msg_in_slices(channel, timeout=2.0))
    assert clock.now == pytest.approx(2.0) and len(calls) == 4


def test_no_timeout_waits_until_a_message(lossy):
    channel, clock, calls = lossy
    assert asyncio.run(reliable_replies._get_msg_in_slices(channel, timeout=None))
    assert all(c == reliable_replies.SLICE for c in calls)


def test_install_is_idempotent():
    reliable_replies.install()
    reliable_replies.install()
    assert AsyncZMQSocketChannel.get_msg is reliable_replies._get_msg_in_slices
    assert reliable_replies._original_get_msg is not reliable_replies._get_msg_in_slices
