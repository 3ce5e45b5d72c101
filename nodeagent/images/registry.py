"""The OCI distribution API (v2) over aiohttp: manifests and blobs, every byte checked against its digest.

    GET /v2/<repository>/manifests/<tag|digest>   Accept: OCI index, Docker list, OCI and Docker manifests
    GET /v2/<repository>/blobs/<digest>           redirects followed (registries send blobs to storage)

https, except for the registries listed as insecure (plain http). A 401 is answered once through the
Authenticator (bearer token or Basic; a token realm https too, unless the registry is insecure) and
retried. Failures become ImagePullError with the registry's own words (`manifest unknown: manifest
unknown`), or the connection's (`connection refused`). Blobs are streamed to a file, hashed and written
in 1 MiB batches off the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass

import aiohttp

from nodeagent.images.auth import Authenticator, pull_scope, registry_error_text
from nodeagent.images.credentials import Credentials, credentials_for_image
from nodeagent.images.errors import ImagePullError
from nodeagent.images.manifest import ACCEPT, MAX_MANIFEST_BYTES, Descriptor, media_type_of
from nodeagent.images.reference import Reference
from nodeagent.images.threads import in_thread

BATCH_BYTES = 1 << 20
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest or index as served, with the digest of exactly these bytes."""

    digest: str
    media_type: str
    body: bytes


class RegistryClient:
    """Requests for one pull: a shared session and authenticator, this pull's credentials."""

    def __init__(self, session: aiohttp.ClientSession, authenticator: Authenticator, *,
                 credentials: Mapping[str, list[Credentials]] | None = None,
                 insecure_registries: Collection[str] = ()) -> None:
        self._session = session
        self._auth = authenticator
        self._credentials = credentials or {}
        self._insecure = frozenset(insecure_registries)

    async def fetch_manifest(self, reference: Reference, target: str | None = None) -> FetchedManifest:
        """The manifest or index for `target` (default: the reference's digest, else its tag), verified:
        against the digest asked for, else against the registry's Docker-Content-Digest header."""
        wanted = target or reference.target
        async with self._open(reference, f"manifests/{wanted}", accept=ACCEPT) as response:
            body = await _read_limited(response, MAX_MANIFEST_BYTES, f"manifest {wanted}")
            content_type, served = response.headers.get("Content-Type"), response.headers.get("Docker-Content-Digest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = wanted if wanted.startswith("sha256:") else served if (served or "").startswith("sha256:") else None
        if expected is not None and digest != expected:
            raise ImagePullError(f"manifest {wanted}: digest mismatch: the registry served content with "
                                 f"digest {digest}, expected {expected}")
        return FetchedManifest(digest, media_type_of(body, content_type), body)

    async def fetch_blob(self, reference: Reference, descriptor: Descriptor, *, limit: int) -> bytes:
        """A small blob (an image config) in memory, verified."""
        if descriptor.size > limit:
            raise ImagePullError(f"blob {descriptor.digest}: {descriptor.size} bytes is more than {limit}")
        async with self._open(reference, f"blobs/{descriptor.digest}") as response:
            body = await _read_limited(response, descriptor.size, f"blob {descriptor.digest}")
        _check(descriptor, hashlib.sha256(body).hexdigest(), len(body))
        return body

    async def download_blob(self, reference: Reference, descriptor: Descriptor, destination: str) -> None:
        """A blob streamed into the file `destination`, verified; on any failure the file is removed."""
        hasher = hashlib.sha256()
        fd = await in_thread(os.open, destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            size = 0
            async with self._open(reference, f"blobs/{descriptor.digest}") as response:
                batch = bytearray()
                async for chunk in response.content.iter_chunked(256 * 1024):
                    size += len(chunk)
                    if size > descriptor.size:
                        raise ImagePullError(f"blob {descriptor.digest}: the registry sent more than the "
                                             f"{descriptor.size} bytes the manifest declares")
                    batch += chunk
                    if len(batch) >= BATCH_BYTES:
                        full, batch = batch, bytearray()
                        await in_thread(_write_and_hash, fd, hasher, full)
                await in_thread(_write_and_hash, fd, hasher, batch)
            _check(descriptor, hasher.hexdigest(), size)
        except BaseException:
            await in_thread(_close_and_remove, fd, destination)
            raise
        await in_thread(os.close, fd)

    def _url(self, reference: Reference, path: str) -> str:
        scheme = "http" if reference.domain in self._insecure else "https"
        return f"{scheme}://{reference.api_host}/v2/{reference.path}/{path}"

    @contextlib.asynccontextmanager
    async def _open(self, reference: Reference, path: str, *,
                    accept: str | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A 200 response to GET `path`, authenticating once on a 401; else ImagePullError."""
        url = self._url(reference, path)
        scope = pull_scope(reference.path)
        matching = credentials_for_image(self._credentials, reference.name)
        credentials = matching[0] if matching else None  # the most specific (the kubelet tries each in turn)
        headers = {"Accept": accept} if accept else {}
        authorization = self._auth.known(reference.api_host, scope, credentials)
        try:
            for attempt in (1, 2):
                if authorization:
                    headers["Authorization"] = authorization
                async with self._session.get(url, headers=headers, max_redirects=MAX_REDIRECTS) as response:
                    if response.status == 200:
                        yield response
                        return
                    challenge = response.headers.get("WWW-Authenticate")
                    failure = await _failure(response)
                if response.status != 401 or attempt == 2 or not challenge:
                    raise failure
                authorization = await self._auth.answer(self._session, host=reference.api_host, header=challenge,
                                                        scope=scope, credentials=credentials,
                                                        insecure=reference.domain in self._insecure)
                if authorization is None:
                    raise failure
        except aiohttp.ClientConnectorError as exc:
            raise ImagePullError(f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}") from None
        except aiohttp.TooManyRedirects:
            raise ImagePullError(f"GET {url}: more than {MAX_REDIRECTS} redirects") from None
        except aiohttp.ClientResponseError as exc:
            raise ImagePullError(f"GET {url}: {exc.status} {exc.message}") from None
        except aiohttp.ClientError as exc:
            raise ImagePullError(f"GET {url}: {exc or type(exc).__name__}") from None


async def _failure(response: aiohttp.ClientResponse) -> ImagePullError:
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    text = registry_error_text(bytes(body)) or f"unexpected status {response.status} {response.reason or ''}".strip()
    return ImagePullError(text)


async def _read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ImagePullError(f"{what}: larger than {limit} bytes")
    return bytes(body)


def _check(descriptor: Descriptor, hex_digest: str, size: int) -> None:
    if size != descriptor.size:
        raise ImagePullError(f"blob {descriptor.digest}: got {size} bytes, the manifest declares {descriptor.size}")
    if f"sha256:{hex_digest}" != descriptor.digest:
        raise ImagePullError(f"blob {descriptor.digest}: digest mismatch: the registry served content with "
                             f"digest sha256:{hex_digest}")


def _write_and_hash(fd: int, hasher: hashlib._Hash, data: bytearray) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_and_remove(fd: int, path: str) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _os_reason(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error) or type(error).__name__
