"""grpc probes: the health messages, and one Check against a real grpc server on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from nodeagent.agent import grpcprobe
from nodeagent.agent.grpcprobe import decode_status, encode_request


def test_the_request_names_the_service_as_field_one() -> None:
    assert encode_request("") == b""
    assert encode_request("etcd") == b"\x0a\x04etcd"
    assert encode_request("s" * 200)[:3] == b"\x0a\xc8\x01"  # a two-byte length


@pytest.mark.parametrize(("message", "status"), [
    (b"", 0), (b"\x08\x01", 1), (b"\x08\x02", 2), (b"\x08\x03", 3),
    (b"\x12\x02hi\x08\x01", 1),  # an unknown length-delimited field first
    (b"\x1d\x00\x00\x00\x00\x08\x02", 2),  # an unknown fixed32 field first
])
def test_the_status_is_read_and_other_fields_skipped(message: bytes, status: int) -> None:
    assert decode_status(message) == status


@pytest.mark.parametrize("message", [b"\x08", b"\x12\x05hi", b"\x0b"])
def test_a_malformed_response_is_an_error(message: bytes) -> None:
    with pytest.raises(ValueError):
        decode_status(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Answer = Callable[[bytes], bytes]


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[int, dict[str, Answer]]]:
    """A grpc server on 127.0.0.1 whose Health/Check answers with answers["check"](request)."""
    answers: dict[str, Answer] = {}

    async def check(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return answers["check"](request)

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        yield port, answers
    finally:
        await server.stop(None)


async def test_serving_is_healthy_and_the_service_is_asked_for(
        health_server: tuple[int, dict[str, Answer]]) -> None:
    port, answers = health_server
    asked: list[bytes] = []

    def serving(request: bytes) -> bytes:
        asked.append(request)
        return b"\x08\x01"

    answers["check"] = serving
    assert await grpcprobe.check("127.0.0.1", port, "etcd", 2) == (True, "service healthy")
    assert asked == [b"\x0a\x04etcd"]


async def test_not_serving_is_unhealthy_in_the_kubelet_s_words(health_server: tuple[int, dict[str, Answer]]) -> None:
    port, answers = health_server
    answers["check"] = lambda _: b"\x08\x02"
    assert await grpcprobe.check("127.0.0.1", port, "", 2) == (False, 'service unhealthy (responded with "NOT_SERVING")')


async def test_a_server_without_the_health_service(health_server: tuple[int, dict[str, Answer]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port, _ = health_server
    monkeypatch.setattr(grpcprobe, "CHECK", "/grpc.health.v1.Nothing/Check")  # a method this server lacks
    healthy, message = await grpcprobe.check("127.0.0.1", port, "", 2)
    assert not healthy
    assert message.startswith("this server does not implement the grpc health protocol (grpc.health.v1.Health)")


async def test_nothing_listening_is_a_failure_not_a_hang() -> None:
    healthy, message = await grpcprobe.check("127.0.0.1", free_port(), "", 2)
    assert not healthy
    assert message.startswith("error: health rpc probe failed: UNAVAILABLE")
