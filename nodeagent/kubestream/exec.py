"""`pods/{name}/exec` and `pods/{name}/attach` as kubectl 1.30+ speaks them: a WebSocket with the
`v5.channel.k8s.io` (or `v4.channel.k8s.io`) subprotocol, each message's first byte its channel:

    0 stdin (client to server)   1 stdout   2 stderr   3 the result, a v1 Status (server to client)
    4 terminal size, {"Width": W, "Height": H} (client to server)   255 close a channel (v5: [255, 0] ends stdin)

The command ends with a Status on channel 3: Success, or NonZeroExitCode with the exit code as its cause
(kubectl exits with it). A client that goes away kills the command: one that closes its connection at once, one
that falls silent (its host or network gone: nothing closes the connection) when a ping of the heartbeat finds
no pong (within 1.5 heartbeats; kubectl answers pings, and pings the server every 5 s itself). An attach ends
with Success when the container exits; a client that goes away detaches from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import ClientError, ClientSession, ClientWebSocketResponse, WSMsgType, web

from nodeagent.errors import NodeAgentError
from nodeagent.kubestream.channels import CLOSE, ERROR, RESIZE, STDIN, exit_status, failure_status, pump, resize
from nodeagent.kubestream.spdyexec import serve_spdy_exec
from nodeagent.kubestream.upgrade import is_spdy_upgrade
from nodeagent.runtime.base import (
    Attachable,
    CommandExec,
    RunningContainer,
    Runtime,
    StreamingAttach,
    StreamingExec,
)
from nodeagent.runtime.session import StreamSession, start_session

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
MAX_MESSAGE = 1 << 20
HEARTBEAT_SECONDS = 5.0  # client-go's websocket ping period


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


async def serve_exec(request: web.Request, runtime: Runtime, running: RunningContainer,
                     command: Sequence[str]) -> web.StreamResponse:
    """Upgrade to a WebSocket, then run the command in the container over it (or relay it to the runtime's
    streaming server)."""
    stdin, tty = query_flag(request, "stdin"), query_flag(request, "tty")
    if isinstance(runtime, StreamingExec):
        return await _relay_to_runtime(request, "exec", runtime.name, functools.partial(
            runtime.exec_url, running, command, stdin=stdin, tty=tty))
    if not isinstance(runtime, CommandExec):
        return await _refuse(request, f"the {runtime.name} runtime cannot run interactive commands")
    return await serve_session(request, functools.partial(
        start_session, runtime.exec_command(running, command, tty=tty), stdin=stdin, tty=tty))


async def serve_attach(request: web.Request, runtime: Runtime, running: RunningContainer) -> web.StreamResponse:
    """`pods/{name}/attach`: the container's main process, its output from now on and its stdin (when it has
    `stdin: true` and the client asks for it), over the same channels as exec. Ends with Success when the
    container exits; a client that goes away detaches, the container keeps running."""
    stdin = query_flag(request, "stdin")
    if isinstance(runtime, StreamingAttach):
        return await _relay_to_runtime(request, "attach", runtime.name, functools.partial(
            runtime.attach_url, running, stdin=stdin, tty=query_flag(request, "tty")))
    if not isinstance(running, Attachable):
        return await _refuse(request, f"attach is not supported by the {runtime.name} runtime")
    return await serve_session(request, functools.partial(running.attach, stdin=stdin))


async def _relay_to_runtime(request: web.Request, verb: str, runtime: str,
                            url: Callable[[], Awaitable[str]]) -> web.StreamResponse:
    """kubectl's WebSocket relayed to the runtime's streaming server, at the URL it gives for this session."""
    if is_spdy_upgrade(request):
        raise web.HTTPBadRequest(text=f"{verb} on the {runtime} runtime takes a WebSocket (kubectl 1.30+), not SPDY")
    try:
        found = await url()
    except NodeAgentError as exc:
        return await _refuse(request, str(exc))
    return await relay(request, found)


async def serve_session(request: web.Request, start: Callable[[], Awaitable[StreamSession]]) -> web.StreamResponse:
    """Over kubectl's SPDY upgrade or its WebSocket: start the session, pump it until it is over, then its result
    on the error channel."""
    if is_spdy_upgrade(request):
        return await serve_spdy_exec(request, start)
    ws = _websocket(request, PROTOCOLS)  # not an upgrade: refused before the session starts
    try:
        session = await start()
    except NodeAgentError as exc:
        return await _refuse(request, str(exc))
    try:
        await ws.prepare(request)
        code = await pump(session, functools.partial(_send, ws), _receive(ws, session),
                          stdout=query_flag(request, "stdout"), stderr=query_flag(request, "stderr"))
        if code is not None:
            await _send(ws, ERROR, json.dumps(exit_status(code)).encode())
    finally:
        session.kill()  # the client went away, or the command left children holding its output (attach: detaches)
        session.close()
        await ws.close()
    return ws


def _websocket(request: web.Request, protocols: Sequence[str]) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=protocols, max_msg_size=MAX_MESSAGE, autoping=True,
                               heartbeat=HEARTBEAT_SECONDS)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text=f"exec and attach take a WebSocket upgrade ({' or '.join(protocols)})")
    return ws


async def _refuse(request: web.Request, message: str) -> web.StreamResponse:
    """The command could not start: a failure Status on the error channel, as the kubelet sends it."""
    ws = _websocket(request, PROTOCOLS)
    await ws.prepare(request)
    await _send(ws, ERROR, json.dumps(failure_status(message)).encode())
    await ws.close()
    return ws


async def relay(request: web.Request, url: str) -> web.StreamResponse:
    """kubectl's WebSocket, message for message, to the runtime's streaming server at `url`. A server without
    v5.channel.k8s.io (containerd 1.x) is spoken to in v4, which v5 only extends: kubectl's end of stdin (v5's
    close message) cannot be passed on to it, and is dropped."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    v5, v4 = PROTOCOLS
    upstream_offer = [*offered, v4] if v5 in offered and v4 not in offered else offered
    async with ClientSession() as client:
        try:
            upstream = await client.ws_connect(url, protocols=upstream_offer, max_msg_size=MAX_MESSAGE)
        except (ClientError, OSError) as exc:
            return await _refuse(request, f"the runtime's streaming server at {url}: {exc}")
        async with upstream:
            chosen = upstream.protocol if upstream.protocol in offered else v5
            ws = _websocket(request, [chosen])
            await ws.prepare(request)
            try:
                await _copy_both(ws, upstream, drop_close=upstream.protocol != chosen)
            finally:
                await ws.close()
        return ws


async def _copy_both(ws: web.WebSocketResponse, upstream: ClientWebSocketResponse, *, drop_close: bool) -> None:
    async def copy(source: web.WebSocketResponse | ClientWebSocketResponse,
                   target: web.WebSocketResponse | ClientWebSocketResponse, drop: int | None) -> None:
        async for message in source:
            if message.type == WSMsgType.BINARY and message.data[:1] != (bytes([drop]) if drop is not None else b""):
                await target.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await target.send_str(message.data)
        await target.close()

    tasks = [asyncio.create_task(copy(ws, upstream, CLOSE if drop_close else None)),
             asyncio.create_task(copy(upstream, ws, None))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _receive(ws: web.WebSocketResponse, session: StreamSession) -> None:
    """stdin, terminal sizes and stdin's close from the client, until it closes the WebSocket."""
    async for message in ws:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        data: bytes = message.data
        channel, payload = data[0], data[1:]
        if channel == STDIN:
            await session.write(payload)
        elif channel == RESIZE:
            resize(session, payload)
        elif channel == CLOSE and payload[:1] == bytes([STDIN]):
            session.close_stdin()


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):
        await ws.send_bytes(bytes([channel]) + data)
