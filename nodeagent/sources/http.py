"""The URL source: static pod manifests fetched from `staticPodURL`, done better than the kubelet.

Every `httpCheckFrequency` (with jittered back-off after failures, capped at that period) a GET with
the `staticPodURLHeader` headers and `If-None-Match`/`If-Modified-Since`; a 304 or an unchanged
body changes nothing. The body (a Pod, a PodList, a `v1 List`, multi-document YAML; at most 10 MiB,
read as a stream, within a total timeout, then decoded in a thread so a large body never stalls the
event loop) replaces the set of http pods. Every failure (connection, timeout, TLS, non-2xx, a body
too large or undecodable, an invalid pod, any error nobody foresaw) keeps the last good set.
Redirects (at most 5) are followed here, not by aiohttp: the `staticPodURLHeader` headers go only to
the configured URL's origin (scheme, host, port), never to another one, and a redirect from https to
http is refused, as is one to anything but http(s).
Secrets never leave: header values and the URL's credentials and query values are redacted from
everything this module logs, stores or reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import random
import ssl
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import aiohttp

from nodeagent.api.decode import MAX_MANIFEST_BYTES
from nodeagent.api.manifest import StaticPod, load_manifest, unexpected
from nodeagent.timeformat import rfc3339

log = logging.getLogger(__name__)

REDACTED = "REDACTED"
FIRST_RETRY_SECONDS = 1.0
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    frequency_seconds: float = 20.0
    timeout_seconds: float = 10.0
    max_bytes: int = MAX_MANIFEST_BYTES
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    empty_means_none: bool = True


@dataclass(frozen=True, slots=True)
class FetchStatus:
    """What `describe` and the API show about the URL source (never a secret)."""

    url: str  # redacted
    last_fetch: dt.datetime | None = None
    last_result: str = "not fetched yet"
    failures: int = 0  # in a row
    pods: int | None = None  # in the last good set; None before the first good fetch

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "lastFetch": rfc3339(self.last_fetch), "lastResult": self.last_result,
                "consecutiveFailures": self.failures, "pods": self.pods}


class FetchError(Exception):
    """One failed fetch, with a reason fit to show (already redacted)."""


def redact_url(url: str) -> str:
    """The URL without its password and with query values hidden: safe to log and show."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = "&".join(f"{key}={REDACTED}" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def retry_delay(failures: int, cap: float, rng: random.Random) -> float:
    """Back-off after `failures` failed fetches in a row: doubling from 1 s, capped at the polling
    period, with equal jitter (half fixed, half random) so a fleet does not return in step."""
    ceiling = min(cap, FIRST_RETRY_SECONDS * 2 ** max(failures - 1, 0))
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


class HttpSource:
    def __init__(self, settings: HttpSettings, *, node_name: str,
                 on_event: Callable[[str, str, str], None], rng: random.Random | None = None) -> None:
        self.settings = settings
        self.node_name = node_name
        self.on_event = on_event  # (type, reason, message)
        self.rng = rng or random.Random()
        self.origin = redact_url(settings.url)
        self.status = FetchStatus(self.origin)
        self._secrets = self._find_secrets()
        self._request_url = self._url_to_request()
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._digest: str | None = None
        self._pods: list[StaticPod] | None = None

    def _find_secrets(self) -> list[str]:
        parts = urlsplit(self.settings.url)
        found = [value for values in self.settings.headers.values() for value in values]
        found += [value for _, value in parse_qsl(parts.query)]
        if parts.password:
            found.append(parts.password)
        found.append(self.settings.url)
        return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)

    def _url_to_request(self) -> str:
        """The URL itself, unless staticPodURLHeader sets Authorization: then credentials in the URL (which
        would be a second Authorization) give way to the explicit header."""
        parts = urlsplit(self.settings.url)
        explicit = any(name.lower() == "authorization" for name in self.settings.headers)
        if not explicit or "@" not in parts.netloc:
            return self.settings.url
        log.warning("staticPodURL %s: the credentials in the URL are not used, staticPodURLHeader sets "
                    "Authorization", self.origin)
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.origin if secret == self.settings.url else REDACTED)
        return text

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if self.settings.cert_file:
            context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        return context

    def session(self) -> aiohttp.ClientSession:
        """The HTTP client for this source: its TLS trust (on every hop of a redirect too) and timeout."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=self.ssl_context()))

    async def run(self, on_update: Callable[[list[StaticPod] | None], Awaitable[None]]) -> None:
        """Fetch now and then periodically until cancelled; after each fetch on_update gets the new good
        set, or None when nothing changed or the fetch failed."""
        async with self.session() as session:
            while True:
                await on_update(await self.fetch(session))
                failures = self.status.failures
                delay = (retry_delay(failures, self.settings.frequency_seconds, self.rng) if failures
                         else self.settings.frequency_seconds)
                await asyncio.sleep(delay)

    async def fetch(self, session: aiohttp.ClientSession) -> list[StaticPod] | None:
        """One fetch: the new set of http pods, or None when nothing changed or the fetch failed."""
        now = dt.datetime.now(dt.UTC)
        try:
            pods, result = await self._fetch(session)
        except FetchError as exc:
            self._failed(now, str(exc))
            return None
        except Exception as exc:  # whatever one fetch meets, it fails that fetch only, never the agent
            log.error("staticPodURL %s: %s", self.origin, self.redact(traceback.format_exc()))
            self._failed(now, self.redact(str(unexpected(exc))))
            return None
        if self.status.failures:
            log.info("staticPodURL %s recovered after %d failed fetches", self.origin, self.status.failures)
            self.on_event("Normal", "ManifestURLRecovered",
                          f"{self.origin}: fetched again after {self.status.failures} failures")
        if pods is not None:
            self._pods = pods
        self.status = FetchStatus(self.origin, now, result, 0, None if self._pods is None else len(self._pods))
        return pods

    def _failed(self, now: dt.datetime, reason: str) -> None:
        kept = ("no pods from it yet" if self._pods is None
                else f"keeping the last {len(self._pods)} pod(s) from it running")
        if self.status.failures == 0:
            log.warning("staticPodURL %s: %s; %s", self.origin, reason, kept)
        self.on_event("Warning", "ManifestURLFailed", f"{self.origin}: {reason}; {kept}")
        self.status = FetchStatus(self.origin, now, f"error: {reason}", self.status.failures + 1,
                                  None if self._pods is None else len(self._pods))

    async def _fetch(self, session: aiohttp.ClientSession) -> tuple[list[StaticPod] | None, str]:
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):  # the whole chain of redirects
                response, body = await self._get(session)
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(f"no complete answer within {self.settings.timeout_seconds:.0f}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise FetchError(self.redact(describe_error(exc))) from None
        if response.status == 304:
            return None, "304 Not Modified"
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        digest, pods = await asyncio.to_thread(self._parse, body)
        if pods is None:
            self._etag, self._last_modified = etag, modified
            return None, "unchanged"
        self._digest, self._etag, self._last_modified = digest, etag, modified
        return pods, f"{response.status} {response.reason or ''}: {len(pods)} pod(s)".replace(" :", ":")

    async def _get(self, session: aiohttp.ClientSession) -> tuple[aiohttp.ClientResponse, bytes]:
        """The final answer and its body, redirects followed here: the staticPodURLHeader headers go to
        the configured origin only, and a redirect from https to http is refused."""
        conditional = ([("If-None-Match", self._etag)] if self._etag else []) + (
            [("If-Modified-Since", self._last_modified)] if self._last_modified else [])
        configured = [(name, value) for name, values in self.settings.headers.items() for value in values]
        url = self._request_url
        for _ in range(MAX_REDIRECTS + 1):
            headers = (configured if _origin(url) == _origin(self._request_url) else []) + conditional
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECTS or location is None:
                    if response.status != 304 and not 200 <= response.status < 300:
                        raise FetchError(f"HTTP {response.status} {response.reason or ''}".strip())
                    return response, b"" if response.status == 304 else await self._read(response)
            url = self._redirect(url, location)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def _redirect(self, url: str, location: str) -> str:
        target = urljoin(url, location)
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https"):
            raise FetchError(self.redact(f"redirect to {redact_url(target)} refused: not http or https"))
        if urlsplit(url).scheme == "https" and scheme == "http":
            raise FetchError(self.redact(f"redirect from https to http refused: {redact_url(target)}"))
        return target

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        chunks = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise FetchError(f"the body is larger than {self.settings.max_bytes // 2**20} MiB")
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, body: bytes) -> tuple[str, list[StaticPod] | None]:
        """(digest, pods), pods None when the body is what it was (blocking: run in a thread)."""
        digest = hashlib.sha256(body).hexdigest()
        return digest, None if digest == self._digest else self._decode(body)

    def _decode(self, body: bytes) -> list[StaticPod]:
        if not body.strip():
            if self.settings.empty_means_none:
                return []
            raise FetchError("the body is empty (staticPodURLEmptyMeansNone is false)")
        # The UID hashes the redacted URL: deterministic, and no credential ever reaches a pod.
        result = load_manifest(body, origin=self.origin, source="http", node_name=self.node_name)
        if not result.ok:
            raise FetchError("invalid manifest: " + self.redact("; ".join(str(p) for p in result.problems)))
        for warning in result.warnings:
            log.warning("staticPodURL %s: %s", self.origin, self.redact(str(warning)))
        return result.pods


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what a browser calls the origin."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed request, in words a user recognises."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    return str(exc) or type(exc).__name__
