"""A real aiohttp server on 127.0.0.1 for the URL source's security tests, run in the test's own loop."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from nodeagent.api.manifest import StaticPod
from nodeagent.sources.http import HttpSettings, HttpSource

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    """Answers with `body` (or what `handler` says) and records every request's path and headers."""

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.handler: Handler | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path_qs, dict(request.headers)))
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(body=self.body)


@asynccontextmanager
async def serving(recorder: Recorder, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """The recorder served on a fresh loopback port; yields its base URL (another port: another origin)."""
    app = web.Application()
    app.router.add_get("/{path:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Fetcher:
    """An HttpSource and the events it emits, fetching once at a time in the test's loop."""

    def __init__(self, url: str, headers: dict[str, list[str]] | None = None, **settings: Any) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.source = HttpSource(HttpSettings(url=url, headers=headers or {}, **settings), node_name="node1",
                                 on_event=lambda *event: self.events.append(event))

    async def fetch(self) -> list[StaticPod] | None:
        async with self.source.session() as session:
            return await self.source.fetch(session)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]
