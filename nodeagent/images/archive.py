"""Images from files, without a registry: `docker save` archives, OCI image layouts and `oci-archive` tars.

    tar (file or stdin) --extract--> staging dir --docker save?--> an OCI layout written beside it
    OCI layout dir (read in place) ----------------------------------^
         |
         v   images: index.json's entries, named by io.containerd.image.name or a full
             org.opencontainers.image.ref.name (docker save: manifest.json's RepoTags)
    LayoutSource: the registry client's three calls, served from the layout's blobs/sha256, each verified

The store pulls from a LayoutSource as from a registry (nodeagent.images.pull): the same verification,
unpacking, records and leases. `check_layer` lets the store verify every blob and diff_id of every image
before the first is added, so a corrupt archive adds nothing. Blocking functions: run them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from nodeagent.images.budget import LayerBudget
from nodeagent.images.errors import ImageError, ImagePullError
from nodeagent.images.manifest import (
    DOCKER_CONFIG,
    MAX_MANIFEST_BYTES,
    OCI_MANIFEST,
    Descriptor,
    media_type_of,
)
from nodeagent.images.reference import Reference, parse_reference
from nodeagent.images.registry import FetchedManifest
from nodeagent.images.threads import in_thread
from nodeagent.images.unpack import diff_id_of

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
_COPY_BYTES = 1 << 20
_MAX_LINKS = 8
_GZIP_MAGIC = b"\x1f\x8b"
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


class ImageLoadError(ImageError):
    """An archive that cannot be loaded: not one of the three formats, corrupt, or naming no image."""


@dataclass(frozen=True, slots=True)
class Layout:
    """An OCI image layout on disk and the images it names: (reference, the index entry's descriptor)."""

    root: str
    images: tuple[tuple[Reference, Descriptor], ...]


def open_layout(source: str, staging: str) -> Layout:
    """The images of `source` (a directory, a tar file, or "-" for a tar on stdin, possibly compressed);
    a tar is extracted into the empty directory `staging` first."""
    if source != "-" and os.path.isdir(source):
        return _read_layout(source)
    try:
        if source == "-":
            _extract(sys.stdin.buffer, staging)
        else:
            with open(source, "rb") as handle:
                _extract(handle, staging)
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise ImageLoadError(f"{_label(source)}: not a tar archive: {exc}") from None
    except OSError as exc:
        raise ImageLoadError(f"{_label(source)}: {exc.strerror or exc}") from None
    if os.path.isfile(os.path.join(staging, "oci-layout")) and os.path.isfile(os.path.join(staging, "index.json")):
        return _read_layout(staging)  # oci-archive, and docker save since Docker 25
    if os.path.isfile(os.path.join(staging, "manifest.json")):
        return _docker_to_layout(staging)
    raise ImageLoadError(f"{_label(source)}: neither an OCI image layout (oci-layout, index.json) nor a "
                         "docker save archive (manifest.json)")


class LayoutSource:
    """What the puller asks a registry for, answered from an OCI layout; every blob checked against its
    digest and size."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._tops = {str(reference): descriptor for reference, descriptor in layout.images}

    async def fetch_manifest(self, reference: Reference, target: str | None = None) -> FetchedManifest:
        descriptor = self._tops[str(reference)] if target is None else Descriptor("", target, -1)
        body = await in_thread(self._read, descriptor, MAX_MANIFEST_BYTES)
        return FetchedManifest(descriptor.digest, media_type_of(body, descriptor.media_type or None), body)

    async def fetch_blob(self, reference: Reference, descriptor: Descriptor, *, limit: int) -> bytes:
        return await in_thread(self._read, descriptor, limit)

    async def download_blob(self, reference: Reference, descriptor: Descriptor, destination: str) -> None:
        await in_thread(self._copy, descriptor, destination)

    def check_layer(self, descriptor: Descriptor, diff_id: str, budget: LayerBudget) -> None:
        """The layer blob matches its digest and size, and its uncompressed content (within the budget)
        the config's diff_id."""
        with _verified(self._path(descriptor.digest), descriptor) as chunks:
            for _ in chunks:
                pass
        found = diff_id_of(self._path(descriptor.digest), label=descriptor.digest, budget=budget)
        if found != diff_id:
            raise ImagePullError(f"layer {descriptor.digest}: uncompressed digest {found} does not match the "
                                 f"config's diff_id {diff_id}")

    def _path(self, digest: str) -> str:
        algorithm, _, value = digest.partition(":")
        return os.path.join(self.layout.root, "blobs", algorithm, value)

    def _read(self, descriptor: Descriptor, limit: int) -> bytes:
        with _verified(self._path(descriptor.digest), descriptor, limit=limit) as chunks:
            return b"".join(chunks)

    def _copy(self, descriptor: Descriptor, destination: str) -> None:
        try:
            with _verified(self._path(descriptor.digest), descriptor) as chunks, open(destination, "wb") as output:
                for chunk in chunks:
                    output.write(chunk)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(destination)
            raise


@contextlib.contextmanager
def _verified(path: str, descriptor: Descriptor, *, limit: int | None = None) -> Iterator[Iterator[bytes]]:
    """The blob's chunks; after the last, ImagePullError when its digest or size (when known) differs."""
    try:  # never through a symbolic link: an archive's blob may not read a file of this machine
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except FileNotFoundError:
        raise ImagePullError(f"blob {descriptor.digest}: missing from the archive") from None
    except OSError as exc:
        raise ImagePullError(f"blob {descriptor.digest}: {exc.strerror or exc} in the archive") from None

    def chunks() -> Iterator[bytes]:
        hasher, size = hashlib.sha256(), 0
        while chunk := handle.read(_COPY_BYTES):
            size += len(chunk)
            if limit is not None and size > limit:
                raise ImagePullError(f"blob {descriptor.digest}: larger than {limit} bytes")
            hasher.update(chunk)
            yield chunk
        if descriptor.size >= 0 and size != descriptor.size:
            raise ImagePullError(f"blob {descriptor.digest}: {size} bytes in the archive, {descriptor.size} declared")
        if f"sha256:{hasher.hexdigest()}" != descriptor.digest:
            raise ImagePullError(f"blob {descriptor.digest}: digest mismatch: the archive holds content with "
                                 f"digest sha256:{hasher.hexdigest()}")

    with handle:
        yield chunks()


# -- reading an OCI layout ------------------------------------------------------------------------------

def _read_layout(root: str) -> Layout:
    layout_file = _json(os.path.join(root, "oci-layout"), "oci-layout")
    if not isinstance(layout_file, dict) or "imageLayoutVersion" not in layout_file:
        raise ImageLoadError(f"{root}: oci-layout has no imageLayoutVersion: not an OCI image layout")
    index = _json(os.path.join(root, "index.json"), "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise ImageLoadError(f"{root}: index.json has no manifests list")
    images = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ImageLoadError(f"{root}: index.json manifests[{position}] is not an object")
        annotations = entry.get("annotations")
        name = _image_name(annotations) if isinstance(annotations, dict) else None
        if name is None:
            raise ImageLoadError(f"{root}: index.json manifests[{position}] names no image (annotation "
                                 f"{CONTAINERD_NAME}, or a full reference in {OCI_REF_NAME})")
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest) or not isinstance(size, int) \
                or isinstance(size, bool):
            raise ImageLoadError(f"{root}: index.json manifests[{position}] has no sha256 digest and size")
        images.append((parse_reference(name), Descriptor(str(entry.get("mediaType") or ""), digest, size)))
    if not images:
        raise ImageLoadError(f"{root}: index.json lists no image")
    return Layout(root, tuple(images))


def _image_name(annotations: Mapping[str, Any]) -> str | None:
    """containerd's full name, else the OCI ref.name when it is a full reference (not just a tag)."""
    for key in (CONTAINERD_NAME, OCI_REF_NAME):
        value = annotations.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value):
            return value
    return None


# -- docker save --------------------------------------------------------------------------------------

def _docker_to_layout(root: str) -> Layout:
    """manifest.json's images as OCI manifests in `root`/blobs/sha256, named by their RepoTags."""
    entries = _json(os.path.join(root, "manifest.json"), "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageLoadError("docker save archive: manifest.json is not a list of images")
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    images = []
    for position, entry in enumerate(entries):
        where = f"docker save archive: manifest.json[{position}]"
        config, tags, layers = (entry.get(key) if isinstance(entry, dict) else None
                                for key in ("Config", "RepoTags", "Layers"))
        if not isinstance(config, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ImageLoadError(f"{where}: Config and Layers must be file names")
        if not tags or not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ImageLoadError(f"{where}: no RepoTags: the image has no name to load it under")
        config_descriptor = _as_blob(root, config, DOCKER_CONFIG, where)
        layer_descriptors = [_as_blob(root, layer, _layer_type(root, layer, where), where) for layer in layers]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": _descriptor_json(config_descriptor),
            "layers": [_descriptor_json(layer) for layer in layer_descriptors],
        }).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        with open(os.path.join(root, "blobs", "sha256", digest.removeprefix("sha256:")), "wb") as handle:
            handle.write(manifest)
        images += [(parse_reference(tag), Descriptor(OCI_MANIFEST, digest, len(manifest))) for tag in tags]
    return Layout(root, tuple(images))


def _as_blob(root: str, name: str, media_type: str, where: str) -> Descriptor:
    """The archive's file `name` hashed and linked into blobs/sha256 under its digest."""
    path = _inside(root, name, where)
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_BYTES):
            hasher.update(chunk)
            size += len(chunk)
    blob = os.path.join(root, "blobs", "sha256", hasher.hexdigest())
    if not os.path.exists(blob):
        os.link(path, blob)
    return Descriptor(media_type, f"sha256:{hasher.hexdigest()}", size)


def _layer_type(root: str, name: str, where: str) -> str:
    with open(_inside(root, name, where), "rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
    return "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzipped else "")


def _inside(root: str, name: str, where: str) -> str:
    """The regular file `name` of the archive, its symbolic links followed within the archive."""
    relative = name
    for _ in range(_MAX_LINKS):
        relative = _relative(relative, where)
        path = os.path.join(root, relative)
        if any(os.path.islink(os.path.join(root, parent)) for parent in _parents(relative)):
            raise ImageLoadError(f"{where}: {name} is under a symbolic link")
        if not os.path.islink(path):
            if not os.path.isfile(path):
                raise ImageLoadError(f"{where}: {name} is not in the archive")
            return path
        relative = posixpath.join(posixpath.dirname(relative), os.readlink(path))
    raise ImageLoadError(f"{where}: {name}: too many symbolic links")


def _descriptor_json(descriptor: Descriptor) -> dict[str, object]:
    return {"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size}


# -- extracting a tar ---------------------------------------------------------------------------------

def _extract(stream: IO[bytes], staging: str) -> None:
    """The tar (plain or compressed) in `stream`: its regular files, directories and symbolic links (kept
    as written; followed only by `_inside`, never outside the archive); nothing may leave `staging`."""
    with tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            relative = _relative(member.name, "archive")
            if relative == ".":
                continue
            path = os.path.join(staging, relative)
            if member.isdir():
                os.makedirs(path, 0o700, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            if os.path.lexists(path) or any(os.path.islink(os.path.join(staging, parent))
                                            for parent in _parents(relative)):
                raise ImageLoadError(f"archive: {member.name} appears twice or under a symbolic link")
            if member.issym():
                os.symlink(member.linkname, path)
            elif member.isfile():
                source = archive.extractfile(member)
                assert source is not None
                with open(path, "xb") as output:
                    shutil.copyfileobj(source, output, _COPY_BYTES)
            # anything else (devices, fifos, hard links) is no part of an image archive: skipped


def _relative(name: str, where: str) -> str:
    normal = posixpath.normpath(name)
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ImageLoadError(f"{where}: {name!r} leaves the archive")
    return normal


def _parents(relative: str) -> list[str]:
    parts = relative.split("/")[:-1]
    return ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise ImageLoadError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
        return json.loads(data)
    except FileNotFoundError:
        raise ImageLoadError(f"{os.path.dirname(path)}: no {what}") from None
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"{path}: unreadable {what}: {exc}") from None


def _label(source: str) -> str:
    return "standard input" if source == "-" else source

