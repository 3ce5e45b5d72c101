"""Blocking work in a thread that a cancellation never leaves running behind the caller's back.

asyncio.to_thread cannot stop its thread: a cancelled caller would go on (and clean up) while the
thread still writes into the files it is removing. `in_thread` waits for the thread to end first,
then lets the cancellation through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    future = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                continue  # cancelled again: the thread still has to end before anything else happens
        raise
