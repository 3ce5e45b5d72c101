"""`nodeagent exec`, `nodeagent attach` and `nodeagent port-forward`: kubectl's protocols (nodeagent.kubestream)
over the agent's socket, with aiohttp's WebSocket client (imported by these commands alone: every CLI start counts).

Exit codes: exec exits with the command's exit code (1 when it could not run: one line on stderr); attach
with 0 when the container exited; port-forward runs until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import termios
import threading
import tty as terminal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import click

from nodeagent.cli.client import pod_url, socket_path
from nodeagent.cli.commands import client, find_pod, with_agent
from nodeagent.cli.output import examples, fail

if TYPE_CHECKING:
    from aiohttp import ClientSession, ClientWebSocketResponse

CHUNK = 32 * 1024


@click.command("exec", context_settings={"ignore_unknown_options": True}, epilog=examples(
    "nodeagent exec web -- cat /etc/hostname", "nodeagent exec -it web -c app -- sh"))
@click.argument("pod")
@click.argument("command", nargs=-1, required=True)
@click.option("-c", "--container", help="The container (default: the pod's first).")
@click.option("-i", "--stdin", "with_stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", "with_tty", is_flag=True, help="Give the command a terminal.")
@with_agent
def exec_command(pod: str, command: tuple[str, ...], container: str | None, with_stdin: bool, with_tty: bool,
                 socket_option: str | None) -> None:
    """Run a command in a container (kubectl exec); exit with its exit code."""
    found = find_pod(client(socket_option), pod)
    _stream("exec", found, command, container or found["spec"]["containers"][0]["name"], with_stdin, with_tty,
            socket_option)


@click.command("attach", epilog=examples("nodeagent attach web", "nodeagent attach -it web -c app"))
@click.argument("pod")
@click.option("-c", "--container", help="The container (default: the pod's first).")
@click.option("-i", "--stdin", "with_stdin", is_flag=True,
              help="Pass stdin to the container (it must have stdin: true).")
@click.option("-t", "--tty", "with_tty", is_flag=True,
              help="The container's terminal is this one (a container with tty: true gets it anyway, as kubectl "
                   "does).")
@with_agent
def attach(pod: str, container: str | None, with_stdin: bool, with_tty: bool, socket_option: str | None) -> None:
    """Attach to a running container's main process (kubectl attach): its output from now on, and stdin with
    -i; ends when the container exits (exit 0) or on Ctrl-C (the container keeps running)."""
    found = find_pod(client(socket_option), pod)
    name = container or found["spec"]["containers"][0]["name"]
    spec: dict[str, Any] = next((c for c in found["spec"]["containers"] if c["name"] == name), {})
    tty = bool(spec.get("tty"))
    if with_tty and not tty:
        click.echo(f"Unable to use a TTY - container {name} did not allocate one", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        _stream("attach", found, (), name, with_stdin, tty, socket_option)


def _stream(verb: str, found: dict[str, Any], command: tuple[str, ...], container: str, with_stdin: bool,
            with_tty: bool, socket_option: str | None) -> None:
    meta = found["metadata"]
    query = urlencode({"command": list(command), "container": container, "stdin": str(with_stdin).lower(),
                       "stdout": "true", "stderr": str(not with_tty).lower(), "tty": str(with_tty).lower()},
                      doseq=True)
    url = f"{pod_url(meta['namespace'], meta['name'])}/{verb}?{query}"
    raise SystemExit(_upgraded(socket_option, url, _exec(socket_path(socket_option), url, with_stdin, with_tty)))


def _upgraded(socket_option: str | None, url: str, session: Coroutine[Any, Any, int]) -> int:
    """Run the WebSocket session; when the agent refused the upgrade, its Status (asked again without one:
    the same checks come first) as one line, exit 1."""
    from aiohttp import WSServerHandshakeError

    try:
        return asyncio.run(session)
    except WSServerHandshakeError:
        client(socket_option).get(url)  # raises the ApiError with_agent reports
        fail(f"the agent refused the WebSocket upgrade of {url}")
        return 1


async def _exec(path: str, url: str, with_stdin: bool, with_tty: bool) -> int:
    from aiohttp import WSMsgType

    from nodeagent.kubestream.channels import CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT

    async with _session(path) as session, session.ws_connect(
            f"http://nodeagent{url}", protocols=("v5.channel.k8s.io",), max_msg_size=0) as ws:
        raw = _raw_terminal() if with_tty else contextlib.nullcontext()
        with raw:
            loop = asyncio.get_running_loop()
            resizes: set[asyncio.Task[None]] = set()
            if with_tty:
                def resize() -> None:
                    columns, lines = os.get_terminal_size(sys.stdout.fileno())
                    size = json.dumps({"Width": columns, "Height": lines}).encode()
                    task = loop.create_task(ws.send_bytes(bytes([RESIZE]) + size))
                    resizes.add(task)
                    task.add_done_callback(resizes.discard)
                with contextlib.suppress(OSError):
                    resize()
                loop.add_signal_handler(signal.SIGWINCH, resize)
            if with_stdin:
                _read_stdin(loop, lambda data: ws.send_bytes(bytes([STDIN]) + data),
                            lambda: ws.send_bytes(bytes([CLOSE, STDIN])))
            status: dict[str, Any] | None = None
            async for message in ws:
                if message.type != WSMsgType.BINARY or not message.data:
                    continue
                channel, data = message.data[0], message.data[1:]
                if channel == ERROR:
                    status = json.loads(data)
                elif channel in (STDOUT, STDERR):
                    out = sys.stdout.buffer if channel == STDOUT else sys.stderr.buffer
                    out.write(data)
                    out.flush()
    return _exit_code(status)


def _exit_code(status: dict[str, Any] | None) -> int:
    if status is None:
        fail("the connection ended before the command did")
        return 1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", 1))
    fail(str(status.get("message", "the command could not run")))
    return 1


def _read_stdin(loop: asyncio.AbstractEventLoop, send: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
    """stdin in a daemon thread (a file, a pipe or a terminal alike), sent as it comes; its end as close()."""
    def run() -> None:
        while data := os.read(sys.stdin.fileno(), CHUNK):
            asyncio.run_coroutine_threadsafe(send(data), loop).result()
        asyncio.run_coroutine_threadsafe(close(), loop).result()

    threading.Thread(target=run, name="stdin", daemon=True).start()


@contextlib.contextmanager
def _raw_terminal() -> Any:
    if not sys.stdin.isatty():
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    terminal.setraw(sys.stdin.fileno(), termios.TCSANOW)  # not TCSAFLUSH: what was typed ahead is kept, as kubectl
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


@click.command("port-forward", epilog=examples("nodeagent port-forward web 8080:80", "nodeagent port-forward web :80"))
@click.argument("pod")
@click.argument("ports", nargs=-1, required=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="The local address to listen on.")
@with_agent
def port_forward(pod: str, ports: tuple[str, ...], address: str, socket_option: str | None) -> None:
    """Forward local ports to a pod's (kubectl port-forward): LOCAL:REMOTE, :REMOTE (any local port) or PORT."""
    pairs = []
    for spec in ports:
        local, _, remote = spec.rpartition(":") if ":" in spec else (spec, ":", spec)
        try:
            pairs.append((int(local or 0), int(remote)))
        except ValueError:
            raise click.BadParameter(f'"{spec}": LOCAL:REMOTE, :REMOTE or PORT', param_hint="PORTS") from None
    meta = find_pod(client(socket_option), pod)["metadata"]
    url = f"{pod_url(meta['namespace'], meta['name'])}/portforward?" + urlencode(
        {"ports": [str(remote) for _, remote in pairs]}, doseq=True)
    with contextlib.suppress(KeyboardInterrupt):
        _upgraded(socket_option, url, _port_forward(socket_path(socket_option), url, address, pairs))


async def _port_forward(path: str, url: str, address: str, pairs: list[tuple[int, int]]) -> int:
    from nodeagent.kubestream.portforward import PROTOCOL

    async with _session(path) as session, session.ws_connect(
            f"http://nodeagent{url}", protocols=(PROTOCOL,), max_msg_size=0) as ws:
        tunnel = _ClientTunnel(ws)
        servers = []
        for local, remote in pairs:
            server = await asyncio.start_server(functools.partial(tunnel.forward, port=remote), address, local)
            servers.append(server)
            bound = server.sockets[0].getsockname()
            click.echo(f"Forwarding from {bound[0]}:{bound[1]} -> {remote}")
        try:
            await tunnel.run()
        finally:
            for server in servers:
                server.close()
    fail("the agent closed the port-forward connection")
    return 1


class _ClientTunnel:
    """kubectl's side of the SPDY port-forward protocol: a pair of streams for each local connection."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        from nodeagent.kubestream import spdy

        self.spdy = spdy
        self.ws = ws
        self.encoder = spdy.Encoder()
        self.decoder = spdy.Decoder()
        self.next_stream = 1
        self.writers: dict[int, asyncio.StreamWriter] = {}  # data stream -> the local connection
        self.errors: dict[int, int] = {}  # error stream -> its port
        self.lock = asyncio.Lock()

    async def run(self) -> None:
        from aiohttp import WSMsgType

        async for message in self.ws:
            if message.type != WSMsgType.BINARY:
                continue
            for frame in self.decoder.feed(message.data):
                if frame.kind == self.spdy.DATA and frame.stream_id in self.writers:
                    writer = self.writers[frame.stream_id]
                    writer.write(frame.data)
                    if frame.fin:
                        writer.close()
                        del self.writers[frame.stream_id]
                elif frame.kind == self.spdy.DATA and frame.stream_id in self.errors and frame.data:
                    click.echo(f"error: port {self.errors[frame.stream_id]}: {frame.data.decode(errors='replace')}",
                               err=True)

    async def forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        async with self.lock:
            error, data = self.next_stream, self.next_stream + 2
            self.next_stream += 4
            headers = {"port": str(port), "requestID": str(error)}
            self.errors[error] = port
            self.writers[data] = writer
            await self.ws.send_bytes(self.encoder.syn_stream(error, {**headers, "streamType": "error"}, fin=True)
                                     + self.encoder.syn_stream(data, {**headers, "streamType": "data"}))
        try:
            while chunk := await reader.read(CHUNK):
                await self.ws.send_bytes(self.spdy.data_frame(data, chunk))
        except ConnectionError:
            pass
        with contextlib.suppress(ConnectionError):
            await self.ws.send_bytes(self.spdy.data_frame(data, b"", fin=True))


def _session(path: str) -> ClientSession:
    from aiohttp import ClientSession, UnixConnector

    return ClientSession(connector=UnixConnector(path=path))
