"""The plain SPDY/3.1 upgrade that kubectl before 1.30 (or with KUBECTL_PORT_FORWARD_WEBSOCKETS=false) asks
for: `Connection: Upgrade`, `Upgrade: SPDY/3.1`, the subprotocols it speaks as `X-Stream-Protocol-Version`
headers; the answer is 101 with the one chosen, then the connection carries SPDY frames both ways.

aiohttp knows only the WebSocket upgrade: the connection's later bytes are taken from its protocol with the
same hook its WebSocketResponse uses (set_parser), queued with back-pressure (reading pauses while the
queue is long), and written to its transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

QUEUE_PAUSE = 64  # chunks waiting: stop reading the connection
QUEUE_RESUME = 8
WRITE_BUFFER = 1 << 20  # bytes the transport may hold before send() waits


def is_spdy_upgrade(request: web.Request) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "spdy/3.1"
            and "upgrade" in request.headers.get("Connection", "").lower())


class _Feed:
    """What aiohttp's protocol feeds an upgraded connection's bytes to (its payload parser's interface)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport = transport

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(data)
        if self.queue.qsize() >= QUEUE_PAUSE:
            self.transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        while (data := await self.queue.get()) is not None:
            if self.queue.qsize() <= QUEUE_RESUME and not self.transport.is_closing():
                self.transport.resume_reading()
            yield data


async def spdy_upgrade(request: web.Request, protocol: str) -> tuple[
        web.StreamResponse, AsyncIterator[bytes], Callable[[bytes], Awaitable[None]]]:
    """Answer the upgrade (403 when the client does not speak `protocol`, as the kubelet does): the response
    to return once done, the connection's bytes, and a send()."""
    offered = [value.strip() for header in request.headers.getall("X-Stream-Protocol-Version", [])
               for value in header.split(",")]
    if protocol not in offered:
        raise web.HTTPForbidden(text=f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                     f"server supports [{protocol}]")
    transport = request.transport
    assert transport is not None and isinstance(transport, asyncio.Transport)
    feed = _Feed(transport)
    request.protocol.set_parser(feed)  # type: ignore[arg-type]  # duck-typed as its WebSocketReader
    response = web.StreamResponse(status=101, headers={
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol})
    response.force_close()
    await response.prepare(request)

    async def send(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        transport.write(data)
        while transport.get_write_buffer_size() > WRITE_BUFFER and not transport.is_closing():
            await asyncio.sleep(0.01)

    return response, feed.chunks(), send
