"""Waiting in the fast tier's async tests for what the event loop (or the kernel) does meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], seconds: float = 10.0, what: str = "the condition") -> None:
    """Let the event loop run until `condition()` holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:g}s waiting for {what}"
        await asyncio.sleep(0.01)
