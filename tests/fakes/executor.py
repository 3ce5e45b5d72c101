"""The fast tier's default executor: what the agent hands to a thread (asyncio.to_thread: small file IO in the
test's temporary directory) runs at once, in the loop's thread, so that the fake clock alone decides when
everything happens and a test's settle() leaves no work behind in a real thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class InlineExecutor(concurrent.futures.ThreadPoolExecutor):  # asyncio takes no other kind as its default
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


INLINE = InlineExecutor(max_workers=1)  # never starts a thread


def run_threads_inline() -> None:
    """From now on, the running loop's asyncio.to_thread work runs inline."""
    asyncio.get_running_loop().set_default_executor(INLINE)
