"""in_thread: a cancelled caller goes on only after its thread has ended."""

import asyncio
import threading
import time

import pytest

from nodeagent.images.threads import in_thread


async def test_cancellation_waits_for_the_thread() -> None:
    ended = threading.Event()

    def slow() -> int:
        time.sleep(0.2)
        ended.set()
        return 1

    task = asyncio.create_task(in_thread(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # twice: still waits
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()
    assert await in_thread(slow) == 1
