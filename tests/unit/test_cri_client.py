"""The CRI client and endpoint discovery against fake runtimes on Unix sockets (no containerd, no root)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from nodeagent.runtime.cri import api_pb2, api_pb2_grpc
from nodeagent.runtime.cri.client import CRIClient, Deadlines
from nodeagent.runtime.cri.endpoints import discover_endpoint, parse_endpoint
from nodeagent.runtime.cri.errors import CRIEndpointError, CRIError, CRITimeoutError, CRIUnavailableError

ServerFactory = Callable[..., Awaitable[str]]


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    """Answers Version; every sandbox is unknown; Status as containerd starting; the rest UNIMPLEMENTED."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def Version(self, request: api_pb2.VersionRequest, context: object) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(version="0.1.0", runtime_name=self.name, runtime_version="1.0.0",
                                       runtime_api_version=request.version)

    async def PodSandboxStatus(self, request: api_pb2.PodSandboxStatusRequest,
                               context: grpc.aio.ServicerContext[object, object]) -> api_pb2.PodSandboxStatusResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"an error occurred when try to find sandbox "
                            f"{request.pod_sandbox_id!r}: not found")
        raise AssertionError("abort returns never")

    async def Status(self, request: api_pb2.StatusRequest,
                     context: grpc.aio.ServicerContext[object, object]) -> api_pb2.StatusResponse:
        await context.abort(grpc.StatusCode.UNKNOWN, "server is not initialized yet")  # containerd, starting
        raise AssertionError("abort returns never")


@pytest.fixture
async def runtime_server() -> AsyncIterator[ServerFactory]:
    """Start fake runtimes on sockets; all stopped after the test."""
    servers: list[grpc.aio.Server] = []

    async def start(path: Path, name: str = "fake") -> str:
        server = grpc.aio.server()
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(FakeRuntime(name), server)  # type: ignore[abstract]
        server.add_insecure_port(f"unix://{path}")
        await server.start()
        servers.append(server)
        return f"unix://{path}"

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture
def silent_socket() -> Iterator[Callable[[Path], str]]:
    """Listening sockets that never say a word: the kernel completes connections into the backlog."""
    listeners: list[socket.socket] = []

    def start(path: Path) -> str:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(16)
        listeners.append(listener)
        return f"unix://{path}"

    yield start
    for listener in listeners:
        listener.close()


async def test_version_from_a_runtime(runtime_server: ServerFactory, tmp_path: Path) -> None:
    endpoint = await runtime_server(tmp_path / "cri.sock")
    async with CRIClient(endpoint) as client:
        version = await client.version()
    assert (version.runtime_name, version.runtime_api_version) == ("fake", "v1")


async def test_runtime_errors_keep_code_and_message(runtime_server: ServerFactory, tmp_path: Path) -> None:
    endpoint = await runtime_server(tmp_path / "cri.sock")
    async with CRIClient(endpoint) as client:
        with pytest.raises(CRIError) as raised:
            await client.pod_sandbox_status("abc")
        assert (raised.value.method, raised.value.code, raised.value.not_found) == ("PodSandboxStatus", "NOT_FOUND", True)
        assert str(raised.value) == (f"PodSandboxStatus at {endpoint}: NOT_FOUND: an error occurred when try to "
                                     "find sandbox 'abc': not found")
        with pytest.raises(CRIError) as raised:
            await client.runtime_config()
        assert raised.value.code == "UNIMPLEMENTED" and not raised.value.unavailable


async def test_a_starting_containerd_is_unavailable(runtime_server: ServerFactory, tmp_path: Path) -> None:
    async with CRIClient(await runtime_server(tmp_path / "cri.sock")) as client:
        with pytest.raises(CRIUnavailableError) as raised:
            await client.status()
    assert (raised.value.code, raised.value.unavailable) == ("UNKNOWN", True)


async def test_no_runtime_is_unavailable_at_once(tmp_path: Path) -> None:
    async with CRIClient(f"unix://{tmp_path}/missing.sock") as client:
        started = time.monotonic()
        with pytest.raises(CRIUnavailableError) as raised:
            await client.status()
    assert raised.value.unavailable and raised.value.code == "UNAVAILABLE"
    assert time.monotonic() - started < 1


async def test_a_runtime_that_never_answers_times_out(silent_socket: Callable[[Path], str],
                                                       tmp_path: Path) -> None:
    endpoint = silent_socket(tmp_path / "silent.sock")
    async with CRIClient(endpoint, deadlines=Deadlines(status_s=0.3, lifecycle_s=0.5)) as client:
        started = time.monotonic()
        with pytest.raises(CRITimeoutError) as raised:
            await client.version()
        assert 0.3 <= time.monotonic() - started < 1.5
        assert raised.value.code == "DEADLINE_EXCEEDED"
        started = time.monotonic()
        with pytest.raises(CRITimeoutError):
            await client.stop_container("abc", timeout_s=1)  # the grace period plus lifecycle_s
        assert 1.5 <= time.monotonic() - started < 3


async def test_a_runtime_that_comes_later_is_reached(runtime_server: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "late.sock"
    async with CRIClient(f"unix://{path}") as client:
        with pytest.raises(CRIUnavailableError):
            await client.version()
        await runtime_server(path)
        started = time.monotonic()
        while True:
            try:
                await client.version()
                break
            except CRIUnavailableError:
                assert time.monotonic() - started < 3, "not reconnected within 3 s"
                await asyncio.sleep(0.05)


def test_the_client_wants_a_normalized_endpoint() -> None:
    with pytest.raises(CRIEndpointError, match="expected unix:///absolute/path"):
        CRIClient("/run/containerd/containerd.sock")


@pytest.mark.parametrize(("value", "expected"), [
    ("unix:///run/containerd/containerd.sock", "unix:///run/containerd/containerd.sock"),
    ("/run/crio/crio.sock", "unix:///run/crio/crio.sock"),
    ("unix:/var/run/cri-dockerd.sock", "unix:///var/run/cri-dockerd.sock"),
], ids=["url", "bare path", "short url"])
def test_parse_endpoint(value: str, expected: str) -> None:
    assert parse_endpoint(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("run/containerd/containerd.sock", "expected unix:///absolute/path/to.sock"),
    ("unix://run/containerd.sock", "expected unix:///absolute/path/to.sock"),
    ("tcp://127.0.0.1:3735", "protocol 'tcp' not supported"),
    ("npipe:////./pipe/containerd-containerd", "protocol 'npipe' not supported"),
], ids=["relative", "host instead of path", "tcp", "windows pipe"])
def test_parse_endpoint_refuses(value: str, message: str) -> None:
    with pytest.raises(CRIEndpointError, match=message):
        parse_endpoint(value)


async def test_discovery_takes_the_configured_endpoint_unprobed() -> None:
    assert await discover_endpoint("/nowhere/cri.sock") == "unix:///nowhere/cri.sock"


async def test_discovery_finds_the_one_runtime_that_answers(
        runtime_server: ServerFactory, silent_socket: Callable[[Path], str], tmp_path: Path) -> None:
    answering = await runtime_server(tmp_path / "containerd.sock")
    silent = silent_socket(tmp_path / "crio.sock")
    (tmp_path / "file.sock").write_text("")
    candidates = [f"unix://{tmp_path}/missing.sock", silent, answering, f"unix://{tmp_path}/file.sock"]
    started = time.monotonic()
    assert await discover_endpoint(None, candidates=candidates, timeout_s=0.3) == answering
    assert time.monotonic() - started < 1  # probed together


async def test_discovery_refuses_several_runtimes(runtime_server: ServerFactory, tmp_path: Path) -> None:
    first = await runtime_server(tmp_path / "containerd.sock")
    second = await runtime_server(tmp_path / "crio.sock")
    with pytest.raises(CRIEndpointError) as raised:
        await discover_endpoint(None, candidates=[first, second])
    assert str(raised.value) == ("found multiple CRI endpoints on the host. Please define which one you wish to use "
                                 f"by setting containerRuntimeEndpoint in the configuration: {first}, {second}")


async def test_discovery_names_why_each_candidate_failed(silent_socket: Callable[[Path], str],
                                                        tmp_path: Path) -> None:
    silent = silent_socket(tmp_path / "crio.sock")
    (tmp_path / "file.sock").write_text("")
    candidates = [f"unix://{tmp_path}/missing.sock", silent, f"unix://{tmp_path}/file.sock"]
    with pytest.raises(CRIEndpointError) as raised:
        await discover_endpoint(None, candidates=candidates, timeout_s=0.3)
    assert str(raised.value) == (
        f"no container runtime answers on the known CRI endpoints (unix://{tmp_path}/missing.sock: no socket; "
        f"{silent}: DEADLINE_EXCEEDED: Deadline Exceeded; unix://{tmp_path}/file.sock: not a socket): start one, "
        "or set containerRuntimeEndpoint in the configuration")
