"""`pods/{name}/portforward` as kubectl 1.30+ speaks it (KEP-4006): SPDY/3.1 frames tunnelled in a WebSocket
(subprotocol `SPDY/3.1+portforward.k8s.io`), each binary message a piece of the SPDY byte stream; or, for clients before
it, SPDY/3.1 on the connection itself after an HTTP upgrade (kubestream.upgrade).

For each connection it forwards, kubectl opens two streams with the headers `streamType` (error, data),
`port` and `requestID`. The agent connects to 127.0.0.1:port in the pod's network namespace (the node's for
a hostNetwork pod) and copies between the connection and the data stream; a connection that cannot be made
is reported as text on the error stream, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from nodeagent.kubestream import spdy
from nodeagent.kubestream.upgrade import is_spdy_upgrade, spdy_upgrade
from nodeagent.network.namespaces import call_in_netns

log = logging.getLogger(__name__)

PROTOCOL = "SPDY/3.1+portforward.k8s.io"
SPDY_PROTOCOL = "portforward.k8s.io"
CHUNK = 32 * 1024
CONNECT_SECONDS = 10.0
PENDING_MAX = 1 << 20
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def connector(pid: int) -> Connect:
    """Connections to 127.0.0.1:port in the network namespace of process `pid` (a container's)."""
    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        def dial() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS)
        sock = await asyncio.to_thread(call_in_netns, f"/proc/{pid}/ns/net", dial)
        sock.setblocking(False)
        return await asyncio.open_connection(sock=sock)
    return connect


@dataclass
class _Pair:
    error: int | None = None  # the streams' ids
    data: int | None = None
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    pending: bytearray = field(default_factory=bytearray)  # from kubectl before the connection was made
    pending_fin: bool = False


class Tunnel:
    """One kubectl port-forward session: a SPDY connection's bytes in, send() for those out."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], connect: Connect) -> None:
        self.send = send
        self.connect = connect
        self.decoder = spdy.Decoder()
        self.encoder = spdy.Encoder()
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self._send_lock = asyncio.Lock()

    async def run(self, received: AsyncIterator[bytes]) -> None:
        try:
            async for data in received:
                for frame in self.decoder.feed(data):
                    if frame.kind == spdy.GOAWAY:
                        return
                    await self._handle(frame)
        except spdy.SpdyError as exc:
            log.info("port-forward: %s", exc)
            await self._send(spdy.goaway(0, spdy.RST_PROTOCOL_ERROR))
        finally:
            pairs = list(self.pairs.values())
            for pair in pairs:
                self._close(pair)
            tasks = [pair.task for pair in pairs if pair.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, frame: spdy.Frame) -> None:
        if frame.kind == spdy.SYN_STREAM:
            await self._open(frame)
        elif frame.kind == spdy.DATA:
            pair = self.by_stream.get(frame.stream_id)
            if pair is None or frame.stream_id != pair.data:
                return
            if pair.writer is None:
                if len(pair.pending) + len(frame.data) > PENDING_MAX:
                    raise spdy.SpdyError(f"more than {PENDING_MAX} bytes sent before the pod's port was reached")
                pair.pending += frame.data
                pair.pending_fin = pair.pending_fin or frame.fin
                return
            await _deliver(pair.writer, frame.data, frame.fin)
        elif frame.kind == spdy.RST_STREAM:
            pair = self.by_stream.get(frame.stream_id)
            if pair is not None:
                self._close(pair)
        elif frame.kind == spdy.PING:
            await self._send(spdy.ping(frame.value))

    async def _open(self, frame: spdy.Frame) -> None:
        headers = {name.lower(): value for name, value in frame.headers.items()}
        kind, request = headers.get("streamtype"), headers.get("requestid", "")
        if kind not in ("error", "data") or frame.stream_id in self.by_stream or len(self.pairs) >= 1024:
            await self._send(spdy.rst_stream(frame.stream_id, spdy.RST_REFUSED_STREAM))
            return
        pair = self.pairs.setdefault(request, _Pair())
        setattr(pair, kind, frame.stream_id)
        self.by_stream[frame.stream_id] = pair
        await self._send(self.encoder.syn_reply(frame.stream_id, {}))
        if pair.error is not None and pair.data is not None and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair, headers.get("port", "")))

    async def _forward(self, pair: _Pair, port_text: str) -> None:
        assert pair.error is not None and pair.data is not None
        try:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError(port_text)
        except ValueError:
            await self._fail(pair, f'invalid port "{port_text}"')
            return
        try:
            reader, writer = await self.connect(port)
        except OSError as exc:
            await self._fail(pair, f"error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: "
                                   f"connect: {exc.strerror or exc}")
            return
        pair.writer = writer
        try:
            await _deliver(writer, bytes(pair.pending), pair.pending_fin)
            pair.pending.clear()
            while chunk := await reader.read(CHUNK):
                await self._send(spdy.data_frame(pair.data, chunk))
        except OSError:
            pass
        finally:
            writer.close()
            await self._send(spdy.data_frame(pair.data, b"", fin=True))
            await self._send(spdy.data_frame(pair.error, b"", fin=True))
            self._forget(pair)

    async def _fail(self, pair: _Pair, message: str) -> None:
        assert pair.error is not None and pair.data is not None
        await self._send(spdy.data_frame(pair.error, message.encode(), fin=True))
        await self._send(spdy.data_frame(pair.data, b"", fin=True))
        self._forget(pair)

    def _forget(self, pair: _Pair) -> None:
        """A pair done with: its streams' later frames (kubectl's FIN) are ignored."""
        self.pairs = {request: other for request, other in self.pairs.items() if other is not pair}
        self.by_stream = {stream: other for stream, other in self.by_stream.items() if other is not pair}

    def _close(self, pair: _Pair) -> None:
        if pair.writer is not None:
            pair.writer.close()

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError):
                await self.send(data)


async def _deliver(writer: asyncio.StreamWriter, data: bytes, fin: bool) -> None:
    if writer.is_closing():
        return
    writer.write(data)
    if fin and writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def serve_portforward(request: web.Request, connect: Connect) -> web.StreamResponse:
    """The WebSocket tunnel (kubectl 1.30+), or the plain SPDY upgrade older clients ask for."""
    if is_spdy_upgrade(request):
        response, received, send = await spdy_upgrade(request, SPDY_PROTOCOL)
        await Tunnel(send, connect).run(received)
        return response
    ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=spdy.MAX_FRAME + 8)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text=f"port-forward takes a WebSocket upgrade ({PROTOCOL}) or a SPDY/3.1 one")
    await ws.prepare(request)

    async def messages() -> AsyncIterator[bytes]:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                yield message.data

    try:
        await Tunnel(ws.send_bytes, connect).run(messages())
    finally:
        await ws.close()
    return ws
