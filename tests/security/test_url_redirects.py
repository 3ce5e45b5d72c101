"""Issue 12 item 9: staticPodURLHeader headers go to the configured origin only, never to wherever a redirect
points; a redirect from https to http is refused. Real aiohttp servers on 127.0.0.1: another port is
another origin."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme
from aiohttp import web

from tests.security.test_hostile_manifest import json_pod
from tests.security.urlserver import Fetcher, Recorder, serving

SECRET = "Bearer s3cr3t-header-value"
HEADERS = {"Authorization": [SECRET], "X-Api-Key": ["k3y-s3cr3t"]}


def redirect_to(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


async def test_a_redirect_to_another_origin_gets_none_of_the_headers() -> None:
    elsewhere = Recorder(json_pod())
    async with serving(elsewhere) as other:
        origin = Recorder()

        async def handle(request: web.Request) -> web.Response:
            return redirect_to(other + "/stolen") if request.path == "/pods.json" else web.Response(status=404)

        origin.handler = handle
        async with serving(origin) as base:
            fetcher = Fetcher(base + "/pods.json", headers=HEADERS)
            pods = await fetcher.fetch()
    assert pods is not None and [p.name for p in pods] == ["web-node1"]
    assert origin.requests[0][1]["Authorization"] == SECRET  # the configured origin gets them
    [(path, received)] = elsewhere.requests
    assert path == "/stolen"
    assert "Authorization" not in received and "X-Api-Key" not in received


async def test_a_redirect_within_the_origin_keeps_the_headers() -> None:
    recorder = Recorder()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/old":
            return redirect_to("/new", status=301)
        return web.Response(body=json_pod())

    recorder.handler = handle
    async with serving(recorder) as base:
        pods = await Fetcher(base + "/old", headers=HEADERS).fetch()
    assert pods is not None
    assert [(path, headers.get("Authorization"), headers.get("X-Api-Key")) for path, headers in recorder.requests] == [
        ("/old", SECRET, "k3y-s3cr3t"), ("/new", SECRET, "k3y-s3cr3t")]


async def test_a_redirect_loop_is_a_failed_fetch() -> None:
    recorder = Recorder()

    async def handle(request: web.Request) -> web.Response:
        return redirect_to(f"/hop{len(recorder.requests)}")

    recorder.handler = handle
    async with serving(recorder) as base:
        fetcher = Fetcher(base + "/start", headers=HEADERS)
        assert await fetcher.fetch() is None
    assert fetcher.reasons() == ["ManifestURLFailed"]
    assert "more than 5 redirects" in fetcher.events[0][2]
    assert len(recorder.requests) == 6


async def test_a_redirect_from_https_to_http_is_refused(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_tls)

    plain = Recorder(json_pod())
    async with serving(plain) as http_base:
        secure = Recorder()

        async def handle(request: web.Request) -> web.Response:
            return redirect_to(http_base + "/pods.json")

        secure.handler = handle
        async with serving(secure, tls=server_tls) as https_base:
            assert https_base.startswith("https://")
            fetcher = Fetcher(https_base + "/pods.json", headers=HEADERS, ca_file=str(ca_file))
            assert await fetcher.fetch() is None
    assert len(secure.requests) == 1
    assert plain.requests == []  # not even a request without the headers: its answer could not be trusted
    assert fetcher.reasons() == ["ManifestURLFailed"]
    assert f"redirect from https to http refused: {http_base}/pods.json" in fetcher.events[0][2]


async def test_a_redirect_to_another_scheme_is_refused() -> None:
    recorder = Recorder()

    async def handle(request: web.Request) -> web.Response:
        return redirect_to("file:///etc/shadow")

    recorder.handler = handle
    async with serving(recorder) as base:
        fetcher = Fetcher(base + "/pods.json", headers=HEADERS)
        assert await fetcher.fetch() is None
    assert "redirect to file:///etc/shadow refused: not http or https" in fetcher.events[0][2]
