"""Limits on the API's listeners, so that slow, idle or many clients cannot take the API (or the agent's file
descriptors) away from the others.

    - a request's headers must have arrived HEADER_TIMEOUT_SECONDS after the connection opened, or after
      the previous answer on it (keep-alive); else the connection is closed. aiohttp itself closes a
      keep-alive connection idle for KEEPALIVE_SECONDS.
    - at most MAX_CONNECTIONS at once. One more evicts the oldest connection that is not being answered
      (slow or idle ones: a client that sends its request at once is answered first); when every one is
      being answered, the new one is closed.
    - no request bodies (every endpoint is a GET), but for a DELETE's DeleteOptions of at most
      MAX_DELETE_BODY bytes (kubectl sends one; it is read, within HEADER_TIMEOUT_SECONDS, and ignored): 413,
      and the connection is closed.
      A POST, PUT or PATCH with a body is answered unread (the Kubernetes API refuses writes with 405), and
      the connection closed.

An answer being written has no time limit: `logs -f` streams as long as the container runs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)
MAX_DELETE_BODY = 4096

HEADER_TIMEOUT_SECONDS = 5.0
KEEPALIVE_SECONDS = 5.0
MAX_CONNECTIONS = 128
WARN_EVERY_SECONDS = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionGuard:
    """The protocol factory for loop.create_server(): aiohttp's handlers, each behind a _Guarded connection;
    and the middleware that tells the guard when a request is being answered."""

    def __init__(self, name: str, *, max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT_SECONDS) -> None:
        self.name = name
        self.factory: Callable[[], asyncio.Protocol] | None = None  # the runner's aiohttp Server, once set up
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: dict[asyncio.BaseTransport, _Guarded] = {}  # oldest first
        self._warned_at: float | None = None

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    async def listen(self, runner: web.AppRunner, *, path: str | None = None, host: str = "",
                     port: int = 0, tls: ssl.SSLContext | None = None) -> asyncio.Server:
        """Serve the runner's application on a Unix socket (path) or TCP (host, port, over TLS when given),
        through the guard."""
        self.factory = runner.server
        loop = asyncio.get_running_loop()
        if path is not None:
            return await loop.create_unix_server(self, path, backlog=MAX_CONNECTIONS)
        return await loop.create_server(self, host, port, backlog=MAX_CONNECTIONS, reuse_address=True, ssl=tls)

    def admit(self, connection: _Guarded) -> bool:
        """Room for a new connection: made by evicting the oldest one not being answered, if need be."""
        if len(self.open) >= self.max_connections:
            victim = next((c for c in self.open.values() if not c.answering), None)
            self._warn(evicted=victim is not None)
            if victim is None:
                return False
            victim.close()
        assert connection.transport is not None
        self.open[connection.transport] = connection
        return True

    def _warn(self, *, evicted: bool) -> None:
        now = asyncio.get_running_loop().time()
        if self._warned_at is None or now - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            what = "closing the oldest idle or slow one" if evicted else "refusing new ones (all are being answered)"
            log.warning("%s: %d connections open, the most it takes: %s", self.name, self.max_connections, what)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = self.open.get(request.transport) if request.transport is not None else None
        if connection is not None:
            connection.answering = True
            connection.cancel_timer()
        try:
            if request.method == "DELETE" and request.content_length is not None and \
                    request.content_length <= MAX_DELETE_BODY:
                try:
                    async with asyncio.timeout(HEADER_TIMEOUT_SECONDS):
                        await request.read()
                except TimeoutError:
                    response = web.json_response(
                        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Timeout",
                         "message": "the request body did not arrive in time", "code": 408}, status=408)
                    response.force_close()
                    return response
            elif request.body_exists and request.method in ("POST", "PUT", "PATCH"):
                answer = await handler(request)
                answer.force_close()
                return answer
            elif request.body_exists:
                response = web.json_response(
                    {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "RequestEntityTooLarge",
                     "message": "this API takes no request body", "code": 413}, status=413)
                response.force_close()
                return response
            return await handler(request)
        finally:
            if connection is not None:
                connection.answering = False
                connection.start_timer()


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's handler behind it, closed if its request does not come in time."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None  # None: refused, aiohttp never saw it
        self.transport: asyncio.Transport | None = None
        self.answering = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream socket's
        self.transport = transport
        if not self.guard.admit(self):
            transport.abort()
            return
        assert self.guard.factory is not None  # set by listen() before any connection
        self.inner = self.guard.factory()
        self.inner.connection_made(transport)
        self.start_timer()

    def start_timer(self) -> None:
        self.cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expired)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.answering:
            log.debug("%s: no request within %.0fs, closing the connection", self.guard.name, self.guard.header_timeout)
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.guard.open.pop(self.transport, None)
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
        if self.transport is not None:
            self.guard.open.pop(self.transport, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

