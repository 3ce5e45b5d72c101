"""Registry authentication: `WWW-Authenticate` challenges, Basic credentials and bearer tokens.

The distribution token flow: a request answered 401 with `Bearer realm=...,service=...,scope=...`
is retried with a token from `GET realm?service=...&scope=...` (with Basic credentials when there are
some, anonymously otherwise). Tokens are kept per realm, service and scope until `expires_in`; a
registry known to want Basic gets the credentials up front. Parsing is pure; `Authenticator` does
the token requests on the caller's aiohttp session.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from nodeagent.images.credentials import Credentials
from nodeagent.images.errors import ImagePullError

DEFAULT_TOKEN_SECONDS = 60  # the distribution spec's default when a token server omits expires_in
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: tuple[tuple[str, str], ...]  # names in lower case

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """Every challenge of a WWW-Authenticate value (RFC 7235): `Bearer realm="...",scope="..."`, `Basic ...`."""
    challenges = []
    position = 0
    while position < len(header):
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            break
        position = scheme.end()
        params = []
        while (param := _PARAM.match(header, position)) is not None:
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.append((param.group(1).lower(), value))
            position = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), tuple(params)))
    return tuple(challenges)


def basic_authorization(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


class Authenticator:
    """Authorization header values for one registry client: remembered schemes, cached tokens."""

    def __init__(self, *, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._basic_hosts: set[str] = set()
        self._bearer: dict[str, Challenge] = {}  # host -> its last Bearer challenge
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}  # (realm, service, scope) -> token

    def known(self, host: str, scope: str, credentials: Credentials | None) -> str | None:
        """An Authorization value to send up front, from what this host asked for before."""
        if host in self._basic_hosts and credentials is not None:
            return basic_authorization(credentials)
        challenge = self._bearer.get(host)
        if challenge is None:
            return None
        cached = self._tokens.get(_token_key(challenge, scope))
        if cached is not None and cached[1] > self._now():
            return f"Bearer {cached[0]}"
        return None

    async def answer(self, session: aiohttp.ClientSession, *, host: str, header: str, scope: str,
                     credentials: Credentials | None, insecure: bool) -> str | None:
        """The Authorization value answering a 401's WWW-Authenticate, or None when nothing can. A token
        realm must be https, unless the registry is `insecure` (plain http itself): the registry names the
        realm, and the credentials (or the token) must not cross the network in clear."""
        challenges = parse_challenges(header)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.param("realm")), None)
        if bearer is not None:
            realm = bearer.param("realm") or ""
            scheme = urllib.parse.urlsplit(realm).scheme.lower()
            if scheme != "https" and not (insecure and scheme == "http"):
                allowed = "http or https" if insecure else "https (the registry is not in nodeagent.insecureRegistries)"
                raise ImagePullError(f"registry {host}: refusing token realm {realm!r}: it must be {allowed}")
            self._bearer[host] = bearer
            token = await self._fetch_token(session, bearer, scope, credentials)
            return f"Bearer {token}"
        if any(c.scheme == "basic" for c in challenges) and credentials is not None:
            self._basic_hosts.add(host)
            return basic_authorization(credentials)
        return None

    async def _fetch_token(self, session: aiohttp.ClientSession, challenge: Challenge, scope: str,
                           credentials: Credentials | None) -> str:
        realm = challenge.param("realm") or ""
        params = {"scope": challenge.param("scope") or scope}
        if service := challenge.param("service"):
            params["service"] = service
        headers = {"Accept": "application/json"}
        if credentials is not None:
            params["account"] = credentials.username
            headers["Authorization"] = basic_authorization(credentials)
        kind = "anonymous token" if credentials is None else "token"
        try:
            async with session.get(realm, params=params, headers=headers) as response:
                body = await response.content.read(1 << 20)
                if response.status != 200:
                    detail = registry_error_text(body) or f"unexpected status: {response.status} {response.reason}"
                    raise ImagePullError(f"failed to fetch {kind} from {realm}: {detail}")
        except aiohttp.ClientError as exc:
            raise ImagePullError(f"failed to fetch {kind} from {realm}: {exc}") from None
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
            seconds = int(document.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ImagePullError(f"failed to fetch {kind} from {realm}: the answer holds no token")
        # Renew a little early, so a token never expires between the check and the request.
        self._tokens[_token_key(challenge, scope)] = (token, self._now() + max(seconds - 5, 1))
        return token


def registry_error_text(body: bytes) -> str | None:
    """The registry's own words from an error body (`{"errors": [{"code", "message"}]}`), as docker prints
    them: `manifest unknown: manifest unknown`, `unauthorized: authentication required`."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    texts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        code = str(error.get("code") or "").lower().replace("_", " ")
        message = str(error.get("message") or "")
        texts.append(f"{code}: {message}" if code and message else code or message)
    return "; ".join(text for text in texts if text) or None


def _token_key(challenge: Challenge, scope: str) -> tuple[str, str, str]:
    return challenge.param("realm") or "", challenge.param("service") or "", challenge.param("scope") or scope
