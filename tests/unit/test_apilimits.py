"""The API's connection guard over a real aiohttp server on a Unix socket in tmp: who is evicted at the cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from nodeagent.apilimits import ConnectionGuard


async def serve(path: Path, guard: ConnectionGuard, release: asyncio.Event) -> tuple[web.AppRunner, asyncio.Server]:
    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner, await guard.listen(runner, path=str(path))


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed it within 2 s (end of stream, or reset)."""
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_at_the_cap_the_oldest_idle_connection_goes_and_busy_ones_stay(tmp_path: Path) -> None:
    async def scenario() -> None:
        guard = ConnectionGuard("test", max_connections=2, header_timeout=30)
        release = asyncio.Event()
        runner, server = await serve(tmp_path / "api.sock", guard, release)
        try:
            busy_reader, busy = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            busy.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # being answered
            await busy.drain()
            idle_reader, idle = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            idle.write(b"GET /slow HTTP/1.1\r\n")  # headers not finished: slow, or idle
            await idle.drain()
            await asyncio.sleep(0.2)
            newest_reader, newest = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            assert await closed(idle_reader)  # evicted for the newcomer
            newest.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await newest.drain()
            await asyncio.sleep(0.2)
            refused_reader, refused = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            assert await closed(refused_reader)  # both others are being answered: no room
            release.set()
            for reader in (busy_reader, newest_reader):
                assert (await reader.readuntil(b"done")).startswith(b"HTTP/1.1 200")
            for writer in (busy, idle, newest, refused):
                writer.close()
        finally:
            server.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_a_connection_without_a_request_in_time_is_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        guard = ConnectionGuard("test", header_timeout=0.3)
        runner, server = await serve(tmp_path / "api.sock", guard, asyncio.Event())
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            writer.write(b"GET /sl")
            await writer.drain()
            assert await closed(reader)
            writer.close()
        finally:
            server.close()
            await runner.cleanup()

    asyncio.run(scenario())
