"""`pods/{name}/exec` over the plain SPDY/3.1 upgrade, as kubectl before 1.30 (or with
KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false) speaks it: remotecommand's v4.channel.k8s.io, one SPDY stream per
channel, named by its `streamType` header (error, stdin, stdout, stderr, resize). The command starts once
every stream the query asks for is open; stdin's FIN is its end; the result is a v1 Status on the error
stream, as over a WebSocket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from aiohttp import web

from nodeagent.errors import NodeAgentError
from nodeagent.kubestream import spdy
from nodeagent.kubestream.channels import (
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    exit_status,
    failure_status,
    pump,
    resize,
)
from nodeagent.kubestream.upgrade import spdy_upgrade
from nodeagent.runtime.session import StreamSession

PROTOCOL = "v4.channel.k8s.io"
STREAMS_SECONDS = 30.0  # the kubelet's streamCreationTimeout
CHANNELS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}


async def serve_spdy_exec(request: web.Request, start: Callable[[], Awaitable[StreamSession]]) -> web.StreamResponse:
    flags = {name: request.query.get(name, "").lower() in ("true", "1") for name in ("stdin", "stdout", "stderr")}
    expected = {"error", *(name for name, wanted in flags.items() if wanted)}
    if request.query.get("tty", "").lower() in ("true", "1"):
        expected.add("resize")
    response, received, send = await spdy_upgrade(request, PROTOCOL)
    connection = _Connection(send)
    frames = _frames(received)
    try:
        await asyncio.wait_for(connection.accept(frames, expected), STREAMS_SECONDS)
        try:
            session = await start()
        except NodeAgentError as exc:
            await connection.emit(ERROR, json.dumps(failure_status(str(exc))).encode())
            await connection.finish()
            return response
        try:
            code = await pump(session, connection.emit, connection.receive(frames, session),
                              stdout=flags["stdout"], stderr=flags["stderr"])
            if code is not None:
                await connection.emit(ERROR, json.dumps(exit_status(code)).encode())
                await connection.finish()
        finally:
            session.kill()  # the client went away, or the command left children holding its output
            session.close()
    except (TimeoutError, spdy.SpdyError, ConnectionError):
        pass  # the connection closes: kubectl reports it
    return response


async def _frames(received: AsyncIterator[bytes]) -> AsyncIterator[spdy.Frame]:
    decoder = spdy.Decoder()
    async for data in received:
        for frame in decoder.feed(data):
            yield frame


class _Connection:
    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._encoder = spdy.Encoder()
        self._lock = asyncio.Lock()
        self.streams: dict[str, int] = {}  # streamType -> stream id

    async def _write(self, frame: Callable[[], bytes]) -> None:
        async with self._lock:  # header blocks are compressed in the order they are sent
            await self._send(frame())

    async def accept(self, frames: AsyncIterator[spdy.Frame], expected: set[str]) -> None:
        """Open the client's streams until every expected one is there."""
        async for frame in frames:
            if frame.kind == spdy.SYN_STREAM:
                kind = {k.lower(): v for k, v in frame.headers.items()}.get("streamtype", "")
                if kind not in CHANNELS or kind in self.streams:
                    await self._write(partial(spdy.rst_stream, frame.stream_id, spdy.RST_REFUSED_STREAM))
                    continue
                self.streams[kind] = frame.stream_id
                await self._write(partial(self._encoder.syn_reply, frame.stream_id, {}))
                if expected <= self.streams.keys():
                    return
            elif frame.kind == spdy.PING:
                await self._write(partial(spdy.ping, frame.value))
        raise spdy.SpdyError("the connection ended before its streams were open")

    async def receive(self, frames: AsyncIterator[spdy.Frame], session: StreamSession) -> None:
        """stdin (its FIN: its end) and terminal sizes, until the client goes away."""
        kinds = {stream: kind for kind, stream in self.streams.items()}
        async for frame in frames:
            if frame.kind == spdy.DATA and kinds.get(frame.stream_id) == "stdin":
                await session.write(frame.data)
                if frame.fin:
                    session.close_stdin()
            elif frame.kind == spdy.DATA and kinds.get(frame.stream_id) == "resize":
                resize(session, frame.data)
            elif frame.kind == spdy.PING:
                await self._write(partial(spdy.ping, frame.value))
            elif frame.kind == spdy.GOAWAY:
                return

    async def emit(self, channel: int, data: bytes) -> None:
        kind = next((k for k, c in CHANNELS.items() if c == channel), "")
        if kind in self.streams:
            await self._write(partial(spdy.data_frame, self.streams[kind], data))

    async def finish(self) -> None:
        """Our side of every stream ends."""
        for kind in ("stdout", "stderr", "error"):
            if kind in self.streams:
                await self._write(partial(spdy.data_frame, self.streams[kind], b"", fin=True))
