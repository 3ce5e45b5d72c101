"""grpc probes: the gRPC health checking protocol (grpc.health.v1.Health/Check), as the kubelet's prober.

The two messages are tiny, so they are encoded here rather than generated:
    HealthCheckRequest  { string service = 1; }
    HealthCheckResponse { ServingStatus status = 1; }   UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3
grpcio is imported on the first grpc probe only: ~0.1 s that agents without one never pay.
"""

from __future__ import annotations

CHECK = "/grpc.health.v1.Health/Check"
STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
SERVING = 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("a truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def encode_request(service: str) -> bytes:
    """HealthCheckRequest; an empty service (the server as a whole) is the empty message, as proto3 sends it."""
    name = service.encode()
    return b"\x0a" + _varint(len(name)) + name if name else b""


def decode_status(message: bytes) -> int:
    """The status of a HealthCheckResponse (0, UNKNOWN, when absent); other fields are skipped."""
    at, status = 0, 0
    while at < len(message):
        key, at = _read_varint(message, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(message, at)
            if field == 1:
                status = value
        elif wire == 2:
            length, at = _read_varint(message, at)
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} in a HealthCheckResponse")
    if at != len(message):
        raise ValueError("a truncated HealthCheckResponse")
    return status


async def check(host: str, port: int, service: str, timeout: float) -> tuple[bool, str]:
    """(healthy, the kubelet's words for the result) of one Health/Check call within `timeout`."""
    import grpc  # see the module's docstring

    address = f"{host}:{port}"
    options = [("grpc.primary_user_agent", "kube-probe/nodeagent")]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            CHECK, request_serializer=None, response_deserializer=None)  # bytes both ways
        try:
            reply = await call(encode_request(service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                return False, ("this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                               f"{exc.details()}")
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, f"timeout: health rpc did not complete within {timeout:g}s"
            return False, f"error: health rpc probe failed: {exc.code().name}: {exc.details()}"
    try:
        status = decode_status(reply)
    except ValueError as exc:
        return False, f"error: health rpc probe failed: {exc}"
    if status != SERVING:
        return False, f'service unhealthy (responded with "{STATUSES.get(status, str(status))}")'
    return True, "service healthy"
