"""What an exec (probe, hook) printed, read with a cap: a command printing without end costs no memory.

As the kubelet's exec prober (pkg/probe/exec: a LimitWriter of maxReadLength, 10 KiB), the first 10 KiB
are kept and the rest is read and dropped, so that the command is never blocked on a full pipe.
"""

from __future__ import annotations

import asyncio

MAX_OUTPUT_BYTES = 10 * 1024
MESSAGE_CHARS = 1024  # what an event or a probe result shows of it
READ_BYTES = 64 * 1024


async def read_capped(stream: asyncio.StreamReader, limit: int = MAX_OUTPUT_BYTES) -> bytes:
    """Everything until EOF, of which the first `limit` bytes are kept."""
    kept = bytearray()
    while chunk := await stream.read(READ_BYTES):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


def message(output: bytes) -> str:
    """The output as a probe result or an event shows it."""
    return output.decode(errors="replace").strip()[:MESSAGE_CHARS]
