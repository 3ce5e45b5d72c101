"""The registry's documents: OCI and Docker v2 manifests, indexes (manifest lists) and image configs.

Pure. Documents are decoded into frozen dataclasses and checked for what the puller relies on
(digests are sha256, sizes are sane, one diff_id per layer); `select_platform` picks this machine's
manifest from an index, as containerd's default platform matcher does.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.images.errors import ImagePullError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


class Compression:
    """How a layer blob is compressed, from its media type."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Compression.GZIP,
}

MAX_MANIFEST_BYTES = 4 * 2**20  # containerd's limit for manifests and indexes
MAX_CONFIG_BYTES = 16 * 2**20
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What the runtime needs from the image's config: the process defaults and the diff_ids."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    diff_ids: tuple[str, ...]
    platform: Platform
    stop_signal: str = ""  # config.StopSignal (Dockerfile STOPSIGNAL), as written: SIGQUIT, QUIT or 3


def this_platform(machine: str | None = None) -> Platform:
    """This machine as an OCI platform: linux/amd64 on x86_64, linux/arm64/v8 on aarch64."""
    raw = machine or platform.machine()
    architecture, variant = _MACHINES.get(raw.lower(), (raw.lower(), ""))
    return Platform("linux", architecture, variant)


def select_platform(index: Index, wanted: Platform) -> Descriptor:
    """The manifest for `wanted`: the same variant first, then one without a variant (amd64 "v1" and
    arm64 "v8" count as no variant, as in containerd's normalisation)."""
    def variant(of: Platform) -> str:
        return "" if (of.architecture, of.variant) in (("amd64", "v1"), ("arm64", "v8")) else of.variant

    candidates = [d for d in index.manifests if d.platform is not None and d.media_type in MANIFEST_TYPES
                  and d.platform.os == wanted.os and d.platform.architecture == wanted.architecture]
    for acceptable in (variant(wanted), ""):
        for descriptor in candidates:
            if descriptor.platform is not None and variant(descriptor.platform) == acceptable:
                return descriptor
    raise ImagePullError(f"no matching manifest for {wanted} in the manifest list entries")


def media_type_of(body: bytes, content_type: str | None) -> str:
    """The document's media type: its own `mediaType` field, else the Content-Type, else its shape."""
    document = _load(body, "manifest")
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if content_type and content_type.split(";")[0].strip() in (*INDEX_TYPES, *MANIFEST_TYPES):
        return content_type.split(";")[0].strip()
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def parse_index(body: bytes, media_type: str) -> Index:
    document = _load(body, "index")
    return Index(media_type, tuple(_descriptor(entry, "manifests[]") for entry in _list(document, "manifests")))


def parse_manifest(body: bytes, media_type: str) -> Manifest:
    document = _load(body, "manifest")
    if document.get("schemaVersion") != 2:
        raise ImagePullError(f"unsupported manifest schema version {document.get('schemaVersion')!r} "
                             "(Docker schema 1 images are not supported)")
    config = _descriptor(document.get("config"), "config")
    layers = tuple(_descriptor(entry, "layers[]") for entry in _list(document, "layers"))
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise ImagePullError(f"layer {layer.digest}: unsupported media type {layer.media_type!r}")
    return Manifest(media_type, config, layers)


def parse_config(body: bytes, layer_count: int) -> ImageConfig:
    document = _load(body, "image config")
    process = document.get("config") or {}
    rootfs = document.get("rootfs") or {}
    if not isinstance(process, Mapping) or not isinstance(rootfs, Mapping):
        raise ImagePullError("invalid image config: config and rootfs must be objects")
    diff_ids = tuple(_strings(rootfs.get("diff_ids"), "rootfs.diff_ids"))
    if len(diff_ids) != layer_count or not all(_SHA256.fullmatch(d) for d in diff_ids):
        raise ImagePullError(f"invalid image config: {len(diff_ids)} sha256 diff_ids for {layer_count} layers")
    return ImageConfig(
        entrypoint=tuple(_strings(process.get("Entrypoint"), "config.Entrypoint")),
        cmd=tuple(_strings(process.get("Cmd"), "config.Cmd")),
        env=tuple(_strings(process.get("Env"), "config.Env")),
        working_dir=str(process.get("WorkingDir") or ""),
        user=str(process.get("User") or ""),
        diff_ids=diff_ids,
        platform=Platform(str(document.get("os") or ""), str(document.get("architecture") or ""),
                          str(document.get("variant") or "")),
        stop_signal=str(process.get("StopSignal") or "")[:32],
    )


def _load(body: bytes, what: str) -> Mapping[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ImagePullError(f"invalid {what}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ImagePullError(f"invalid {what}: not a JSON object")
    return document


def _list(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImagePullError(f"invalid manifest: {key} must be a list")
    return value


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImagePullError(f"invalid image config: {field} must be a list of strings")
    return value


def _descriptor(entry: Any, field: str) -> Descriptor:
    if not isinstance(entry, Mapping):
        raise ImagePullError(f"invalid manifest: {field} must be a descriptor object")
    media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ImagePullError(f"invalid manifest: {field}.digest {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImagePullError(f"invalid manifest: {field}.size of {digest} must be a non-negative integer")
    raw_platform = entry.get("platform")
    found = None
    if isinstance(raw_platform, Mapping):
        found = Platform(str(raw_platform.get("os") or ""), str(raw_platform.get("architecture") or ""),
                         str(raw_platform.get("variant") or ""))
    return Descriptor(str(media_type or ""), digest, size, found)
