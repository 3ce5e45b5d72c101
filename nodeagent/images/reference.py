"""What an image name means: Docker's reference grammar and normalisation, as Kubernetes applies it.

Pure. `busybox` is `docker.io/library/busybox:latest`; `registry:5000/team/app@sha256:...` pulls by
digest (a tag beside a digest is kept for display but the digest wins); `localhost/x` and any first
component with a `.` or `:` (or an upper-case letter) is a registry, as distribution/reference decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeagent.images.errors import InvalidImageNameError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_ANY_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference: `domain/path[:tag][@digest]`; at least one of tag and digest is set."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository's full name, as `nodeagent images` shows it: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """Where the distribution API lives: Docker Hub's name differs from its API host."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def target(self) -> str:
        """What to ask the manifests endpoint for: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(image: str) -> Reference:
    """Normalise `image` as the kubelet does before pulling, or raise InvalidImageNameError with its wording."""
    try:
        return _parse(image)
    except ValueError as exc:
        raise InvalidImageNameError(
            f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {exc}') from None


def _parse(image: str) -> Reference:
    if not image or image != image.strip():
        raise ValueError("invalid reference format")
    remainder, digest = image, None
    if "@" in image:
        remainder, digest = image.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            if _ANY_DIGEST.fullmatch(digest):
                raise ValueError(f"unsupported digest algorithm: {digest.split(':', 1)[0]} (only sha256)")
            raise ValueError("invalid reference format")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ValueError("invalid reference format")
    domain, path = _split_domain(remainder)
    if len(f"{domain}/{path}") > MAX_NAME_LENGTH:
        raise ValueError(f"repository name must not be more than {MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    is_domain = slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first)
    if is_domain:
        domain, path = first, rest
        if not _DOMAIN.fullmatch(domain):
            raise ValueError("invalid reference format")
    else:
        domain, path = DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if path.lower() != path:
        raise ValueError("repository name must be lowercase")
    components = path.split("/")
    if not all(_PATH_COMPONENT.fullmatch(component) for component in components):
        raise ValueError("invalid reference format")
    if domain == DOCKER_HUB and len(components) == 1:
        if _HEX64.fullmatch(path):
            raise ValueError(f"invalid repository name ({path}), cannot specify 64-byte hexadecimal strings")
        path = f"library/{path}"
    return domain, path
