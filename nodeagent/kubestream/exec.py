"""`pods/{name}/exec` as kubectl 1.30+ speaks it: a WebSocket with the `v5.channel.k8s.io` (or
`v4.channel.k8s.io`) subprotocol, each message's first byte its channel:

    0 stdin (client to server)   1 stdout   2 stderr   3 the result, a v1 Status (server to client)
    4 terminal size, {"Width": W, "Height": H} (client to server)   255 close a channel (v5: [255, 0] ends stdin)

The command ends with a Status on channel 3: Success, or NonZeroExitCode with the exit code as its cause
(kubectl exits with it). A client that goes away kills the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from nodeagent.errors import NodeAgentError
from nodeagent.runtime.base import RunningContainer, Runtime
from nodeagent.runtime.session import READ_CHUNK, ExecSession, start_session

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DRAIN_SECONDS = 2.0  # after the command exits, how long its output may still come (a child holding it open)
MAX_MESSAGE = 1 << 20


def exit_status(code: int) -> dict[str, object]:
    """The v1 Status of channel 3 for an exit code, as the kubelet writes it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: "
            f"error executing command, exit status {code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(message: str) -> dict[str, object]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


async def serve_exec(request: web.Request, runtime: Runtime, running: RunningContainer,
                     command: Sequence[str]) -> web.StreamResponse:
    """Upgrade to a WebSocket, then run the command in the container over it."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=MAX_MESSAGE, autoping=True)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="exec takes a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)")
    await ws.prepare(request)
    try:
        try:
            tty = query_flag(request, "tty")
            session = await start_session(runtime.exec_command(running, command, tty=tty),
                                          stdin=query_flag(request, "stdin"), tty=tty)
        except NodeAgentError as exc:
            await _send(ws, ERROR, json.dumps(failure_status(str(exc))).encode())
            return ws
        try:
            code = await _pump(ws, session, stdout=query_flag(request, "stdout"), stderr=query_flag(request, "stderr"))
        finally:
            session.kill()  # the client went away, or the command left children holding its output: ends it
            session.close()
        if code is not None:
            await _send(ws, ERROR, json.dumps(exit_status(code)).encode())
        return ws
    finally:
        await ws.close()


async def _pump(ws: web.WebSocketResponse, session: ExecSession, *, stdout: bool, stderr: bool) -> int | None:
    """Until the command exits and its output is sent: its exit code; None when the client went away."""
    outputs = [asyncio.create_task(_forward(ws, session.stdout, STDOUT if stdout else None))]
    if session.stderr is not None:
        outputs.append(asyncio.create_task(_forward(ws, session.stderr, STDERR if stderr else None)))
    inputs = asyncio.create_task(_receive(ws, session))
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


async def _forward(ws: web.WebSocketResponse, reader: asyncio.StreamReader, channel: int | None) -> None:
    while True:
        try:
            chunk = await reader.read(READ_CHUNK)
        except OSError:  # EIO: a terminal whose every other end is closed
            return
        if not chunk:
            return
        if channel is not None:
            await _send(ws, channel, chunk)


async def _receive(ws: web.WebSocketResponse, session: ExecSession) -> None:
    """stdin, terminal sizes and stdin's close from the client, until it closes the WebSocket."""
    async for message in ws:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        data: bytes = message.data
        channel, payload = data[0], data[1:]
        if channel == STDIN:
            session.write(payload)
        elif channel == RESIZE:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                size = json.loads(payload)
                session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        elif channel == CLOSE and payload[:1] == bytes([STDIN]):
            session.close_stdin()


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):
        await ws.send_bytes(bytes([channel]) + data)
