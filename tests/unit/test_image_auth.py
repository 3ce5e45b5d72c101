"""Registry authentication's pure parts: WWW-Authenticate challenges, the registry's error text, and the
token request against an in-process token server (config.json credentials: test_registry_credentials)."""


import base64

import aiohttp
import pytest
from aiohttp import web

from nodeagent.images.auth import Authenticator, parse_challenges, registry_error_text
from nodeagent.images.credentials import Credentials
from nodeagent.images.errors import ImagePullError


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/busybox:pull"',
         [("bearer", [("realm", "https://auth.docker.io/token"), ("service", "registry.docker.io"),
                      ("scope", "repository:library/busybox:pull")])]),
        ('Basic realm="Registry Realm"', [("basic", [("realm", "Registry Realm")])]),
        ('Basic realm="a", Bearer realm="https://t/token", service=svc',
         [("basic", [("realm", "a")]), ("bearer", [("realm", "https://t/token"), ("service", "svc")])]),
        ('Bearer realm="x\\"y", Scope="repository:a/b:pull,push"',
         [("bearer", [("realm", 'x"y'), ("scope", "repository:a/b:pull,push")])]),
        ("Negotiate", [("negotiate", [])]),
        ("", []),
    ],
    ids=["docker-hub", "basic", "two", "escapes-and-case", "no-params", "empty"],
)
def test_parse_challenges(header: str, expected: list[tuple[str, list[tuple[str, str]]]]) -> None:
    assert [(c.scheme, list(c.params)) for c in parse_challenges(header)] == expected


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}',
         "manifest unknown: manifest unknown"),
        (b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}',
         "unauthorized: authentication required"),
        (b'{"errors":[{"code":"DENIED","message":"a"},{"code":"NAME_UNKNOWN","message":"b"}]}', "denied: a; name unknown: b"),
        (b"<html>Bad Gateway</html>", None),
        (b'{"errors": []}', None),
    ],
    ids=["manifest", "unauthorized", "two", "html", "none"],
)
def test_registry_error_text(body: bytes, text: str | None) -> None:
    assert registry_error_text(body) == text


async def test_token_request_and_cache() -> None:
    seen: list[tuple[dict[str, str], str | None]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append((dict(request.query), request.headers.get("Authorization")))
        if request.headers.get("Authorization") not in (None, "Basic " + b64("u:p")):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "bad password"}]}, status=401)
        return web.json_response({"access_token": f"tok{len(seen)}", "expires_in": 300})

    app = web.Application()
    app.router.add_get("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    header = f'Bearer realm="http://127.0.0.1:{port}/token",service="reg"'
    now = [1000.0]
    authenticator = Authenticator(now=lambda: now[0])
    try:
        async with aiohttp.ClientSession() as session:
            answer = await authenticator.answer(session, host="reg", header=header, scope="repository:a:pull",
                                                credentials=Credentials("u", "p"), insecure=True)
            assert answer == "Bearer tok1"
            assert seen == [({"scope": "repository:a:pull", "service": "reg", "account": "u"}, "Basic " + b64("u:p"))]
            assert authenticator.known("reg", "repository:a:pull", Credentials("u", "p")) == "Bearer tok1"
            assert authenticator.known("reg", "repository:b:pull", None) is None  # another scope: a new token
            now[0] += 296
            assert authenticator.known("reg", "repository:a:pull", None) is None  # renewed before it expires
            anonymous = await authenticator.answer(session, host="reg", header=header, scope="repository:b:pull",
                                                   credentials=None, insecure=True)
            assert anonymous == "Bearer tok2" and seen[-1][1] is None
            with pytest.raises(ImagePullError, match=r"failed to fetch token from .*: unauthorized: bad password"):
                await authenticator.answer(session, host="reg", header=header, scope="repository:c:pull",
                                           credentials=Credentials("u", "wrong"), insecure=True)
    finally:
        await runner.cleanup()


async def test_basic_challenge_without_credentials_gives_nothing() -> None:
    async with aiohttp.ClientSession() as session:
        authenticator = Authenticator()
        assert await authenticator.answer(session, host="r", header='Basic realm="r"', scope="s", credentials=None,
                                          insecure=False) is None
        basic = await authenticator.answer(session, host="r", header='Basic realm="r"', scope="s",
                                           credentials=Credentials("u", "p"), insecure=False)
        assert basic == "Basic " + b64("u:p")
        assert authenticator.known("r", "other-scope", Credentials("u", "p")) == basic  # sent up front from now on


@pytest.mark.parametrize(
    ("realm", "insecure", "allowed"),
    [("http://127.0.0.1:1/token", False, False), ("http://127.0.0.1:1/token", True, True),
     ("https://127.0.0.1:1/token", False, True), ("file:///etc/shadow", True, False), ("/token", False, False)],
    ids=["http-secure-registry", "http-insecure-registry", "https", "file", "relative"],
)
async def test_a_token_realm_must_be_https_unless_the_registry_is_insecure(realm: str, insecure: bool,
                                                                           allowed: bool) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ImagePullError) as raised:
            await Authenticator().answer(session, host="reg", header=f'Bearer realm="{realm}"', scope="s",
                                         credentials=Credentials("u", "p"), insecure=insecure)
    if allowed:  # asked (nothing listens on port 1)
        assert raised.value.message.startswith(f"failed to fetch token from {realm}: ")
    else:
        assert raised.value.message.startswith(f"registry reg: refusing token realm {realm!r}: it must be ")
