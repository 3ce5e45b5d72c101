"""What exec over any transport shares: kubectl's channels (stdin 0, stdout 1, stderr 2, the result 3, terminal
sizes 4, v5's close 255), the result as a v1 Status, and a session's output pumped to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nodeagent.runtime.session import READ_CHUNK, StreamSession

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DRAIN_SECONDS = 2.0  # after the command exits, how long its output may still come (a child holding it open)
Emit = Callable[[int, bytes], Awaitable[None]]  # output for a channel


def exit_status(code: int) -> dict[str, object]:
    """The v1 Status of channel 3 for an exit code, as the kubelet writes it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: "
            f"error executing command, exit status {code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(message: str) -> dict[str, object]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


async def pump(session: StreamSession, emit: Emit, receiving: Coroutine[Any, Any, None], *, stdout: bool,
               stderr: bool) -> int | None:
    """Until the command exits and its output is emitted: its exit code; None when the client went away
    (`receiving`, what takes the client's input, ended first)."""
    outputs = [asyncio.create_task(_forward(session.stdout, emit, STDOUT if stdout else None))]
    if session.stderr is not None:
        outputs.append(asyncio.create_task(_forward(session.stderr, emit, STDERR if stderr else None)))
    inputs = asyncio.create_task(receiving)
    waiting = asyncio.create_task(session.wait())
    try:
        done, _ = await asyncio.wait({inputs, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            return None
        await asyncio.wait(outputs, timeout=DRAIN_SECONDS)
        return waiting.result()
    finally:
        for task in (*outputs, inputs, waiting):
            task.cancel()
        await asyncio.gather(*outputs, inputs, waiting, return_exceptions=True)


async def _forward(reader: asyncio.StreamReader, emit: Emit, channel: int | None) -> None:
    while True:
        try:
            chunk = await reader.read(READ_CHUNK)
        except OSError:  # EIO: a terminal whose every other end is closed
            return
        if not chunk:
            return
        if channel is not None:
            await emit(channel, chunk)


def resize(session: StreamSession, payload: bytes) -> None:
    """Apply the terminal sizes in `payload`: JSON objects {"Width": W, "Height": H}, one or more."""
    decoder, text, at = json.JSONDecoder(), payload.decode(errors="replace"), 0
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        while at < len(text.rstrip()):
            size, end = decoder.raw_decode(text, at)
            session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            at = end + len(text[end:]) - len(text[end:].lstrip())
