"""Test scaffolding: the agent's Unix-socket API on a plain-HTTP loopback port for the real kubectl, recording
the upgrade each stream asked for (WebSocket or SPDY), so the exec, attach and port-forward tests can check
which of kubectl's protocols they ran. It predates the HTTPS listener and answers discovery itself with a
static subset; the HTTPS listener serves discovery of its own, which test_kubeapi proves kubectl needs nothing
beyond. Every plain request is forwarded with `Connection: close`, so that each of kubectl's requests arrives on
a new connection and discovery can be answered here; upgrades are forwarded as they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

RESOURCES = [{"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
              "verbs": ["get", "list", "watch"]},
             *({"name": f"pods/{sub}", "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}
               for sub, kind, verbs in (("exec", "PodExecOptions", ["create", "get"]),
                                        ("attach", "PodAttachOptions", ["create", "get"]),
                                        ("portforward", "PodPortForwardOptions", ["create", "get"]),
                                        ("log", "Pod", ["get"])))]
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/api/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": RESOURCES},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0-nodeagent"},
}


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@dataclass
class Endpoint:
    port: int
    upgrades: list[str] = field(default_factory=list)  # the Upgrade headers seen, in order


async def _serve(socket_path: str, upgrades: list[str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1].split("?")[0]
    if path in DISCOVERY:
        body = json.dumps(DISCOVERY[path]).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
        return
    upgrade = [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("upgrade:")]
    upgrades.extend(upgrade)
    if not upgrade:
        kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
        head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
    agent_reader, agent_writer = await asyncio.open_unix_connection(socket_path)
    agent_writer.write(head)
    await asyncio.gather(_splice(reader, agent_writer), _splice(agent_reader, writer))


@contextmanager
def kubectl_endpoint(socket_path: Path) -> Iterator[Endpoint]:
    """A loopback port serving the agent's API to kubectl, for the duration of the block."""
    upgrades: list[str] = []
    loop = asyncio.new_event_loop()
    ready: list[asyncio.Server] = []
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _serve(str(socket_path), upgrades, reader, writer)

        ready.append(loop.run_until_complete(asyncio.start_server(handler, "127.0.0.1", 0)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    server = ready[0]
    async def shut_down() -> None:
        server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        yield Endpoint(server.sockets[0].getsockname()[1], upgrades)
    finally:
        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def kubectl_argv(port: int, cache: Path, *args: str) -> list[str]:
    return ["kubectl", "--server", f"http://127.0.0.1:{port}", "--cache-dir", str(cache), *args]


def kubectl_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": "/dev/null", "HOME": str(cache)}


def kubectl(port: int, cache: Path, *args: str, input: bytes | None = None, timeout: float = 30,
            tty: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    argv = kubectl_argv(port, cache, *args)
    if tty:  # kubectl -t needs a terminal of its own: script(1) gives it one, 30 rows of 100 columns
        argv = ["script", "-qec", "stty rows 30 cols 100; " + shlex.join(argv), "/dev/null"]
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                          env={**kubectl_env(cache), **(env or {})})
