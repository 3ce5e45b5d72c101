"""An exec whose client goes away ends its command (nodeagent.kubestream.exec), however it goes: closed at once,
or silent (a kubectl whose host or network vanished: nothing closes its connection, only pings find it).

CI saw a command outlive its killed client once; a silent client kept its command forever.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from nodeagent.kubestream.exec import HEARTBEAT_SECONDS, serve_exec
from nodeagent.runtime.base import RunningContainer, Runtime
from nodeagent.runtime.session import ExecCommand

UPGRADE = (b"GET /exec?command=sleep&stdout=true HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\n"
           b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")


class SleepingRuntime:
    """Runs `sleep 1234` for any command; its cgroup step says when the command has started and then waits
    until the test is done with the client (closed: the window in which CI's client was killed)."""

    name = "fake"

    def __init__(self) -> None:
        self.started: asyncio.Queue[int] = asyncio.Queue()
        self.client_gone = asyncio.Event()

    def exec_command(self, running: RunningContainer, command: Sequence[str], *, tty: bool) -> ExecCommand:
        async def into_cgroup(pid: int) -> None:
            self.started.put_nowait(pid)
            await self.client_gone.wait()
            await asyncio.sleep(0.2)  # the agent's loop sees the connection lost

        return ExecCommand(("sleep", "1234"), cgroup=into_cgroup)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


async def client_gone_while_the_command_starts(tmp_path: Path, *, silent: bool) -> tuple[int, float | None]:
    """(the command's pid, the seconds the handler took to end once the client was gone; None: it did not)."""
    runtime = SleepingRuntime()
    handled = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await serve_exec(request, cast(Runtime, cast(Any, runtime)), cast(RunningContainer, None),
                                    ["sleep"])
        finally:
            handled.set()

    app = web.Application()
    app.router.add_get("/exec", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "agent.sock")
    await web.UnixSite(runner, path).start()
    client = socket.socket(socket.AF_UNIX)
    try:
        await asyncio.get_running_loop().sock_connect(client, path)
        client.sendall(UPGRADE)
        pid = await asyncio.wait_for(runtime.started.get(), 10)
        if not silent:
            client.close()  # as kill -9 of kubectl
        gone = time.monotonic()
        runtime.client_gone.set()
        try:
            await asyncio.wait_for(handled.wait(), 3 * HEARTBEAT_SECONDS)
        except TimeoutError:
            return pid, None
        took = time.monotonic() - gone
        for _ in range(100):  # SIGKILL was sent: its delivery (and the loop's reaping) takes a moment under load
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        return pid, took
    finally:
        client.close()
        await runner.cleanup()


@pytest.mark.parametrize("silent", [False, True], ids=["closed", "silent"])
def test_a_client_gone_while_its_command_starts_ends_the_command(tmp_path: Path, silent: bool) -> None:
    pid, took = asyncio.run(client_gone_while_the_command_starts(tmp_path, silent=silent))
    try:
        assert took is not None, "the exec handler still waits for a client that is gone"
        assert not alive(pid), "the command outlived its client"
        if not silent:
            assert took < HEARTBEAT_SECONDS, "a closed connection is seen at once, not by the heartbeat"
    finally:
        if alive(pid):
            os.kill(pid, 9)
